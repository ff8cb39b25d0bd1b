"""`keras-llm finetune`: a Hugging Face checkpoint fine-tuned to classify, tag or answer questions.

`--task` is a task's alias in `keras_llm.models.registry` (classify, tag,
qa); what the command does is its --help (`keras_llm_cli.COMMANDS`).
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_llm
import keras_llm_cli
from keras_llm import evaluation
from keras_llm.cli import _common
from keras_llm.cli._files import save_and_export
from keras_llm.data import read_qa_examples
from keras_llm.models import registry

# `keras-llm finetune --task` -> its registry entry (from_pretrained's task, compile defaults).
FINETUNE_TASKS = {alias: registry.get_task(alias) for alias in keras_llm_cli.FINETUNE_TASK_NAMES}


def run(args, parser):
    """Fine-tunes (resumably), scores --eval, saves with the tokenizer, exports and asks the export."""
    _common.positive(parser, args, ["epochs", "batch_size", "doc_stride", "max_question_length",
                                    "backup_every", "max_steps", "lora"])
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive; received {args.learning_rate}")
    _common.positive(parser, args, ["sequence_length"])
    if not os.path.isdir(args.checkpoint):
        parser.error(f"--checkpoint: no such directory {args.checkpoint!r}")
    name = os.path.basename(os.path.normpath(args.checkpoint))
    stem = _common.output_stem(parser, args, f"{name}-{args.task}.keras")

    keras.utils.set_random_seed(args.seed)
    task = FINETUNE_TASKS[args.task]
    try:
        checkpoint_tokenizer = keras_llm.tokenizers.from_pretrained(args.checkpoint)
    except (OSError, ValueError) as error:
        parser.error(f"--checkpoint: {error}")
    tokenizer = checkpoint_tokenizer
    if type(tokenizer) is keras_llm.tokenizers.CoreOpsWordPieceTokenizer:
        # The same ids at tensorflow-text's speed for the pipelines; the model
        # carries (and the export serves) the core-ops one.
        tokenizer = keras_llm.tokenizers.WordPieceTokenizer.from_config(tokenizer.get_config())
    train_data = _read(args, parser, args.train, args.split, "--train")
    eval_data = _read(args, parser, args.eval, args.eval_split, "--eval") if args.eval else None
    model, label_names, num_classes = _model(args, parser, task, train_data)
    context = model.max_sequence_length
    if args.sequence_length is None:
        args.sequence_length = min(384 if args.task == "qa" else 128, context)
    elif args.sequence_length > context:
        parser.error(
            f"--sequence-length {args.sequence_length} is longer than the checkpoint's "
            f"{context} positions (max_position_embeddings)"
        )
    model.tokenizer = checkpoint_tokenizer
    print(f"checkpoint: {args.checkpoint}, {model.count_params():,} parameters, task {args.task}"
          + (f", labels {', '.join(label_names)}" if label_names else ""))
    if getattr(args, "lora", None) is not None:
        targets = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
        try:  # query/value adapters by default, the head whole
            keras_llm.training.enable_lora(model, args.lora, targets=targets)
        except ValueError as error:  # a rank or a target the model does not have
            parser.error(f"--lora {args.lora} --lora-targets {args.lora_targets}: {error}")
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        print(f"LoRA rank {args.lora}: {trainable:,} trainable parameters "
              f"({len(keras_llm.training.lora_spec(model)['layers'])} adapted projections and the head)")

    try:
        batches = _batches(args, train_data, tokenizer, label_names, num_classes, training=False)
        steps_per_epoch = sum(1 for _ in batches)  # also checks every label before training
    except (ValueError, TypeError) as error:  # settings or examples the pipeline refuses
        parser.error(f"--train: {error}")
    except tf.errors.InvalidArgumentError as error:  # a label or an answer checked in the pipeline
        parser.error(f"--train: {_common.graph_error_message(error)}")
    total = steps_per_epoch * args.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    keras_llm.compile_model(  # the task's defaults (the registry's, for model.task)
        model, learning_rate=args.learning_rate, total_steps=total,
        warmup_steps=max(1, total // 10),
    )
    print(f"training: {total} steps of {args.batch_size} {'windows' if args.task == 'qa' else 'examples'}"
          f" ({steps_per_epoch} per pass over --train)")
    start = time.time()
    batches = _batches(args, train_data, tokenizer, label_names, num_classes, training=True)
    _common.fit(parser, model, batches, args, total, _common.epochs_of(total, args.epochs))
    print(f"trained in {time.time() - start:.0f} s")
    if eval_data is not None:
        scores = evaluate(args, model, tokenizer, eval_data, label_names, num_classes)
        print("eval: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    qa = dict(doc_stride=args.doc_stride, max_question_length=args.max_question_length)
    version = save_and_export(args, stem, model, checkpoint_tokenizer, label_names=label_names,
                              **(qa if args.task == "qa" else {}))
    if getattr(args, "lora", None) is not None:
        print(f"adapters alone: {keras_llm.training.save_lora(model, stem + '.lora.h5')} "
              "(keras_llm.training.load_lora into the checkpoint's model)")
    print("the export answers:\n" + _served_answer(args, version, eval_data or train_data))
    keras_llm.training.TrainingBackup(args.backup_dir).remove()
    return 0


def _read(args, parser, source, split, flag):
    """`(text, label)` or `(words, tags)` pairs (classify, tag), or QA examples."""
    try:
        if args.task == "qa":
            return read_qa_examples(source, split, data_dir=args.data_dir, download=args.download)
        default_text, default_label = (None, "label") if args.task == "classify" else ("tokens", "tags")
        return keras_llm.data.load_texts(
            source, text_field=args.text_field or default_text,
            label_field=args.label_field or default_label, split=split, data_dir=args.data_dir,
            download=args.download,
        )
    except (OSError, ValueError) as error:
        parser.error(f"{flag}: {error}")


def _model(args, parser, task, train_data):
    """(model, label names or None, number of numbered classes or None) from --checkpoint.

    The checkpoint's own head keeps its classes; a fresh one takes them from
    --label-names or from the training labels.
    """
    head = {}
    if args.task != "qa":
        try:
            own = registry.get_task(keras_llm.pretrained.checkpoint_task(args.checkpoint))
        except (OSError, ValueError) as error:
            parser.error(f"--checkpoint: {error}")
        own_head = own.name == task.name
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
        model = keras_llm.from_pretrained(args.checkpoint, task=task.alias, **head)
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"--checkpoint: {error}")
    label_names = list(getattr(model, "label_names", None) or []) or None
    return model, label_names, None if label_names else head.get("num_classes")


def _label_names_of(args, own_head, data):
    """--label-names; else None where the checkpoint's own head names its classes (id2label);
    else the string labels found in the data, sorted (tags: O first); None for int labels."""
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


def _batches(args, data, tokenizer, label_names, num_classes, training):
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


def evaluate(args, model, tokenizer, data, label_names, num_classes):
    """The task's score of `model` on `data` (--eval): {name: value} for printing."""
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
    batches = _batches(args, data, tokenizer, label_names, num_classes, training=False)
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
