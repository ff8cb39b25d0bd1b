"""The `keras-llm` command.

Every flag is declared once, in `TRAIN_FLAGS`, with its default and help text.
"""

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time

TRAIN_FLAGS = {
    "--preset": dict(
        default="gpt_nano",
        help="A GPT preset (keras_llm.GPT_PRESETS: causal-LM training) or a BERT preset "
        "(keras_llm.BERT_PRESETS: masked-LM + next-sentence pre-training).",
    ),
    "--data": dict(
        default=None,
        help="A .txt/.csv/.tsv/.jsonl file, a glob of them, or tfds:NAME. Default: the "
        "embedded corpus (the Python standard library's docstrings).",
    ),
    "--text-field": dict(default=None, help="The text column/key/feature of --data."),
    "--split": dict(default="train", help="The TFDS split of tfds:NAME, slicing allowed."),
    "--data-dir": dict(default=None, help="The TFDS data directory (offline: a prepared one)."),
    "--tokenizer": dict(
        default=None,
        help="byte (GPT only), a BERT vocab.txt, a GPT-2 vocab.json (merges.txt beside it), "
        "or train:SIZE to learn one from --data (WordPiece for BERT, byte-level BPE for "
        "GPT). Default: byte for GPT, train:8192 for BERT.",
    ),
    "--steps": dict(type=int, default=800, help="Training steps (batches)."),
    "--batch-size": dict(type=int, default=32, help="Sequences per batch."),
    "--sequence-length": dict(type=int, default=128, help="Tokens per sequence."),
    "--learning-rate": dict(
        type=float, default=None,
        help="Peak learning rate. Default: 2e-3 for gpt_nano, 1e-3 for bert_tiny to "
        "bert_small, else keras_llm.training.PEAK_LEARNING_RATE of the objective.",
    ),
    "--output": dict(
        default=None,
        help="Where to save the trained model (.keras); the tokenizer goes beside it as "
        "NAME.tokenizer.json. Default: PRESET.keras.",
    ),
    "--seed": dict(type=int, default=0, help="Seed of initialisation, data order and sampling."),
    "--strategy": dict(
        default="auto", choices=("auto", "default", "mirrored", "multi_worker", "tpu"),
        help="The tf.distribute strategy (keras_llm.distribute.get_strategy); auto picks a TPU, "
        "several workers (TF_CONFIG), several GPUs or one device, and says why. "
        "--batch-size is the global batch, split across replicas.",
    ),
    "--precision": dict(
        default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="Weights stay float32; mixed_* run matmuls in bfloat16/float16 (float16 with loss scaling).",
    ),
    "--jit-compile": dict(
        default="auto", nargs="?", const="on", choices=("auto", "on", "off"),
        help="XLA compilation of the train step: auto (on for one GPU; off on CPUs and under "
        "multi-replica strategies, where Keras 3 cannot compile it), on (also plain "
        "--jit-compile) or off.",
    ),
    "--backup-dir": dict(
        default=None,
        help="Where training state is backed up, so that rerunning the same command after a "
        "kill resumes where it stopped; removed once the model is saved. "
        "Default: OUTPUT without .keras, plus _backup.",
    ),
    "--backup-every": dict(type=int, default=100, help="Steps between backups."),
    "--logdir": dict(default=None, help="Write TensorBoard logs here (the chief only)."),
    "--prompt": dict(
        default="Return the ",
        help="Text of the sample printed after training: a GPT continues it; a BERT fills its "
        "[MASK]s (one is appended if it has none).",
    ),
    "--sample-length": dict(type=int, default=200, help="Tokens of the GPT sample."),
    "--export": dict(
        default=None,
        help="Where the trained model is exported for TF Serving (a new version directory "
        "inside; the sample comes from it). Default: saved_models/NAME, NAME from --output.",
    ),
}

GENERATE_FLAGS = {
    "--model": dict(
        required=True,
        help="A .keras file (its NAME.tokenizer.json beside it) or an exported SavedModel: a "
        "version directory or its base directory (the latest version is used).",
    ),
    "--prompt": dict(action="append", required=True, help="A prompt; repeat for a batch."),
    "--max-new-tokens": dict(type=int, default=64, help="Most tokens added to each prompt."),
    "--temperature": dict(type=float, default=0.0, help="0: greedy; else sample at this temperature."),
    "--top-k": dict(type=int, default=0, help="Sample among the k most likely tokens (0: all)."),
    "--top-p": dict(type=float, default=1.0, help="Sample from the top-p probability mass (1: all)."),
    "--seed": dict(type=int, default=0, help="Seed of the sampling."),
}

