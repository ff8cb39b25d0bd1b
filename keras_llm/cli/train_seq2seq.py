"""`keras-llm train` of an encoder-decoder preset: pairs in, BLEU and ROUGE-L before and after.

Without --data the task is built in: summarize a standard-library function
into the first line of its docstring.
"""

import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf

import keras_llm
from keras_llm.cli import _common
from keras_llm.cli._files import generate_from_saved_model, save_and_export, write_history_plot


def run(args, parser, strategy, training, stem):
    """Trains `args.preset` (an encoder-decoder) under `strategy`; `training` keeps its files."""
    _common.positive(parser, args, ["target_length", "eval_pairs"])
    train_pairs, held_out = _pairs(args, parser)
    held_out = held_out[: args.eval_pairs]

    # One vocabulary learned from sources and targets alike.
    texts = train_pairs.flat_map(lambda s, t: tf.data.Dataset.from_tensor_slices(tf.stack([s, t])))
    tokenizer = training.tokenizer(parser, stem, args.tokenizer or "train:4096", False, texts)
    print(f"tokenizer: {type(tokenizer).__name__}, {tokenizer.vocabulary_size:,} ids "
          "(one vocabulary for sources and targets)")
    # Padding is masked out and weighted 0: a tokenizer without a padding id pads with its end.
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = tokenizer.end_token_id if pad is None else pad

    preset = keras_llm.SEQ2SEQ_PRESETS[args.preset]
    max_length = max(args.sequence_length, args.target_length, preset["max_sequence_length"])
    model = _common.build_model(args, strategy, keras_llm.build_seq2seq, tokenizer, max_length)
    print(f"model: {args.preset}, {model.count_params():,} parameters, objective seq2seq_lm "
          f"(label smoothing {model.loss.label_smoothing}), {args.precision}, "
          f"{strategy.num_replicas_in_sync} replica(s)")
    shape = dict(batch_size=args.batch_size, source_length=args.sequence_length,
                 target_length=args.target_length, pad_token_id=pad, source_pad_token_id=pad)
    full_batches = strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.TPUStrategy)
    train_data = keras_llm.data.seq2seq_dataset(
        train_pairs, tokenizer, seed=args.seed, repeat=True, drop_remainder=full_batches,
        bucket=not full_batches, **shape,
    )
    validation_data = keras_llm.data.seq2seq_dataset(
        held_out, tokenizer, shuffle=False, drop_remainder=full_batches,
        bucket=not full_batches, **shape,
    ).cache()
    batches = sum(1 for _ in validation_data)
    if not batches:
        parser.error(f"--data's held-out pairs do not fill one batch of --batch-size {args.batch_size}")
    validation_data = validation_data.apply(tf.data.experimental.assert_cardinality(batches))

    def report(label):
        loss = model.evaluate(validation_data, verbose=0, return_dict=True)["loss"]
        summaries, bleu, rouge = score_summaries(model, tokenizer, held_out, args.target_length)
        print(f"{label}: validation loss {loss:.3f}, BLEU {bleu:.4f}, ROUGE-L F1 {rouge:.4f} "
              f"(greedy, {len(held_out)} held-out pairs)")
        return summaries, bleu

    _, bleu_before = report("before training")
    training.start(tokenizer)
    history = keras.callbacks.History()  # the epochs' logs, for --plot
    callbacks = [history] + (
        [keras.callbacks.TensorBoard(args.logdir)] if args.logdir and training.chief else []
    )
    start = time.time()
    training.fit(parser, model, train_data, args.steps, callbacks=callbacks, validation_data=validation_data)
    print(f"trained {args.steps} steps in {time.time() - start:.0f} s")
    summaries, bleu_after = report("after training")
    print(f"BLEU {bleu_before:.4f} -> {bleu_after:.4f}")
    if not training.chief:
        return 0
    version = save_and_export(args, stem, model, tokenizer)
    if args.plot:
        write_history_plot(history, stem)
    served = generate_from_saved_model(
        version, [held_out[0][0]], [0], max_new_tokens=args.target_length, temperature=0.0,
        top_k=0, top_p=1.0,
    )[0]
    print(f"summaries of held-out {'pairs' if args.data else 'functions'} (reference | generated):")
    for (source, reference), generated in list(zip(held_out, summaries))[:3]:
        first_line = source.strip().splitlines()[0] if source.strip() else ""
        print(f"  {first_line[:70]}\n    reference: {reference}\n    generated: {generated}")
    print(f"the export serves the first one as: {served}")
    training.finish()
    return 0


