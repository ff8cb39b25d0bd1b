"""The commands of `keras-llm`: train, generate, finetune, export.

The flags, the parser and the start-up are in `keras_llm_cli` (a module beside
this package, so that `--help` needs no TensorFlow); each command here takes
the parsed `args` and its subcommand's `parser`, whose `error` reports a user
error in one line with exit status 2.
"""

import hashlib
import json
import os
import re
import sys
import tempfile
import time

from keras_llm._atomic import atomic_output, write_text
# `python -m keras_llm.cli` works too, but imports TensorFlow before the
# parser can hide its start-up lines: the `keras-llm` script is the quiet way.
from keras_llm_cli import main  # noqa: F401

# Learning rates that suit the small presets trained for a few hundred steps.
SMALL_PRESET_LEARNING_RATE = {
    "gpt_nano": 2e-3, "bert_tiny": 1e-3, "bert_mini": 1e-3, "bert_small": 1e-3,
    "seq2seq_tiny": 2e-3,
}
HELD_OUT_EVERY = 50  # one text in 50 is validation


def _positive(parser, args, names):
    for name in names:
        value = getattr(args, name)
        if value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive; received {value}")


def _load_tokenizer(spec, is_bert, texts, directory, parser):
    """The tokenizer that --tokenizer names, learning one (into `directory`) if asked."""
    try:
        return _tokenizer_of(spec, is_bert, texts, directory, parser)
    except (ValueError, OSError) as error:  # a malformed vocabulary, a bad SIZE
        parser.error(f"--tokenizer {spec or 'default'!r}: {error}")


def _tokenizer_of(spec, is_bert, texts, directory, parser):
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
    """`keras-llm train`: what it does is its --help (keras_llm_cli.COMMANDS)."""
    _positive(parser, args, ["steps", "batch_size", "sequence_length", "sample_length", "backup_every"])
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive; received {args.learning_rate}")
    args.output = args.output or f"{args.preset}.keras"
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end in .keras; received {args.output!r}")
    stem = os.path.splitext(args.output)[0]
    args.backup_dir = args.backup_dir or stem + "_backup"

    import keras
    import tensorflow as tf

    import keras_llm

    is_bert = args.preset in keras_llm.BERT_PRESETS
    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = keras_llm.distribute.get_strategy(args.strategy)
    chief = keras_llm.distribute.is_chief(strategy)
    keras.utils.set_random_seed(args.seed)
    if args.preset in keras_llm.SEQ2SEQ_PRESETS:
        return _train_seq2seq(args, parser, strategy, chief, stem)

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
    numbered = texts.enumerate()
    pick = lambda held_out: lambda i, _: tf.equal(i % HELD_OUT_EVERY == 0, held_out)
    train_texts = numbered.filter(pick(False)).map(lambda _, t: t)
    validation_texts = numbered.filter(pick(True)).map(lambda _, t: t)
    print(f"corpus: {args.data or 'the standard library docstrings (built in)'}")
    tokenizer, backup_tokenizer, resuming = _run_tokenizer(
        args, parser, chief, stem, args.tokenizer, is_bert, train_texts
    )
    print(f"tokenizer: {type(tokenizer).__name__}, {tokenizer.vocabulary_size:,} ids")

    presets = keras_llm.BERT_PRESETS if is_bert else keras_llm.GPT_PRESETS
    max_length = max(args.sequence_length, presets[args.preset]["max_sequence_length"])
    learning_rate = args.learning_rate
    if learning_rate is None:
        learning_rate = SMALL_PRESET_LEARNING_RATE.get(args.preset)
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
    # Read it whole once: the cache is complete (a partly read cache is
    # discarded, with a warning), and the known number of batches spares
    # Keras's "Your input ran out of data" when evaluate reaches its end.
    batches = sum(1 for _ in validation_data)
    validation_data = validation_data.apply(tf.data.experimental.assert_cardinality(batches))
    if not batches:
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
            write_text(backup_tokenizer, config)
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
    version = _save_and_export(args, stem, model, tokenizer)
    if is_bert:
        text = args.prompt if "[MASK]" in args.prompt else args.prompt.rstrip() + " [MASK]"
        print(f"sample (filled by the export):\n{text}")
        blanks = _fill_from_saved_model(version, text)
        for blank, fills in enumerate(blanks, start=1):
            print(f"  [MASK] {blank}: " + ", ".join(f"{t} ({p:.3f})" for t, p in fills))
        if not blanks:
            print(f"  (no [MASK] within the model's {max_length} tokens: nothing to fill)")
    else:
        context = model.max_sequence_length
        settings = dict(max_new_tokens=min(args.sample_length, context - 1), temperature=0.8,
                        top_k=40, top_p=1.0)
        completion = _generate_from_saved_model(
            version, [args.prompt], [row_seed(args.seed, args.prompt, 0)], **settings
        )[0]
        print(f"sample (generated by the export):\n{args.prompt}{completion}")
    # The model is safe: the backups are no longer needed.
    if os.path.isfile(backup_tokenizer):
        os.remove(backup_tokenizer)
    keras_llm.training.TrainingBackup(args.backup_dir).remove()
    return 0