EXPORT_FLAGS = {
    "--model": dict(required=True, help="A .keras file from keras-llm train (NAME.tokenizer.json beside it)."),
    "--output": dict(default=None, help="The base directory; default: saved_models/NAME."),
    "--version": dict(type=int, default=None, help="The version number; default: the next free one."),
    "--overwrite": dict(action="store_true", help="Replace an existing --version."),
    "--label-names": dict(default=None, help="A classifier's class names, comma-separated."),
    "--max-new-tokens": dict(type=int, default=None, help="A GPT's serving_default max_new_tokens."),
    "--top-k": dict(
        type=int, default=None,
        help="A masked LM's fills per [MASK] (default 5), or a GPT's serving_default top-k.",
    ),
}

# Learning rates that suit the small presets trained for a few hundred steps.
SMALL_PRESET_LEARNING_RATE = {
    "gpt_nano": 2e-3, "bert_tiny": 1e-3, "bert_mini": 1e-3, "bert_small": 1e-3,
}
HELD_OUT_EVERY = 50  # one text in 50 is validation


def _positive(parser, args, names):
    for name in names:
        value = getattr(args, name)
        if value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive; received {value}")


def _load_tokenizer(spec, is_bert, texts, directory, parser):
    """The tokenizer that --tokenizer names, learning one (into `directory`) if asked."""
    import keras_llm

    tokenizers = keras_llm.tokenizers
    spec = spec or ("train:8192" if is_bert else "byte")
    if spec == "byte":
        if is_bert:
            parser.error("--tokenizer byte has no [CLS]/[SEP]/[MASK] for BERT; use a vocab.txt or train:SIZE")
        return tokenizers.ByteTokenizer()
    if spec.startswith("train:"):
        try:
            size = int(spec[len("train:"):])
        except ValueError:
            parser.error(f"--tokenizer train:SIZE needs an int SIZE; received {spec!r}")
        print(f"tokenizer: learning a {'WordPiece' if is_bert else 'byte-level BPE'} "
              f"vocabulary of {size} from the training data into {directory}/")
        if is_bert:
            return tokenizers.WordPieceTokenizer(tokenizers.train_word_piece(texts, size, directory))
        vocabulary, merges = tokenizers.train_byte_pair(texts, size, directory)
        return tokenizers.BytePairTokenizer(vocabulary, merges)
    if not os.path.isfile(spec):
        parser.error(f"--tokenizer: no such file {spec!r} (expected byte, train:SIZE, a vocab.txt or a vocab.json)")
    if spec.endswith(".json"):
        if is_bert:
            parser.error(f"--tokenizer {spec!r} is a GPT-2 BPE vocabulary; BERT needs a WordPiece vocab.txt")
        merges = os.path.join(os.path.dirname(spec), "merges.txt")
        if not os.path.isfile(merges):
            parser.error(f"--tokenizer {spec!r} needs merges.txt beside it; {merges!r} does not exist")
        return tokenizers.BytePairTokenizer(spec, merges)
    if not is_bert:
        parser.error(f"--tokenizer {spec!r}: GPT takes byte, train:SIZE or a GPT-2 vocab.json")
    return tokenizers.WordPieceTokenizer(spec)


