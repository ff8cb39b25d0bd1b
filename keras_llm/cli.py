"""The `keras-llm` command.

Every flag is declared once, in `TRAIN_FLAGS`, with its default and help text.
"""

import argparse
import os
import sys
import tempfile
import time

TRAIN_FLAGS = {
    "--preset": dict(default="gpt_nano", help="A GPT preset (keras_llm.GPT_PRESETS)."),
    "--steps": dict(type=int, default=800, help="Training steps (batches)."),
    "--batch-size": dict(type=int, default=32, help="Sequences per batch."),
    "--sequence-length": dict(type=int, default=128, help="Tokens per sequence."),
    "--learning-rate": dict(
        type=float, default=2e-3,
        help="Peak learning rate. 2e-3 suits gpt_nano; larger models want "
        "keras_llm.training.PEAK_LEARNING_RATE['causal_lm'] (6e-4) or less.",
    ),
    "--output": dict(default="gpt_nano.keras", help="Where to save the trained model (.keras)."),
    "--seed": dict(type=int, default=0, help="Seed of initialisation, data order and sampling."),
    "--prompt": dict(default="Return the ", help="Prompt of the sample printed after training."),
    "--sample-length": dict(type=int, default=200, help="Tokens of generated sample."),
}


def _positive(parser, args, names):
    for name in names:
        value = getattr(args, name)
        if value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive; received {value}")


def train(args, parser):
    """Trains a GPT on the standard library's docstrings with the byte tokenizer."""
    import keras
    import numpy as np

    import keras_llm

    _positive(parser, args, ["steps", "batch_size", "sequence_length", "sample_length"])
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end in .keras; received {args.output!r}")
    if args.preset not in keras_llm.GPT_PRESETS:
        parser.error(
            f"--preset must be one of {', '.join(sorted(keras_llm.GPT_PRESETS))}; "
            f"received {args.preset!r}"
        )
    keras.utils.set_random_seed(args.seed)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    documents = keras_llm.data.stdlib_docstrings()
    held_out = max(1, len(documents) // 50)
    def stream(docs):
        end = np.array([tokenizer.end_token_id], "int32")
        return np.concatenate([part for d in docs for part in (tokenizer.encode_numpy(d), end)])
    train_ids, validation_ids = stream(documents[:-held_out]), stream(documents[-held_out:])
    print(
        f"corpus: {len(documents)} docstrings of the Python standard library, "
        f"{len(train_ids):,} training and {len(validation_ids):,} validation bytes"
    )

    model = keras_llm.build_gpt(
        args.preset,
        vocabulary_size=tokenizer.vocabulary_size,
        max_sequence_length=max(args.sequence_length, keras_llm.GPT_PRESETS[args.preset]["max_sequence_length"]),
    )
    keras_llm.compile_model(
        model, "causal_lm", learning_rate=args.learning_rate, total_steps=args.steps
    )
    print(f"model: {args.preset}, {model.count_params():,} parameters")
    train_data = keras_llm.data.causal_lm_dataset(
        train_ids, args.sequence_length, args.batch_size, seed=args.seed, repeat=True
    )
    validation_data = keras_llm.data.causal_lm_dataset(
        validation_ids, args.sequence_length, args.batch_size, shuffle=False
    ).take(8)

    initial = model.evaluate(validation_data, verbose=0, return_dict=True)
    print(f"validation loss before training: {initial['loss']:.3f}")
    epochs = min(10, args.steps)
    start = time.time()
    model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=args.steps // epochs,
        validation_data=validation_data,
        shuffle=False,  # the dataset shuffles itself
        verbose=1 if sys.stdout.isatty() else 2,
    )
    final = model.evaluate(validation_data, verbose=0, return_dict=True)
    print(
        f"validation loss {initial['loss']:.3f} -> {final['loss']:.3f} "
        f"(perplexity {final['perplexity']:.2f}) in {time.time() - start:.0f} s"
    )

    sample = keras_llm.generation.generate(
        model,
        tokenizer.encode_numpy(args.prompt),
        max_new_tokens=args.sample_length,
        temperature=0.8,
        top_k=40,
        seed=args.seed,
        end_token_id=tokenizer.end_token_id,
    )
    text = tokenizer.detokenize(sample).numpy().decode("utf-8", errors="replace")
    print("sample:\n" + text)

    _save_atomically(model, args.output)
    print(f"saved: {args.output}")
    return 0


def _save_atomically(model, path):
    """Saves to a temporary file beside `path`, then renames it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".keras", dir=directory)
    os.close(handle)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-llm", description="Build, train and use transformer language models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train",
        help="Train a GPT on the built-in corpus (the standard library's docstrings).",
        description=train.__doc__,
    )
    for flag, spec in TRAIN_FLAGS.items():
        train_parser.add_argument(flag, **spec)
    train_parser.set_defaults(handler=train)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": train}
    return commands[args.command](args, parser)


if __name__ == "__main__":
    sys.exit(main())