def _run_tokenizer(args, parser, chief, stem, spec, is_bert, texts):
    """(tokenizer, its backup path, whether resuming): a killed run's tokenizer, or `spec`'s."""
    import keras

    backup_tokenizer = os.path.join(args.backup_dir, "tokenizer.json")
    if os.path.isfile(backup_tokenizer):  # a killed run's tokenizer, not a new one learned again
        with open(backup_tokenizer, encoding="utf-8") as f:
            return keras.saving.deserialize_keras_object(json.load(f)), backup_tokenizer, True
    vocabulary_dir = stem + "_vocabulary" if chief else tempfile.mkdtemp()
    return _load_tokenizer(spec, is_bert, texts, vocabulary_dir, parser), backup_tokenizer, False


def _train_seq2seq(args, parser, strategy, chief, stem):
    """`keras-llm train` of an encoder-decoder: pairs in, BLEU and ROUGE-L before and after."""
    import keras
    import tensorflow as tf

    import keras_llm

    _positive(parser, args, ["target_length", "eval_pairs"])
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
    else:
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
        numbered = pairs.enumerate()
        pick = lambda held: lambda i, _: tf.equal(i % HELD_OUT_EVERY == 0, held)
        train_pairs = numbered.filter(pick(False)).map(lambda _, pair: pair)
        held_out = [
            (s.decode("utf-8"), t.decode("utf-8")) for s, t in
            numbered.filter(pick(True)).map(lambda _, pair: pair).take(args.eval_pairs)
            .as_numpy_iterator()
        ]
        print(f"pairs: {args.data} ({args.source_field} -> {args.target_field}); one in "
              f"{HELD_OUT_EVERY} held out ({len(held_out)} scored)")
        if not held_out:
            parser.error(f"--data holds too few pairs: none is held out (one in {HELD_OUT_EVERY})")
    held_out = held_out[: args.eval_pairs]

    # One vocabulary learned from sources and targets alike.
    texts = train_pairs.flat_map(lambda s, t: tf.data.Dataset.from_tensor_slices(tf.stack([s, t])))
    tokenizer, backup_tokenizer, resuming = _run_tokenizer(
        args, parser, chief, stem, args.tokenizer or "train:4096", False, texts
    )
    print(f"tokenizer: {type(tokenizer).__name__}, {tokenizer.vocabulary_size:,} ids "
          "(one vocabulary for sources and targets)")
    # Padding is masked out and weighted 0: a tokenizer without a padding id pads with its end.
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = tokenizer.end_token_id if pad is None else pad

    preset = keras_llm.SEQ2SEQ_PRESETS[args.preset]
    max_length = max(args.sequence_length, args.target_length, preset["max_sequence_length"])
    learning_rate = args.learning_rate or SMALL_PRESET_LEARNING_RATE.get(args.preset)
    jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    with strategy.scope():
        model = keras_llm.build_seq2seq(
            args.preset, vocabulary_size=tokenizer.vocabulary_size,
            max_sequence_length=max_length, precision=args.precision,
        )
        keras_llm.compile_model(
            model, "seq2seq_lm", learning_rate=learning_rate, total_steps=args.steps,
            jit_compile=jit_compile,
        )
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
        summaries, bleu, rouge = _score_summaries(model, tokenizer, held_out, args.target_length)
        print(f"{label}: validation loss {loss:.3f}, BLEU {bleu:.4f}, ROUGE-L F1 {rouge:.4f} "
              f"(greedy, {len(held_out)} held-out pairs)")
        return summaries, bleu

    _, bleu_before = report("before training")
    if resuming:
        print(f"resuming: a killed run's backup is in {args.backup_dir}/")
    elif chief:
        os.makedirs(args.backup_dir, exist_ok=True)
        write_text(backup_tokenizer, json.dumps(keras.saving.serialize_keras_object(tokenizer)))
    callbacks = [keras.callbacks.TensorBoard(args.logdir)] if args.logdir and chief else []
    epochs = max(d for d in range(1, 11) if args.steps % d == 0)
    start = time.time()
    resumed_from = keras_llm.training.fit_resumable(
        model, train_data, epochs=epochs, steps_per_epoch=args.steps // epochs,
        backup_dir=args.backup_dir, backup_every=args.backup_every, callbacks=callbacks,
        validation_data=validation_data, verbose=1 if sys.stdout.isatty() else 2,
    )
    if resumed_from:
        print(f"resumed at step {resumed_from} of {args.steps}")
    print(f"trained {args.steps} steps in {time.time() - start:.0f} s")
    summaries, bleu_after = report("after training")
    print(f"BLEU {bleu_before:.4f} -> {bleu_after:.4f}")
    if not chief:
        return 0
    version = _save_and_export(args, stem, model, tokenizer)
    served = _generate_from_saved_model(
        version, [held_out[0][0]], [0], max_new_tokens=args.target_length, temperature=0.0,
        top_k=0, top_p=1.0,
    )[0]
    print("summaries of held-out functions (reference | generated):")
    for (source, reference), generated in list(zip(held_out, summaries))[:3]:
        first_line = source.strip().splitlines()[0] if source.strip() else ""
        print(f"  {first_line[:70]}\n    reference: {reference}\n    generated: {generated}")
    print(f"the export serves the first one as: {served}")
    if os.path.isfile(backup_tokenizer):
        os.remove(backup_tokenizer)
    keras_llm.training.TrainingBackup(args.backup_dir).remove()
    return 0


