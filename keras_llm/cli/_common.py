"""What the commands share: flag checks, the held-out split, the run's tokenizer, resumable fitting.

`train` (GPT, BERT) and its seq2seq twin hold out the same share of the data,
learn or read the tokenizer the same way, keep it in the backup directory so
that a rerun after a kill reuses it, split `--steps` into epochs by the same
rule and clean up the same files; each is written once, here.
"""

import json
import os
import re
import sys
import tempfile

import keras
import tensorflow as tf

import keras_llm
from keras_llm._atomic import write_text

# Learning rates that suit the small presets trained for a few hundred steps.
SMALL_PRESET_LEARNING_RATE = {
    "gpt_nano": 2e-3, "bert_tiny": 1e-3, "bert_mini": 1e-3, "bert_small": 1e-3,
    "seq2seq_tiny": 2e-3,
}
HELD_OUT_EVERY = 50  # one text (or pair) in 50 is validation
JIT_COMPILE = {"auto": "auto", "on": True, "off": False}  # --jit-compile -> compile_model's


def positive(parser, args, names):
    """Errors (exit status 2) naming the first flag of `names` that is not positive."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive; received {value}")


def output_stem(parser, args, default):
    """Checks --output (default `default`) and defaults --backup-dir; returns OUTPUT without .keras."""
    args.output = args.output or default
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end in .keras; received {args.output!r}")
    stem = os.path.splitext(args.output)[0]
    args.backup_dir = args.backup_dir or stem + "_backup"
    return stem


def build_model(args, strategy, build, tokenizer, max_length):
    """`build(args.preset)` under `strategy`, sized for `tokenizer`, compiled for `args.steps`.

    The learning rate is `--learning-rate`, else the small presets' own
    (`SMALL_PRESET_LEARNING_RATE`), else `compile_model`'s default; the
    model carries `tokenizer`.
    """
    learning_rate = args.learning_rate
    if learning_rate is None:
        learning_rate = SMALL_PRESET_LEARNING_RATE.get(args.preset)
    with strategy.scope():
        model = build(
            args.preset, vocabulary_size=tokenizer.vocabulary_size,
            max_sequence_length=max_length, precision=args.precision,
        )
        keras_llm.compile_model(
            model, learning_rate=learning_rate, total_steps=args.steps,
            jit_compile=JIT_COMPILE[args.jit_compile],
        )
    model.tokenizer = tokenizer
    return model


def split_held_out(dataset):
    """(training part, held-out part) of `dataset`: every HELD_OUT_EVERY-th element is held out."""
    numbered = dataset.enumerate()
    pick = lambda held_out: lambda i, _: tf.equal(i % HELD_OUT_EVERY == 0, held_out)
    return tuple(numbered.filter(pick(held)).map(lambda _, x: x) for held in (False, True))


def epochs_of(steps, most):
    """The most epochs, at most `most`, of one length that make exactly `steps` steps."""
    return max(d for d in range(1, most + 1) if steps % d == 0)


def graph_error_message(error):
    """The message of a graph assertion (`tf.errors.InvalidArgumentError`), whole.

    TensorFlow prints an assertion's data as `assertion failed: [a] [b] [c]`,
    a bracket per tensor and brackets inside a value (`label_names=[a, b]`):
    the pieces are read back by bracket depth and joined, so the user sees the
    whole cause, not its first piece.
    """
    message = error.message
    _, found, rest = message.partition("assertion failed: ")
    if not found:
        return message.splitlines()[0]
    rest = rest.splitlines()[0]
    pieces, depth, start = [], 0, 0
    for i, character in enumerate(rest):
        if character == "[":
            depth += 1
            if depth == 1:
                start = i + 1
        elif character == "]" and depth:
            depth -= 1
            if depth == 0:
                pieces.append(rest[start:i])
    text = ""
    for piece in pieces:  # "has label x" + "; expected ...": no space before punctuation
        text += piece if not text or piece[:1] in ";,.:)" else " " + piece
    return text or rest


def load_tokenizer(spec, is_bert, texts, directory, parser):
    """The tokenizer that --tokenizer names, learning one (into `directory`) if asked."""
    try:
        return _tokenizer_of(spec, is_bert, texts, directory, parser)
    except (ValueError, OSError) as error:  # a malformed vocabulary, a bad SIZE
        parser.error(f"--tokenizer {spec or 'default'!r}: {error}")


def _tokenizer_of(spec, is_bert, texts, directory, parser):
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


class TrainingRun:
    """The files of one `keras-llm train` run: its tokenizer kept with its backups, then removed.

    The backup directory holds the weights of the last steps and, beside them,
    the run's tokenizer (`tokenizer.json`): a rerun after a kill must build
    the model with the same ids before it restores the weights, and a learned
    vocabulary (`train:SIZE`) is not learned again. It is a backup, not a
    model file: the saved `.keras` model carries its own tokenizer.
    """

    def __init__(self, args, chief):
        self.args, self.chief = args, chief
        self.tokenizer_path = os.path.join(args.backup_dir, "tokenizer.json")
        self.resuming = False

    def tokenizer(self, parser, stem, spec, is_bert, texts):
        """A killed run's tokenizer, or the one `spec` names (learned into STEM_vocabulary/)."""
        if os.path.isfile(self.tokenizer_path):
            self.resuming = True
            with open(self.tokenizer_path, encoding="utf-8") as f:
                return keras.saving.deserialize_keras_object(json.load(f))
        directory = stem + "_vocabulary" if self.chief else tempfile.mkdtemp()
        return load_tokenizer(spec, is_bert, texts, directory, parser)

    def start(self, tokenizer):
        """Says where training starts from, and keeps the tokenizer with the backups."""
        backup_dir = self.args.backup_dir
        if self.resuming:
            step = keras_llm.training.TrainingBackup(backup_dir).latest_step()
            if step:
                print(f"resuming: a killed run's backup of step {step} is in {backup_dir}/")
            else:  # killed before (or while) writing its first backup
                print(f"a killed run left its tokenizer in {backup_dir}/ but no complete "
                      "backup: training starts at step 0, with that tokenizer")
        elif self.chief:
            os.makedirs(backup_dir, exist_ok=True)
            write_text(self.tokenizer_path, json.dumps(keras.saving.serialize_keras_object(tokenizer)))

    def fit(self, parser, model, data, steps, **kwargs):
        """`fit_resumable` for exactly `steps` steps in up to ten epochs; prints a resumption."""
        return fit(parser, model, data, self.args, steps, epochs_of(steps, 10), **kwargs)

    def finish(self):
        """Removes the backups and the kept tokenizer: the model is saved."""
        if os.path.isfile(self.tokenizer_path):
            os.remove(self.tokenizer_path)
        keras_llm.training.TrainingBackup(self.args.backup_dir).remove()


def fit(parser, model, data, args, steps, epochs, **kwargs):
    """`keras_llm.training.fit_resumable` for `steps` steps in `epochs` epochs, backed up as the flags say.

    A backup that cannot be resumed (written for a model of another shape)
    is a one-line error naming --backup-dir.
    """
    try:
        resumed_from = keras_llm.training.fit_resumable(
            model, data, epochs=epochs, steps_per_epoch=steps // epochs,
            backup_dir=args.backup_dir, backup_every=args.backup_every,
            verbose=1 if sys.stdout.isatty() else 2, **kwargs,
        )
    except ValueError as error:
        if args.backup_dir not in str(error):  # not about a backup: a bug to show whole
            raise
        parser.error(f"--backup-dir {args.backup_dir!r}: {flags_for(str(error), ['backup_dir'])}")
    if resumed_from:
        print(f"resumed at step {resumed_from} of {steps}")
    return resumed_from


def flags_for(message, names):
    """`message` with the argument names in `names` written as the flags that set them."""
    pattern = r"\b(" + "|".join(map(re.escape, names)) + r")\b"
    return re.sub(pattern, lambda m: "--" + m.group(1).replace("_", "-"), message)
