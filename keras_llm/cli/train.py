"""`keras-llm train`: a GPT (causal LM) or a BERT (masked LM + next sentence) from text.

An encoder-decoder preset goes to `train_seq2seq`. What the command does is
its --help (`keras_llm_cli.COMMANDS`).
"""

import time

import keras
import tensorflow as tf

import keras_llm
from keras_llm.cli import _common, train_seq2seq
from keras_llm.cli._files import (
    check_plot,
    fill_from_saved_model,
    generate_from_saved_model,
    save_and_export,
    write_history_plot,
)
from keras_llm.cli.generate import row_seed


def run(args, parser):
    """Trains, reports the validation loss before and after, saves, exports and samples."""
    _common.positive(parser, args, ["steps", "batch_size", "sequence_length", "sample_length", "backup_every"])
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive; received {args.learning_rate}")
    stem = _common.output_stem(parser, args, f"{args.preset}.keras")
    check_plot(parser, args)
    is_bert = args.preset in keras_llm.BERT_PRESETS
    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = keras_llm.distribute.get_strategy(args.strategy)
    chief = keras_llm.distribute.is_chief(strategy)
    keras.utils.set_random_seed(args.seed)
    training = _common.TrainingRun(args, chief)
    if args.preset in keras_llm.SEQ2SEQ_PRESETS:
        return train_seq2seq.run(args, parser, strategy, training, stem)

    try:
        texts = keras_llm.data.load_texts(
            args.data, text_field=args.text_field, split=args.split, data_dir=args.data_dir,
            download=args.download,
        )
    except (OSError, ValueError) as error:  # a missing, empty or malformed source
        parser.error(f"--data: {error}")
    if is_bert:  # segments are lines (BERT's one-sentence-per-line files)
        texts = texts.flat_map(
            lambda t: tf.data.Dataset.from_tensor_slices(tf.strings.split(t, "\n"))
        ).filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)
    train_texts, validation_texts = _common.split_held_out(texts)
    print(f"corpus: {args.data or 'the standard library docstrings (built in)'}")
    tokenizer = training.tokenizer(parser, stem, args.tokenizer, is_bert, train_texts)
    print(f"tokenizer: {type(tokenizer).__name__}, {tokenizer.vocabulary_size:,} ids")

    presets = keras_llm.BERT_PRESETS if is_bert else keras_llm.GPT_PRESETS
    max_length = max(args.sequence_length, presets[args.preset]["max_sequence_length"])
    build = keras_llm.build_bert_pretrainer if is_bert else keras_llm.build_gpt
    model = _common.build_model(args, strategy, build, tokenizer, max_length)
    print(f"model: {args.preset}, {model.count_params():,} parameters, objective "
          f"{'bert_pretraining' if is_bert else 'causal_lm'}, {args.precision}, "
          f"{strategy.num_replicas_in_sync} replica(s)")

    pipeline = keras_llm.data.masked_lm_dataset if is_bert else keras_llm.data.causal_lm_dataset
    shape = dict(sequence_length=args.sequence_length, batch_size=args.batch_size)
    try:
        train_data = pipeline(train_texts, tokenizer, seed=args.seed, repeat=True, **shape)
    except ValueError as error:  # too little text for one window
        parser.error(f"--data: {error}")
    # Several replicas: full validation batches too (static shapes for TPUs,
    # an equal share for every worker).
    full_batches = strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.TPUStrategy)
    try:
        validation_data = pipeline(
            validation_texts, tokenizer, shuffle=False, drop_remainder=full_batches, **shape
        ).take(8).cache()
        # Read it whole once: the cache is complete (a partly read cache is
        # discarded, with a warning), and the known number of batches spares
        # Keras's "Your input ran out of data" when evaluate reaches its end.
        batches = sum(1 for _ in validation_data)
    except ValueError:  # causal_lm_dataset refuses texts shorter than one window
        batches = 0
    if not batches:
        needed = (
            f"one batch (--batch-size {args.batch_size} sequences of --sequence-length "
            f"{args.sequence_length})" if full_batches
            else f"one sequence of --sequence-length {args.sequence_length}"
        )
        parser.error(
            f"--data holds too little text: its held-out part (one text in "
            f"{_common.HELD_OUT_EVERY}) does not fill {needed}"
        )
    validation_data = validation_data.apply(tf.data.experimental.assert_cardinality(batches))
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
    training.start(tokenizer)
    history = keras.callbacks.History()  # the epochs' logs, for --plot
    callbacks = [history] + ([keras.callbacks.TensorBoard(args.logdir)] if args.logdir and chief else [])
    start = time.time()
    training.fit(parser, model, train_data, args.steps, callbacks=callbacks, validation_data=validation_data)
    final, details = report()
    print(f"validation loss {initial:.3f} -> {final:.3f} ({details}) in {time.time() - start:.0f} s")

    if not chief:  # the chief samples and writes; the other workers are done
        return 0
    version = save_and_export(args, stem, model, tokenizer)
    if args.plot:  # a BERT pre-trainer's loss sums two: exp(loss) is no perplexity
        write_history_plot(history, stem, perplexity=not is_bert)
    if is_bert:
        text = args.prompt if "[MASK]" in args.prompt else args.prompt.rstrip() + " [MASK]"
        print(f"sample (filled by the export):\n{text}")
        blanks = fill_from_saved_model(version, text)
        for blank, fills in enumerate(blanks, start=1):
            print(f"  [MASK] {blank}: " + ", ".join(f"{t} ({p:.3f})" for t, p in fills))
        if not blanks:
            print(f"  (no [MASK] within the model's {max_length} tokens: nothing to fill)")
    else:
        context = model.max_sequence_length
        settings = dict(max_new_tokens=min(args.sample_length, context - 1), temperature=0.8,
                        top_k=40, top_p=1.0)
        completion = generate_from_saved_model(
            version, [args.prompt], [row_seed(args.seed, args.prompt, 0)], **settings
        )[0]
        print(f"sample (generated by the export):\n{args.prompt}{completion}")
    training.finish()  # the model is safe: the backups are no longer needed
    return 0