def train(args, parser):
    """Trains a GPT (next-token prediction) or a BERT (masked LM + next sentence).

    Saves the model and its tokenizer, exports them for TF Serving
    (saved_models/NAME/VERSION, --export) and prints a sample from the export:
    a GPT's continuation of --prompt, or a BERT's fills of its [MASK]s.
    Rerunning the same command after the process was killed resumes from the
    last backup (--backup-dir) and ends with the same model.
    """
    _positive(parser, args, ["steps", "batch_size", "sequence_length", "sample_length", "backup_every"])
    args.output = args.output or f"{args.preset}.keras"
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end in .keras; received {args.output!r}")
    stem = os.path.splitext(args.output)[0]
    args.backup_dir = args.backup_dir or stem + "_backup"

    import keras
    import tensorflow as tf

    import keras_llm

    is_bert = args.preset in keras_llm.BERT_PRESETS
    if not is_bert and args.preset not in keras_llm.GPT_PRESETS:
        parser.error(
            f"--preset must be one of {', '.join(sorted(keras_llm.GPT_PRESETS))} or "
            f"{', '.join(sorted(keras_llm.BERT_PRESETS))}; received {args.preset!r}"
        )
    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = keras_llm.distribute.get_strategy(args.strategy)
    chief = keras_llm.distribute.is_chief(strategy)
    keras.utils.set_random_seed(args.seed)

    texts = keras_llm.data.load_texts(
        args.data, text_field=args.text_field, split=args.split, data_dir=args.data_dir
    )
    if is_bert:  # segments are lines (BERT's one-sentence-per-line files)
        texts = texts.flat_map(
            lambda t: tf.data.Dataset.from_tensor_slices(tf.strings.split(t, "\n"))
        ).filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)
    numbered = texts.enumerate()
    pick = lambda held_out: lambda i, _: tf.equal(i % HELD_OUT_EVERY == 0, held_out)
    train_texts = numbered.filter(pick(False)).map(lambda _, t: t)
    validation_texts = numbered.filter(pick(True)).map(lambda _, t: t)
    print(f"corpus: {args.data or 'the standard library docstrings (built in)'}")
    backup_tokenizer = os.path.join(args.backup_dir, "tokenizer.json")
    resuming = os.path.isfile(backup_tokenizer)
    if resuming:  # a killed run's tokenizer, not a new one learned again
        with open(backup_tokenizer, encoding="utf-8") as f:
            tokenizer = keras.saving.deserialize_keras_object(json.load(f))
    else:
        vocabulary_dir = stem + "_vocabulary" if chief else tempfile.mkdtemp()
        tokenizer = _load_tokenizer(args.tokenizer, is_bert, train_texts, vocabulary_dir, parser)
    print(f"tokenizer: {type(tokenizer).__name__}, {tokenizer.vocabulary_size:,} ids")

    presets = keras_llm.BERT_PRESETS if is_bert else keras_llm.GPT_PRESETS
    max_length = max(args.sequence_length, presets[args.preset]["max_sequence_length"])
    learning_rate = args.learning_rate or SMALL_PRESET_LEARNING_RATE.get(args.preset)
    build = keras_llm.build_bert_pretrainer if is_bert else keras_llm.build_gpt
    task = "bert_pretraining" if is_bert else "causal_lm"
    jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    with strategy.scope():
        model = build(
            args.preset, vocabulary_size=tokenizer.vocabulary_size,
            max_sequence_length=max_length, precision=args.precision,
        )
        keras_llm.compile_model(
            model, task, learning_rate=learning_rate, total_steps=args.steps, jit_compile=jit_compile
        )
    print(f"model: {args.preset}, {model.count_params():,} parameters, objective {task}, "
          f"{args.precision}, {strategy.num_replicas_in_sync} replica(s)")

    pipeline = keras_llm.data.masked_lm_dataset if is_bert else keras_llm.data.causal_lm_dataset
    shape = dict(sequence_length=args.sequence_length, batch_size=args.batch_size)
    train_data = pipeline(train_texts, tokenizer, seed=args.seed, repeat=True, **shape)
    # Several replicas: full validation batches too (static shapes for TPUs,
    # an equal share for every worker).
    full_batches = strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.TPUStrategy)
    validation_data = pipeline(
        validation_texts, tokenizer, shuffle=False, drop_remainder=full_batches, **shape
    ).take(8).cache()
    if next(iter(validation_data), None) is None:
        needed = (
            f"one batch (--batch-size {args.batch_size} sequences of --sequence-length "
            f"{args.sequence_length})" if full_batches
            else f"one sequence of --sequence-length {args.sequence_length}"
        )
        parser.error(
            f"--data holds too little text: its held-out part (one text in {HELD_OUT_EVERY}) "
            f"does not fill {needed}"
        )
    # Several workers each read the whole corpus and keep their share of
    # every global batch (there are no files to split between them).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_data = train_data.with_options(options)
    validation_data = validation_data.with_options(options)

    def report():
        metrics = model.evaluate(validation_data, verbose=0, return_dict=True)
        if is_bert:
            return metrics["loss"], (
                f"masked-LM accuracy {metrics['mlm_logits_accuracy']:.3f}, next-sentence "
                f"accuracy {metrics['nsp_logits_accuracy']:.3f}"
            )
        return metrics["loss"], f"perplexity {metrics['perplexity']:.2f}"

    # Every worker evaluates (a collective op under multi-worker strategies),
    # whether or not it resumes, so that all of them run the same steps.
    initial, _ = report()
    print(f"validation loss before training: {initial:.3f}")
    if resuming:
        print(f"resuming: a killed run's backup is in {args.backup_dir}/")
    else:
        if chief:
            config = json.dumps(keras.saving.serialize_keras_object(tokenizer))
            os.makedirs(args.backup_dir, exist_ok=True)
            _write_atomically(backup_tokenizer, _write_text(config))
    callbacks = [keras.callbacks.TensorBoard(args.logdir)] if args.logdir and chief else []
    # Up to ten epochs (validation after each) of equal length: exactly --steps steps.
    epochs = max(d for d in range(1, 11) if args.steps % d == 0)
    start = time.time()
    resumed_from = keras_llm.training.fit_resumable(
        model,
        train_data,
        epochs=epochs,
        steps_per_epoch=args.steps // epochs,
        backup_dir=args.backup_dir,
        backup_every=args.backup_every,
        callbacks=callbacks,
        validation_data=validation_data,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    final, details = report()
    if resumed_from:
        print(f"resumed at step {resumed_from} of {args.steps}")
    print(f"validation loss {initial:.3f} -> {final:.3f} ({details}) in {time.time() - start:.0f} s")

    if not chief:  # the chief samples and writes; the other workers are done
        return 0
    _write_atomically(args.output, model.save, suffix=".keras")
    tokenizer_path = stem + ".tokenizer.json"
    config = json.dumps(keras.saving.serialize_keras_object(tokenizer))
    _write_atomically(tokenizer_path, _write_text(config))
    print(f"saved: {args.output} and {tokenizer_path}")
    export_base = args.export or os.path.join("saved_models", os.path.basename(stem))
    version = keras_llm.export(model, export_base, tokenizer)
    print(f"exported for TF Serving: {version}")
    if is_bert:
        text = args.prompt if "[MASK]" in args.prompt else args.prompt.rstrip() + " [MASK]"
        print(f"sample (filled by the export):\n{text}")
        blanks = _fill_from_saved_model(version, text)
        for blank, fills in enumerate(blanks, start=1):
            print(f"  [MASK] {blank}: " + ", ".join(f"{t} ({p:.3f})" for t, p in fills))
        if not blanks:
            print(f"  (no [MASK] within the model's {max_length} tokens: nothing to fill)")
    else:
        context = model.get_layer("embeddings").max_sequence_length
        settings = dict(max_new_tokens=min(args.sample_length, context - 1), temperature=0.8,
                        top_k=40, top_p=1.0, seed=args.seed)
        completion = _generate_from_saved_model(version, [args.prompt], **settings)[0]
        print(f"sample (generated by the export):\n{args.prompt}{completion}")
    # The model is safe: the backups are no longer needed.
    if os.path.isfile(backup_tokenizer):
        os.remove(backup_tokenizer)
    keras_llm.training.TrainingBackup(args.backup_dir).remove()
    return 0


def _latest_version(path):
    """`path` if it holds a SavedModel, else its largest integer subdirectory."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
    if not versions:
        return None
    return os.path.join(path, str(max(versions)))


def _generate_from_saved_model(path, prompts, **settings):
    """Completions of `prompts` from an exported GPT's `generate` signature (TensorFlow only)."""
    import tensorflow as tf

    signatures = tf.saved_model.load(path).signatures
    if "generate" not in signatures:
        raise ValueError(
            f"{path} is not a GPT export (it has no `generate` signature; it has "
            f"{', '.join(sorted(signatures))})"
        )
    generate = signatures["generate"]
    n = len(prompts)
    outputs = generate(
        text=tf.constant(prompts),
        max_new_tokens=tf.fill([n], settings["max_new_tokens"]),
        temperature=tf.fill([n], float(settings["temperature"])),
        top_k=tf.fill([n], settings["top_k"]),
        top_p=tf.fill([n], float(settings["top_p"])),
        seed=tf.fill([n], settings["seed"]),
    )
    return [t.decode("utf-8") for t in outputs["generated_text"].numpy()]


def _fill_from_saved_model(path, text):
    """[(token, probability), ...] for each [MASK] of `text`, from an exported masked LM."""
    import tensorflow as tf

    outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant([text]))
    fills = []
    for position, tokens, probabilities in zip(
        outputs["mask_positions"].numpy()[0], outputs["top_tokens"].numpy()[0],
        outputs["top_probabilities"].numpy()[0],
    ):
        if position >= 0:
            fills.append([(t.decode("utf-8"), float(p)) for t, p in zip(tokens, probabilities)])
    return fills


