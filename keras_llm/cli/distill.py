"""`keras-llm distill`: a fresh BERT preset classifier trained on a classifier teacher's logits.

The teacher is a `.keras` classifier (as `keras-llm finetune` saves it) or a
Hugging Face directory with a classification head; the student is built from
`--student-preset` with the teacher's tokenizer and classes, trained with
`keras_llm.training.distill`, scored on --eval, saved with the tokenizer and
exported for TF Serving, as `finetune` does (whose file reading, batching,
scoring and export check this command reuses). What the command does is its
--help (`keras_llm_cli.COMMANDS`).
"""

import math
import os
import time

import keras
import tensorflow as tf

import keras_llm
from keras_llm.cli import _common, finetune
from keras_llm.cli._files import load_trained, save_and_export
from keras_llm.models import registry


def run(args, parser):
    """Distills --teacher into --student-preset, scores --eval, saves, exports and asks the export."""
    _common.positive(parser, args, ["epochs", "batch_size", "max_steps", "sequence_length"])
    for flag, value in (("temperature", args.temperature), ("learning_rate", args.learning_rate)):
        if value is not None and not (math.isfinite(value) and value > 0):
            parser.error(f"--{flag.replace('_', '-')} must be positive; received {value}")
    if not (math.isfinite(args.alpha) and 0.0 <= args.alpha <= 1.0):
        parser.error(f"--alpha must be in [0, 1] (the weight of the teacher's term); "
                     f"received {args.alpha}")
    args.backup_dir = None  # distill keeps no backups (not resumable): output_stem names one unused
    stem = _common.output_stem(parser, args, f"{args.student_preset}-distilled.keras")
    # finetune's readers, pipelines, scores and export check, for its classify task.
    args.task = "classify"

    keras.utils.set_random_seed(args.seed)
    teacher, checkpoint_tokenizer = _teacher(args, parser)
    tokenizer = checkpoint_tokenizer
    if type(tokenizer) is keras_llm.tokenizers.CoreOpsWordPieceTokenizer:
        # The same ids at tensorflow-text's speed for the pipelines; the student
        # carries (and the export serves) the core-ops one, as finetune does.
        tokenizer = keras_llm.tokenizers.WordPieceTokenizer.from_config(tokenizer.get_config())
    train_data = finetune._read(args, parser, args.train, args.split, "--train")
    eval_data = finetune._read(args, parser, args.eval, args.eval_split, "--eval") if args.eval else None
    label_names, num_classes = _classes(args, parser, teacher, train_data)
    context = teacher.max_sequence_length
    if args.sequence_length is None:
        args.sequence_length = min(128, context)
    elif args.sequence_length > context:
        parser.error(f"--sequence-length {args.sequence_length} is longer than the teacher's "
                     f"{context} positions")
    student = keras_llm.build_bert_classifier(
        args.student_preset, num_classes=num_classes, vocabulary_size=teacher.vocabulary_size,
        max_sequence_length=context, tokenizer=checkpoint_tokenizer,
    )
    print(f"teacher: {args.teacher}, {teacher.count_params():,} parameters; student: "
          f"{args.student_preset}, {student.count_params():,} parameters; "
          + (f"labels {', '.join(label_names)}" if label_names else f"{num_classes} classes"))

    numbered = None if label_names else num_classes
    try:
        batches = finetune._batches(args, train_data, tokenizer, label_names, numbered, training=False)
        steps_per_epoch = sum(1 for _ in batches)  # also checks every label before training
    except (ValueError, TypeError) as error:
        parser.error(f"--train: {error}")
    except tf.errors.InvalidArgumentError as error:  # a label checked in the pipeline
        parser.error(f"--train: {_common.graph_error_message(error)}")
    total = steps_per_epoch * args.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    epochs = _common.epochs_of(total, args.epochs)
    learning_rate = args.learning_rate or _common.SMALL_PRESET_LEARNING_RATE.get(args.student_preset)
    print(f"distilling: {total} steps of {args.batch_size} examples ({steps_per_epoch} per pass "
          f"over --train), temperature {args.temperature}, alpha {args.alpha}"
          + (" (labels only: no teacher)" if args.alpha == 0 else ""))
    start = time.time()
    batches = finetune._batches(args, train_data, tokenizer, label_names, numbered, training=True)
    keras_llm.training.distill(
        teacher, student, batches, temperature=args.temperature, alpha=args.alpha,
        epochs=epochs, steps_per_epoch=total // epochs, learning_rate=learning_rate,
        verbose=2,
    )
    print(f"trained in {time.time() - start:.0f} s")
    if eval_data is not None:
        for name, model in (("teacher", teacher), ("student", student)):
            scores = finetune.evaluate(args, model, tokenizer, eval_data, label_names, numbered)
            print(f"eval, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    version = save_and_export(args, stem, student, checkpoint_tokenizer, label_names=label_names)
    print("the export answers:\n" + finetune._served_answer(args, version, eval_data or train_data))
    return 0


def _teacher(args, parser):
    """(classifier, tokenizer) of --teacher: a .keras file or a Hugging Face directory."""
    path = args.teacher
    if os.path.isdir(path):
        try:
            task = registry.get_task(keras_llm.pretrained.checkpoint_task(path))
            if task.name != "classifier":
                parser.error(
                    f"--teacher {path!r} is {task.description}, not a classifier: fine-tune it "
                    "first (keras-llm finetune --task classify)"
                )
            model = keras_llm.from_pretrained(path, task="classify")
            tokenizer = keras_llm.tokenizers.from_pretrained(path)
        except (OSError, ValueError, TypeError) as error:
            parser.error(f"--teacher: {error}")
    elif path.endswith(".keras"):
        model, tokenizer = load_trained(path, parser)
    else:
        parser.error(f"--teacher: no such directory or .keras file {path!r}")
    task = registry.get_task(model)
    if task.name != "classifier":
        parser.error(f"--teacher {path!r} is {task.description}, not a classifier")
    return model, tokenizer


def _classes(args, parser, teacher, train_data):
    """(label names or None, number of classes): the teacher's, named by --label-names,
    the teacher's own names (a Hugging Face head's id2label) or --train's string labels."""
    num_classes = teacher.outputs[0].shape[-1]
    own = list(getattr(teacher, "label_names", None) or []) or None
    label_names = finetune._label_names_of(args, own is not None and not args.label_names, train_data)
    label_names = label_names or own
    if label_names is not None and len(label_names) != num_classes:
        source = ("--label-names" if args.label_names else "the string labels of --train")
        parser.error(
            f"the teacher has {num_classes} classes; {source} name {len(label_names)}: "
            f"{', '.join(label_names)}"
        )
    return label_names, num_classes