def _score_summaries(model, tokenizer, pairs, max_new_tokens):
    """Greedy outputs for the sources of `pairs`, and their BLEU and ROUGE-L F1 (keras-hub's)."""
    import keras_hub

    import keras_llm

    generator = keras_llm.generation.Generator(model, tokenizer)
    outputs = []
    for start in range(0, len(pairs), 64):  # batches of 64: one XLA compilation per bucket
        sources = [source for source, _ in pairs[start : start + 64]]
        outputs += generator.generate(sources, max_new_tokens)
    rouge = keras_hub.metrics.RougeL()
    rouge.update_state([target for _, target in pairs], outputs)
    bleu = _bleu([[target] for _, target in pairs], outputs)
    return outputs, bleu, float(rouge.result()["f1_score"])


def _bleu(references, outputs):
    """keras-hub's corpus BLEU of `outputs` (strings) against `references` (lists of strings).

    Its brevity penalty divides by the outputs' total length: outputs that
    are all empty (an untrained model's) score 0, as they should, but NumPy
    printed a divide-by-zero warning into `keras-llm train`'s output.
    """
    import keras_hub
    import numpy as np

    bleu = keras_hub.metrics.Bleu()
    with np.errstate(divide="ignore"):
        bleu.update_state(references, outputs)
    return float(bleu.result())