def _load_trained(path, parser):
    """A .keras model and the tokenizer saved beside it by `keras-llm train`."""
    import keras

    import keras_llm  # noqa: F401  (registers keras_llm's layers for loading)

    tokenizer_path = os.path.splitext(path)[0] + ".tokenizer.json"
    if not os.path.isfile(path):
        parser.error(f"--model: no such file {path!r}")
    if not os.path.isfile(tokenizer_path):
        parser.error(f"--model {path!r} needs its tokenizer beside it; {tokenizer_path!r} does not exist")
    with open(tokenizer_path, encoding="utf-8") as f:
        tokenizer = keras.saving.deserialize_keras_object(json.load(f))
    return keras.saving.load_model(path), tokenizer


def generate(args, parser):
    """Continues prompts with a GPT from a .keras file or an exported SavedModel."""
    if args.max_new_tokens < 0:
        parser.error(f"--max-new-tokens must be >= 0; received {args.max_new_tokens}")
    settings = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if args.model.endswith(".keras"):
        import keras_llm

        model, tokenizer = _load_trained(args.model, parser)
        try:
            completions = keras_llm.generate(
                model, args.prompt, args.max_new_tokens, tokenizer=tokenizer,
                temperature=args.temperature, top_k=args.top_k or None,
                top_p=None if args.top_p == 1.0 else args.top_p, seed=args.seed,
            )
        except ValueError as error:
            parser.error(str(error))
    else:
        version = _latest_version(args.model)
        if version is None:
            parser.error(f"--model {args.model!r} is neither a .keras file nor an exported SavedModel")
        import tensorflow as tf

        try:
            completions = _generate_from_saved_model(version, args.prompt, **settings)
        except ValueError as error:
            parser.error(f"--model: {error}")
        except tf.errors.InvalidArgumentError as error:
            # The served graph's check says what was wrong: "assertion failed: [MESSAGE]".
            reason = re.search(r"assertion failed: \[([^\]]*)\]", error.message)
            parser.error(reason.group(1) if reason else error.message)
    for prompt, completion in zip(args.prompt, completions):
        print(prompt + completion)
    return 0