def _pairs(args, parser):
    """(training pairs as a dataset of (source, target), held-out pairs as a list)."""
    if args.data is None:
        train_pairs = [(p["source"], p["target"])
                       for p in keras_llm.data.stdlib_function_summaries("train")]
        held_out = [(p["source"], p["target"])
                    for p in keras_llm.data.stdlib_function_summaries("test")]
        print(f"task: summarize a standard-library function into its docstring's first line "
              f"(built in): {len(train_pairs):,} training pairs, {len(held_out)} held-out "
              "functions (other files)")
        train_pairs = tf.data.Dataset.from_tensor_slices(
            ([s for s, _ in train_pairs], [t for _, t in train_pairs])
        )
        return train_pairs, held_out
    try:
        pairs = keras_llm.data.load_texts(
            args.data, text_field=args.source_field, label_field=args.target_field,
            split=args.split, data_dir=args.data_dir, download=args.download,
        )
    except (OSError, ValueError) as error:  # a missing, empty or malformed source
        # load_texts names its arguments; the user gave flags.
        message = str(error).replace("text_field=", "--source-field=")
        parser.error(f"--data: {message.replace('label_field=', '--target-field=')}")
    if pairs.element_spec[1].dtype != tf.string:
        parser.error(f"--target-field {args.target_field!r} must hold text; "
                     f"--data holds {pairs.element_spec[1].dtype.name} values there")
    train_pairs, held_out_pairs = _common.split_held_out(pairs)
    held_out = [
        (s.decode("utf-8"), t.decode("utf-8"))
        for s, t in held_out_pairs.take(args.eval_pairs).as_numpy_iterator()
    ]
    print(f"pairs: {args.data} ({args.source_field} -> {args.target_field}); one in "
          f"{_common.HELD_OUT_EVERY} held out ({len(held_out)} scored)")
    if not held_out:
        parser.error(f"--data holds too few pairs: none is held out (one in {_common.HELD_OUT_EVERY})")
    return train_pairs, held_out


def score_summaries(model, tokenizer, pairs, max_new_tokens):
    """Greedy outputs for the sources of `pairs`, and their BLEU and ROUGE-L F1 (keras-hub's)."""
    generator = keras_llm.generation.Generator(model, tokenizer)
    outputs = []
    for start in range(0, len(pairs), 64):  # batches of 64: one XLA compilation per bucket
        sources = [source for source, _ in pairs[start : start + 64]]
        outputs += generator.generate(sources, max_new_tokens)
    rouge = keras_hub.metrics.RougeL()
    rouge.update_state([target for _, target in pairs], outputs)
    bleu = corpus_bleu([[target] for _, target in pairs], outputs)
    return outputs, bleu, float(rouge.result()["f1_score"])


def corpus_bleu(references, outputs):
    """keras-hub's corpus BLEU of `outputs` (strings) against `references` (lists of strings).

    Its brevity penalty divides by the outputs' total length: outputs that
    are all empty (an untrained model's) score 0, as they should, but NumPy
    printed a divide-by-zero warning into `keras-llm train`'s output.
    """
    bleu = keras_hub.metrics.Bleu()
    with np.errstate(divide="ignore"):
        bleu.update_state(references, outputs)
    return float(bleu.result())