def _save_and_export(args, stem, model, tokenizer, **export_arguments):
    """Saves `args.output` and STEM.tokenizer.json (what `_load_trained` reads), then exports
    to `args.export` (default saved_models/NAME); returns the version directory."""
    import keras

    import keras_llm

    with atomic_output(args.output) as temporary:
        model.save(temporary)
    tokenizer_path = stem + ".tokenizer.json"
    write_text(tokenizer_path, json.dumps(keras.saving.serialize_keras_object(tokenizer)))
    print(f"saved: {args.output} and {tokenizer_path}")
    export_base = args.export or os.path.join("saved_models", os.path.basename(stem))
    version = keras_llm.export(model, export_base, tokenizer, **export_arguments)
    print(f"exported for TF Serving: {version}")
    return version


def _latest_version(path):
    """`path` if it holds a SavedModel, else its largest integer subdirectory."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
    if not versions:
        return None
    return os.path.join(path, str(max(versions)))


def _generate_from_saved_model(path, prompts, seeds, **settings):
    """Completions of `prompts` from an exported GPT's `generate` signature (TensorFlow only).

    `seeds` has one seed per prompt; the other settings apply to every prompt.
    """
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
        text=tf.constant(prompts, tf.string, shape=[n]),
        max_new_tokens=tf.fill([n], settings["max_new_tokens"]),
        temperature=tf.fill([n], float(settings["temperature"])),
        top_k=tf.fill([n], settings["top_k"]),
        top_p=tf.fill([n], float(settings["top_p"])),
        seed=tf.constant(seeds, tf.int32, shape=[n]),
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
    try:
        with open(tokenizer_path, encoding="utf-8") as f:
            tokenizer = keras.saving.deserialize_keras_object(json.load(f))
    except (ValueError, TypeError, KeyError) as error:  # JSONDecodeError is a ValueError
        parser.error(
            f"--model {path!r}: its tokenizer {tokenizer_path!r} is not a keras_llm tokenizer "
            f"config as `keras-llm train` writes it ({type(error).__name__}: {error})"
        )
    try:
        # Generation and export need no optimizer: not compiling skips its state.
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras reports a damaged zip as "File not found"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        parser.error(
            f"--model {path!r} is not a loadable .keras model (truncated or damaged? a "
            f".keras file is a zip archive): {reason}"
        )
    return model, tokenizer


def _read_prompts(args, parser):
    """--prompt values, then the lines of --prompt-file (- for standard input)."""
    prompts = list(args.prompt or [])
    if args.prompt_file is not None:
        try:
            if args.prompt_file == "-":
                text = sys.stdin.read()
            else:
                with open(args.prompt_file, encoding="utf-8-sig") as f:  # a BOM is not text
                    text = f.read()
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--prompt-file {args.prompt_file!r}: {error}")
        # Lines end at \n (or \r\n) only: str.splitlines would also cut at
        # form feeds and Unicode separators inside a prompt.
        lines = (line.removesuffix("\r") for line in text.split("\n"))
        prompts += [line for line in lines if line.strip()]
    if not prompts:
        parser.error("give at least one prompt: --prompt TEXT or --prompt-file FILE (- for stdin)")
    return prompts


def row_seed(seed, prompt, sample):
    """The sampling seed of one row: a hash of (--seed, the prompt, the sample number).

    Rows sharing a seed share their sampling noise (the same draw at the same
    step), so each row gets its own; deriving it from the prompt rather than
    the row's position keeps "the same prompt and --seed give the same text"
    true alone, in any batch and at any position.
    """
    digest = hashlib.blake2b(f"{seed}\0{sample}\0{prompt}".encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def _cut_at_stop_strings(text, stops):
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def generate(args, parser):
    """Continues prompts with a GPT, or writes targets of sources with an encoder-decoder,
    from a .keras file or an exported SavedModel."""
    if args.max_new_tokens < 0:
        parser.error(f"--max-new-tokens must be >= 0; received {args.max_new_tokens}")
    _positive(parser, args, ["num_beams", "num_samples"])
    if args.num_samples > 1 and (args.temperature == 0 or args.num_beams > 1):
        parser.error(
            f"--num-samples {args.num_samples} needs sampling (--temperature > 0, no "
            "--num-beams): greedy decoding and beam search give one text per prompt"
        )
    if args.stop is not None and "" in args.stop:
        parser.error("--stop must not be empty")
    prompts = _read_prompts(args, parser)
    from keras_llm.generation.samplers import check_settings

    try:  # the one check of decoding settings (the context is checked where it is known)
        check_settings(None, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       num_beams=args.num_beams)
    except ValueError as error:
        flags = re.sub(r"\b(temperature|top_k|top_p|num_beams)\b",
                       lambda m: "--" + m.group(1).replace("_", "-"), str(error))
        parser.error(flags)
    # Each prompt's samples, prompt-major: [p0 s0, p0 s1, ..., p1 s0, ...].
    rows = [(n, prompt, sample) for n, prompt in enumerate(prompts) for sample in range(args.num_samples)]
    texts = [prompt for _, prompt, _ in rows]
    seeds = [row_seed(args.seed, prompt, sample) for _, prompt, sample in rows]
    if args.model.endswith(".keras"):
        import keras_llm

        model, tokenizer = _load_trained(args.model, parser)
        if args.num_beams > 1:
            sampling = dict(num_beams=args.num_beams)  # sampling flags refused above
        else:
            sampling = dict(temperature=args.temperature, top_k=args.top_k or None,
                            top_p=None if args.top_p == 1.0 else args.top_p, seed=seeds)
        try:
            completions = keras_llm.generate(
                model, texts, args.max_new_tokens, tokenizer=tokenizer, **sampling
            )
        except ValueError as error:
            parser.error(str(error))
        seq2seq = model.task == "seq2seq_lm"
    else:
        version = _latest_version(args.model)
        if version is None:
            parser.error(f"--model {args.model!r} is neither a .keras file nor an exported SavedModel")
        if args.num_beams > 1:
            parser.error(
                f"--num-beams {args.num_beams}: beam search runs from a .keras model; an export "
                "serves sampling and greedy decoding (its `generate` signature)"
            )
        import tensorflow as tf

        settings = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p)
        try:
            completions = _generate_from_saved_model(version, texts, seeds, **settings)
        except ValueError as error:
            parser.error(f"--model: {error}")
        except tf.errors.InvalidArgumentError as error:
            # The served graph's check says what was wrong: "assertion failed: [MESSAGE]".
            reason = re.search(r"assertion failed: \[([^\]]*)\]", error.message)
            parser.error(reason.group(1) if reason else error.message.splitlines()[0])
        seq2seq = _is_seq2seq_export(version)
    for (n, prompt, sample), completion in zip(rows, completions):
        if args.num_samples > 1:
            print(f"# prompt {n + 1}, sample {sample + 1}")
        completion = _cut_at_stop_strings(completion, args.stop or [])
        # A GPT continues the prompt; an encoder-decoder writes a new text from it.
        print(f"{prompt}\n-> {completion}" if seq2seq else prompt + completion)
    return 0


def _is_seq2seq_export(path):
    """Whether an export is a seq2seq model's (its `logits` take encoder inputs)."""
    import tensorflow as tf

    logits = tf.saved_model.load(path).signatures.get("logits")
    return logits is not None and "encoder_token_ids" in logits.structured_input_signature[1]