def export(args, parser):
    """Exports a trained model as a SavedModel that TF Serving serves from raw text."""
    import keras_llm

    model, tokenizer = _load_trained(args.model, parser)
    output = args.output or os.path.join(
        "saved_models", os.path.splitext(os.path.basename(args.model))[0]
    )
    names = args.label_names.split(",") if args.label_names else None
    try:
        version = keras_llm.export(
            model, output, tokenizer, version=args.version, overwrite=args.overwrite,
            label_names=names, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
        )
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))
    print(f"exported: {version}")
    return 0


def _write_atomically(path, write, suffix=""):
    """Runs `write(temporary_path)` beside `path`, then renames the file into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=suffix, dir=directory)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _write_text(text):
    def write(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-llm", description="Build, train and use transformer language models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train",
        help="Train a GPT or a BERT; by default gpt_nano on the built-in corpus.",
        description=train.__doc__,
    )
    for flag, spec in TRAIN_FLAGS.items():
        train_parser.add_argument(flag, **spec)
    for name, flags, handler in (("generate", GENERATE_FLAGS, generate), ("export", EXPORT_FLAGS, export)):
        sub = commands.add_parser(name, help=handler.__doc__.splitlines()[0], description=handler.__doc__)
        for flag, spec in flags.items():
            sub.add_argument(flag, **spec)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    logging.basicConfig(format="%(message)s")
    logging.getLogger("keras_llm").setLevel(logging.INFO)  # strategy choice, resumption
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": train, "generate": generate, "export": export}
    return commands[args.command](args, parser)


if __name__ == "__main__":
    sys.exit(main())