# `keras-llm finetune --task` -> (from_pretrained's task, compile_model's task).
FINETUNE_TASKS = {
    "classify": ("classify", "classification"),
    "tag": ("tag", "token_tagging"),
    "qa": ("qa", "question_answering"),
}


def _read_qa_examples(source, split, args, parser, flag):
    """SQuAD-style examples: a list of dicts from files, or a TFDS dataset of dicts."""
    import glob

    import keras_llm

    if source.startswith("tfds:"):
        import tensorflow_datasets as tfds

        name = source[len("tfds:"):]
        try:
            keras_llm.data.load_texts(  # its checks: offline, unknown, not prepared
                source, text_field="context", split=split, data_dir=args.data_dir,
                download=args.download,
            )
            return tfds.load(name, split=split, data_dir=args.data_dir, download=False)
        except (OSError, ValueError) as error:
            parser.error(f"{flag}: {error}")
    paths = sorted(glob.glob(source)) if glob.has_magic(source) else [source]
    records = []
    for path in paths:
        if not os.path.isfile(path):
            parser.error(f"{flag}: no such file {path!r}")
        try:
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"{flag} {path!r}: {error}")
        if path.endswith(".jsonl"):
            for line, row in enumerate(text.split("\n"), start=1):
                if row.strip():
                    try:
                        records.append(json.loads(row))
                    except json.JSONDecodeError as error:
                        parser.error(f"{flag} {path}:{line}: not a JSON object ({error.msg})")
        elif path.endswith((".tsv", ".csv")):
            import csv
            import io

            tsv = path.endswith(".tsv")
            reader = csv.DictReader(
                io.StringIO(text), delimiter="\t" if tsv else ",",
                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
            )
            for row in reader:
                if "answer_start" in row:
                    try:
                        row["answer_start"] = int(row["answer_start"])
                    except (TypeError, ValueError):
                        parser.error(
                            f"{flag} {path}:{reader.line_num}: answer_start must be an int "
                            f"(characters into the context, -1 for none); received {row['answer_start']!r}"
                        )
                records.append(row)
        else:
            parser.error(f"{flag} {path!r}: qa reads .jsonl, .tsv or .csv files, or tfds:NAME")
    if not records:
        parser.error(f"{flag} {source!r}: no examples")
    return records


def _finetune_data(args, parser, source, split, flag):
    """`(text, label)` or `(words, tags)` pairs (classify, tag), or QA examples."""
    import keras_llm

    if args.task == "qa":
        return _read_qa_examples(source, split, args, parser, flag)
    default_text, default_label = (None, "label") if args.task == "classify" else ("tokens", "tags")
    try:
        return keras_llm.data.load_texts(
            source, text_field=args.text_field or default_text,
            label_field=args.label_field or default_label, split=split, data_dir=args.data_dir,
            download=args.download,
        )
    except (OSError, ValueError) as error:
        parser.error(f"{flag}: {error}")


def _label_names_of(args, own_head, data):
    """--label-names; else None where the checkpoint's own head names its classes (id2label);
    else the string labels found in the data, sorted (tags: O first); None for int labels."""
    import numpy as np

    if args.label_names:
        return [name.strip() for name in args.label_names.split(",")]
    if own_head:
        return None
    labels = data.map(lambda _, label: label)
    if labels.element_spec.dtype != "string":
        return None  # int labels: numbered classes
    names = set()
    for label in labels.as_numpy_iterator():
        names.update(np.atleast_1d(label).tolist())
    names = sorted(n.decode("utf-8") for n in names)
    if args.task == "tag" and "O" in names:  # the outside tag first, as CoNLL lists them
        names = ["O"] + [n for n in names if n != "O"]
    return names


def _finetune_batches(args, data, tokenizer, label_names, num_classes, training):
    import keras_llm

    common = dict(sequence_length=args.sequence_length, seed=args.seed, repeat=training,
                  shuffle=training, bucket=training)
    if args.task == "qa":
        return keras_llm.data.question_answering_dataset(
            data, tokenizer, args.batch_size, doc_stride=args.doc_stride,
            max_question_length=args.max_question_length, **common
        )
    pipeline = (keras_llm.data.classification_dataset if args.task == "classify"
                else keras_llm.data.token_tagging_dataset)
    return pipeline(data, tokenizer, args.batch_size, label_names=label_names,
                    num_classes=num_classes, **common)


def _evaluate_finetuned(args, model, tokenizer, data, label_names, num_classes):
    """The task's score on --eval: {name: value} for printing."""
    import numpy as np

    import keras_llm
    from keras_llm import evaluation

    if args.task == "qa":
        records = data if isinstance(data, list) else list(data.as_numpy_iterator())
        decode = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v
        questions = [decode(r["question"]) for r in records]
        contexts = [decode(r["context"]) for r in records]
        references = [
            [decode(t) for t in r["answers"]["text"]] if "answers" in r else [decode(r["answer_text"])]
            for r in records
        ]
        answers = []
        for i in range(0, len(records), args.batch_size):
            # The windows the export serves (the model's context, at most 384 tokens).
            out = evaluation.answer_questions(
                model, tokenizer, questions[i:i + args.batch_size], contexts[i:i + args.batch_size],
                doc_stride=args.doc_stride, max_question_length=args.max_question_length,
            )
            answers += [a.decode("utf-8") for a in out["answer"].numpy()]
        return evaluation.squad_scores(answers, references)
    batches = _finetune_batches(args, data, tokenizer, label_names, num_classes, training=False)
    truth, predicted = [], []
    for batch in batches:
        x, labels = batch[0], batch[1].numpy()
        guesses = np.argmax(model.predict_on_batch(x), axis=-1)
        if args.task == "classify":
            truth += labels.tolist()
            predicted += guesses.tolist()
        else:  # one tag per word: the positions of first pieces (weight 1)
            weights = batch[2].numpy() > 0
            for row in range(len(labels)):
                truth.append([label_names[t] for t in labels[row][weights[row]]])
                predicted.append([label_names[t] for t in guesses[row][weights[row]]])
    if args.task == "classify":
        return {"accuracy": evaluation.accuracy(truth, predicted)}
    return {"accuracy": evaluation.accuracy(truth, predicted), **evaluation.entity_f1(truth, predicted)}


def _served_answer(args, version, data):
    """What the export answers for the first --eval (else --train) example: a line to print."""
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(version).signatures["serving_default"]
    if args.task == "qa":
        record = data[0] if isinstance(data, list) else next(data.as_numpy_iterator())
        decode = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v
        question, context = decode(record["question"]), decode(record["context"])
        out = serve(question=tf.constant([question]), context=tf.constant([context]))
        return (f"question: {question}\nanswer: {out['answer'].numpy()[0].decode('utf-8')!r} "
                f"(score {float(out['score'][0]):.3f})")
    text = next(iter(data))[0].numpy()
    if args.task == "tag":
        text = b" ".join(text.tolist())
    out = serve(text=tf.constant([text]))
    if args.task == "classify":
        return (f"text: {text.decode('utf-8')}\nlabel: {out['label'].numpy()[0].decode('utf-8')} "
                f"(probability {float(np.max(out['probabilities'].numpy()[0])):.3f})")
    count = int(out["num_words"][0])
    pairs = zip(out["words"].numpy()[0][:count], out["tags"].numpy()[0][:count])
    return "tags: " + " ".join(f"{w.decode('utf-8')}/{t.decode('utf-8')}" for w, t in pairs)


def finetune(args, parser):
    """`keras-llm finetune`: what it does is its --help (keras_llm_cli.COMMANDS)."""
    _positive(parser, args, ["epochs", "batch_size", "doc_stride", "max_question_length", "backup_every"])
    if args.max_steps is not None:
        _positive(parser, args, ["max_steps"])
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive; received {args.learning_rate}")
    if args.sequence_length is not None:
        _positive(parser, args, ["sequence_length"])
    if not os.path.isdir(args.checkpoint):
        parser.error(f"--checkpoint: no such directory {args.checkpoint!r}")
    name = os.path.basename(os.path.normpath(args.checkpoint))
    args.output = args.output or f"{name}-{args.task}.keras"
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end in .keras; received {args.output!r}")
    stem = os.path.splitext(args.output)[0]
    args.backup_dir = args.backup_dir or stem + "_backup"

    import keras
    import tensorflow as tf

    import keras_llm

    keras.utils.set_random_seed(args.seed)
    pretrained_task, compile_task = FINETUNE_TASKS[args.task]
    try:
        tokenizer = keras_llm.tokenizers.from_pretrained(args.checkpoint)
    except (OSError, ValueError) as error:
        parser.error(f"--checkpoint: {error}")
    if type(tokenizer) is keras_llm.tokenizers.CoreOpsWordPieceTokenizer:
        # The same ids at tensorflow-text's speed for the pipelines; the export
        # still serves the core-ops twin.
        tokenizer = keras_llm.tokenizers.WordPieceTokenizer.from_config(tokenizer.get_config())
    train_data = _finetune_data(args, parser, args.train, args.split, "--train")
    eval_data = _finetune_data(args, parser, args.eval, args.eval_split, "--eval") if args.eval else None

    # The checkpoint's own head keeps its classes; a fresh one takes them from
    # --label-names or from the training labels.
    head = {}
    if args.task != "qa":
        try:
            own_head = keras_llm.pretrained.checkpoint_task(args.checkpoint) == pretrained_task
        except (OSError, ValueError) as error:
            parser.error(f"--checkpoint: {error}")
        label_names = _label_names_of(args, own_head, train_data)
        if label_names is not None:
            head["label_names"] = label_names
        elif args.task == "tag":
            parser.error(
                "--task tag with int tags needs --label-names (BIO names such as O,B-PER,I-PER: "
                "entity-level F1 reads them)"
            )
        elif not own_head:  # numbered classes: as many as the labels need
            labels = train_data.map(lambda _, label: tf.reduce_max(label))
            top = labels.reduce(tf.constant(0, labels.element_spec.dtype), tf.maximum)
            head["num_classes"] = max(2, 1 + int(top))
    try:
        model = keras_llm.from_pretrained(args.checkpoint, task=pretrained_task, **head)
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"--checkpoint: {error}")
    label_names = list(getattr(model, "label_names", None) or []) or None
    context = model.max_sequence_length
    if args.sequence_length is None:
        args.sequence_length = min(384 if args.task == "qa" else 128, context)
    elif args.sequence_length > context:
        parser.error(
            f"--sequence-length {args.sequence_length} is longer than the checkpoint's "
            f"{context} positions (max_position_embeddings)"
        )
    num_classes = None if label_names else head.get("num_classes")
    print(f"checkpoint: {args.checkpoint}, {model.count_params():,} parameters, task {args.task}"
          + (f", labels {', '.join(label_names)}" if label_names else ""))

    try:
        batches = _finetune_batches(args, train_data, tokenizer, label_names, num_classes, training=False)
        steps_per_epoch = sum(1 for _ in batches)  # also checks every label before training
    except (ValueError, TypeError) as error:  # settings or examples the pipeline refuses
        parser.error(f"--train: {error}")
    except tf.errors.InvalidArgumentError as error:  # a label or an answer checked in the pipeline
        reason = re.search(r"assertion failed: \[([^\]]*)\]", error.message)
        parser.error("--train: " + (reason.group(1) if reason else error.message.splitlines()[0]))
    total = steps_per_epoch * args.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    epochs = max(d for d in range(1, args.epochs + 1) if total % d == 0)
    keras_llm.compile_model(
        model, compile_task, learning_rate=args.learning_rate, total_steps=total,
        warmup_steps=max(1, total // 10),
    )
    print(f"training: {total} steps of {args.batch_size} {'windows' if args.task == 'qa' else 'examples'}"
          f" ({steps_per_epoch} per pass over --train)")
    start = time.time()
    resumed_from = keras_llm.training.fit_resumable(
        model,
        _finetune_batches(args, train_data, tokenizer, label_names, num_classes, training=True),
        epochs=epochs,
        steps_per_epoch=total // epochs,
        backup_dir=args.backup_dir,
        backup_every=args.backup_every,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if resumed_from:
        print(f"resumed at step {resumed_from} of {total}")
    print(f"trained in {time.time() - start:.0f} s")
    if eval_data is not None:
        scores = _evaluate_finetuned(args, model, tokenizer, eval_data, label_names, num_classes)
        print("eval: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    qa = dict(doc_stride=args.doc_stride, max_question_length=args.max_question_length)
    version = _save_and_export(args, stem, model, tokenizer, label_names=label_names,
                               **(qa if args.task == "qa" else {}))
    print("the export answers:\n" + _served_answer(args, version, eval_data or train_data))
    keras_llm.training.TrainingBackup(args.backup_dir).remove()
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
            jit_compile=args.jit_compile,
        )
    except (ValueError, OSError) as error:  # FileExistsError among them
        parser.error(f"exporting {args.model!r} to --output {output!r}: {error}")
    print(f"exported: {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
