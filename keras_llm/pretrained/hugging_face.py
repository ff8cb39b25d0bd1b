"""Hugging Face checkpoints in and out: `from_pretrained` and `save_pretrained`."""

import json
import logging
import os
import re

import keras
import numpy as np
from safetensors.numpy import save_file

from keras_llm import tokenizers
from keras_llm._atomic import atomic_output
from keras_llm.pretrained import _bart, _bert, _files, _gpt2

logger = logging.getLogger("keras_llm")

# model_type -> the module that maps that family (see _bert.py, _gpt2.py).
FAMILIES = {family.MODEL_TYPE: family for family in (_bert, _gpt2, _bart)}
TASKS = ("backbone", "masked_lm", "classify", "tag", "qa", "causal_lm", "seq2seq_lm")
_LABELLED = ("classify", "tag")  # tasks whose head has classes
_BUILDER_ARGUMENTS = ("dropout", "precision", "name")
_HEAD_ARGUMENTS = ("num_classes", "label_names") + _BUILDER_ARGUMENTS
# Old BERT files name LayerNorm parameters as TensorFlow did; Hugging Face renames them too.
_LEGACY = ((re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
           (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias"))


def from_pretrained(path, task=None, **head_arguments):
    """Loads a Hugging Face checkpoint into a model of keras_llm's builders.

    `path` is a local Hugging Face model directory: `config.json` and
    `model.safetensors`, or `model.safetensors.index.json` and its shards.
    The model is built by keras_llm's own builders (`build_bert`,
    `build_bert_pretrainer`, `build_bert_classifier`, `build_bert_tagger`,
    `build_bert_question_answerer`, `build_gpt`), comes compiled with
    keras_llm's training defaults, and holds the checkpoint's weights: it
    gives the outputs of `transformers` on the same inputs (tested to 1e-4),
    and trains, saves to `.keras` and exports like any keras_llm model.

    | `config.json` architecture | `task=None` gives | builder |
    |---|---|---|
    | `BertModel` (also MiniLM, sentence-transformers) | `"backbone"` | `build_bert` |
    | `BertForMaskedLM`, `BertForPreTraining` | `"masked_lm"` | `build_bert_pretrainer` |
    | `BertForSequenceClassification` | `"classify"` | `build_bert_classifier` |
    | `BertForTokenClassification` | `"tag"` | `build_bert_tagger` |
    | `BertForQuestionAnswering` | `"qa"` | `build_bert_question_answerer` |
    | `GPT2Model`, `GPT2LMHeadModel` | `"causal_lm"` | `build_gpt` |
    | `BartModel`, `BartForConditionalGeneration` | `"seq2seq_lm"` | `build_seq2seq` |

    BART loads into `build_seq2seq` with learned positions (BART's table
    without its two offset rows), a LayerNorm after each side's embeddings,
    the exact GELU and post-norm blocks; decode it with
    `keras_llm.generation.Generator(model, tokenizer, start_token_id=2)`
    (BART's `decoder_start_token_id`, its `</s>`). `save_pretrained` writes
    a BART-shaped `build_seq2seq` model (learned positions, embedding
    LayerNorm, GELU, post-norm, tied shared vocabulary) back as
    `BartForConditionalGeneration`; other seq2seq settings are refused by
    name.

    A `task` other than the checkpoint's puts a freshly initialized head on
    the pretrained body (the task of the checkpoint itself keeps its head).
    keras_llm's masked LM is BERT's pre-trainer: a `BertForMaskedLM` file has
    no pooler and next-sentence head, so those start fresh (a warning names
    them) and `nsp_logits` mean nothing until trained; `mlm_logits` are the
    checkpoint's. Fresh parts are logged by the `keras_llm` logger, as
    `transformers` does.

    Nothing is loaded that would compute different math: a `config.json`
    setting the builders do not have (another activation, relative
    positions, GPT-2's `scale_attn_by_inverse_layer_idx`, ...), a size that
    does not match a tensor, a tensor keras_llm cannot place or an expected
    one missing are errors that name them. Only tensors `transformers`
    itself skips are skipped: BERT's `embeddings.position_ids` and
    `token_type_ids` buffers and `cls.predictions.decoder.*` (tied copies),
    GPT-2's `attn.bias` / `attn.masked_bias` buffers and `lm_head.weight`
    (tied). Pickled weights (`pytorch_model.bin`, `.pt`, `.ckpt`) are
    refused unopened: unpickling runs code; the error says how to convert.

    Args:
        path: A Hugging Face model directory.
        task: None for the checkpoint's own head, or `"backbone"`,
            `"masked_lm"`, `"classify"`, `"tag"`, `"qa"` (BERT), `"causal_lm"`
            (GPT-2).
        **head_arguments: `num_classes` and `label_names` (a list of
            strings) for `"classify"` and `"tag"`: a fresh head needs one of
            them; the checkpoint's head takes its classes and names from
            `id2label` (`label_names` renames them). `dropout`, `precision`
            and `name` are passed to the builder (the dropout rate defaults
            to the checkpoint's).

    Returns:
        A compiled functional `keras.Model`. A classifier or tagger also has
        `label_names`: a tuple of class names (from `id2label` or the
        argument), or None. Pass them to `keras_llm.export(...,
        label_names=model.label_names)`; `.keras` files do not keep them.

    Example:

    ```python
    import tempfile
    import numpy as np
    import keras_llm

    # A tiny checkpoint, written by keras_llm itself.
    model = keras_llm.build_bert_classifier(
        num_classes=2, vocabulary_size=100, num_layers=1, num_heads=2,
        hidden_dim=16, intermediate_dim=32, max_sequence_length=16,
    )
    path = tempfile.mkdtemp() + "/tiny-bert"
    keras_llm.save_pretrained(model, path, label_names=["negative", "positive"])

    loaded = keras_llm.from_pretrained(path)  # its own head: a classifier
    assert loaded.label_names == ("negative", "positive")
    inputs = {
        "token_ids": np.array([[2, 15, 27, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }
    np.testing.assert_allclose(loaded(inputs), model(inputs), atol=1e-6)

    tagger = keras_llm.from_pretrained(path, task="tag", num_classes=5)  # a fresh head
    assert tagger(inputs).shape == (1, 4, 5)
    ```
    """
    path = os.fspath(path)
    config = _files.read_config(path)
    where = os.path.join(path, _files.CONFIG)
    family = _family(config, where)
    architecture = _architecture(family, config, where)
    checkpoint_task, declared = family.ARCHITECTURES[architecture]
    asked = task
    task = _task(family, task, checkpoint_task)
    unknown = sorted(set(head_arguments) - set(_HEAD_ARGUMENTS))
    if unknown:
        raise TypeError(
            f"from_pretrained: unexpected keyword arguments {', '.join(unknown)}; expected some "
            f"of {', '.join(_HEAD_ARGUMENTS)}."
        )
    arguments = family.arguments(config, where, task)
    own_head = task == checkpoint_task
    num_classes, label_names = _classes(task, own_head, config, where, head_arguments)
    builder, parts, _ = family.TASKS[task]
    table = family.tensors(arguments)
    with _files.open_weights(path) as weights:
        names = _canonical_names(family, weights)
        _check_known(family, table, names, weights, arguments)
        if hasattr(family, "check_tensors"):  # what a family checks beyond shapes
            family.check_tensors(weights.read, names, where)
        loaded = [part for part in parts if _in_file(family, table, names, declared, part)]
        load = [t for t in table if t.part in loaded]
        missing = [t.name for t in load if t.name not in names]
        if missing:
            raise ValueError(
                f"{path}: the checkpoint ({architecture}) lacks tensors that keras_llm needs: "
                f"{_files.listing(missing)}."
            )
        overrides = {k: head_arguments[k] for k in _BUILDER_ARGUMENTS if k in head_arguments}
        if num_classes is not None:
            overrides["num_classes"] = num_classes
        model = builder(**{**arguments, **overrides})
        variables = {v.path: v for v in model.weights}
        shapes = {t.name: [variables[p].shape for p in t.variables] for t in load}
        for tensor in load:  # every shape before any weight: a mismatch loads nothing
            _check_shape(tensor, shapes[tensor.name], names[tensor.name], weights, path)
        for tensor in load:
            arrays = tensor.to_keras(weights.read(names[tensor.name]), shapes[tensor.name])
            for variable_path, array in zip(tensor.variables, arrays):
                variables[variable_path].assign(array)
    fresh = [part for part in parts if part not in loaded]
    if fresh:
        # A head the user asked for starts fresh as expected; one the checkpoint should have had
        # (task=None) is worth a warning.
        logger.log(
            logging.WARNING if asked is None else logging.INFO,
            "%s: %s not in the checkpoint: freshly initialized, train before use",
            path, ", ".join(_layers(table, fresh)),
        )
    unused = [part for part in family.PARTS if part not in loaded
              and _in_file(family, table, names, declared, part)]
    if unused:
        logger.info("%s: the checkpoint's %s not used by this task", path, ", ".join(unused))
    if task in _LABELLED:
        model.label_names = None if label_names is None else tuple(label_names)
    return model


def checkpoint_task(path):
    """The task of a checkpoint's own head: what `from_pretrained(path)` gives, unbuilt.

    Reads only `config.json` (its `model_type` and first `architectures`
    entry), so a caller can decide between the checkpoint's head and a fresh
    one without loading the weights.

    Args:
        path: A Hugging Face model directory.

    Returns:
        One of `"backbone"`, `"masked_lm"`, `"classify"`, `"tag"`, `"qa"`
        (BERT) or `"causal_lm"` (GPT-2).

    Example:

    ```python
    import tempfile
    import keras_llm

    model = keras_llm.build_bert_tagger(
        num_classes=3, vocabulary_size=50, num_layers=1, num_heads=2,
        hidden_dim=8, intermediate_dim=16, max_sequence_length=8,
    )
    path = tempfile.mkdtemp() + "/tagger"
    keras_llm.save_pretrained(model, path)
    assert keras_llm.pretrained.checkpoint_task(path) == "tag"
    ```
    """
    path = os.fspath(path)
    config = _files.read_config(path)
    where = os.path.join(path, _files.CONFIG)
    family = _family(config, where)
    return family.ARCHITECTURES[_architecture(family, config, where)][0]


def _family(config, where):
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(
            f"{where}: model_type={model_type!r} is not supported. keras_llm maps "
            + ", ".join(f"{f.MODEL_TYPE!r} ({f.NAME})" for f in FAMILIES.values())
            + " checkpoints; BERT's includes every checkpoint with its layout, e.g. MiniLM "
            "and sentence-transformers models."
        )
    return FAMILIES[model_type]


def _architecture(family, config, where):
    architectures = config.get("architectures") or [family.BASE_ARCHITECTURE]
    if not isinstance(architectures, list) or architectures[0] not in family.ARCHITECTURES:
        raise ValueError(
            f"{where}: architectures={architectures!r} is not supported. keras_llm maps the "
            f"{family.NAME} architectures {', '.join(family.ARCHITECTURES)}."
        )
    return architectures[0]  # the first, as transformers takes it


def _task(family, task, checkpoint_task):
    if task is None:
        return checkpoint_task
    if task not in family.TASKS:
        raise ValueError(
            f"`task` must be None (the checkpoint's own head) or one of "
            f"{', '.join(repr(t) for t in family.TASKS)} for a {family.NAME} checkpoint. "
            f"Received: task={task!r}"
        )
    return task


def _classes(task, own_head, config, where, head_arguments):
    """(num_classes, label_names) of a classify or tag head, from the arguments and config."""
    num_classes = head_arguments.get("num_classes")
    label_names = head_arguments.get("label_names")
    if task not in _LABELLED:
        given = [k for k in ("num_classes", "label_names") if k in head_arguments]
        if given:
            raise ValueError(
                f"{' and '.join(given)} are for task='classify' or 'tag'. "
                f"Received: task={task!r}, "
                + ", ".join(f"{k}={head_arguments[k]!r}" for k in given)
            )
        return None, None
    if label_names is not None:
        label_names = _check_label_names(label_names)
    if own_head:  # the checkpoint's head: its classes
        names = _config_labels(config, where)
        if num_classes is not None and num_classes != len(names):
            raise ValueError(
                f"num_classes={num_classes!r}, but the checkpoint's {task} head has "
                f"{len(names)} classes ({where}: id2label). Leave num_classes out to keep its "
                "head."
            )
        if label_names is not None and len(label_names) != len(names):
            raise ValueError(
                f"`label_names` must name the checkpoint's {len(names)} classes. "
                f"Received: label_names={list(label_names)!r}"
            )
        return len(names), label_names or names
    if num_classes is None and label_names is None:
        raise ValueError(
            f"A fresh {task} head needs `num_classes` or `label_names`. Received: neither, "
            f"for task={task!r}"
        )
    if num_classes is None:
        return len(label_names), label_names
    if label_names is not None and len(label_names) != num_classes:
        raise ValueError(
            f"`label_names` must have num_classes={num_classes} names. "
            f"Received: label_names={list(label_names)!r}"
        )
    return num_classes, label_names


def _check_label_names(label_names):
    if (
        isinstance(label_names, (str, bytes))
        or not isinstance(label_names, (list, tuple))
        or not all(isinstance(n, str) for n in label_names)
        or len(set(label_names)) != len(label_names)
    ):
        raise ValueError(
            "`label_names` must be a list of distinct strings. "
            f"Received: label_names={label_names!r}"
        )
    return list(label_names)


def _config_labels(config, where):
    """Class names from `id2label`, else transformers' defaults LABEL_0, LABEL_1, ..."""
    id2label = config.get("id2label")
    if id2label is None:
        num_labels = config.get("num_labels", 2)
        return [f"LABEL_{i}" for i in range(num_labels)]
    if not isinstance(id2label, dict) or sorted(id2label, key=str) != sorted(
        str(i) for i in range(len(id2label))
    ):
        raise ValueError(f"{where}: `id2label` must map \"0\", \"1\", ... to names. Received: "
                         f"id2label={id2label!r}")
    return [str(id2label[str(i)]) for i in range(len(id2label))]


def _canonical_names(family, weights):
    """{name without the base model's prefix, LayerNorm names as today: name in the file}."""
    names = {}
    for name in weights.names():
        canonical = name[len(family.PREFIX):] if name.startswith(family.PREFIX) else name
        for old, new in _LEGACY:
            canonical = old.sub(new, canonical)
        if canonical in names:
            first, second = sorted((names[canonical], name))
            raise ValueError(
                f"{weights.file(name)}: {first} and {second} are the same tensor ({canonical}) "
                "twice."
            )
        names[canonical] = name
    return names


def _check_known(family, table, names, weights, arguments):
    known = {t.name for t in table}
    unknown = sorted(n for n in names if n not in known and not family.IGNORED.fullmatch(n))
    if unknown:
        files = sorted({weights.file(names[n]) for n in unknown})
        raise ValueError(
            f"{', '.join(files)}: tensors keras_llm cannot place in a {family.NAME} with "
            f"num_layers={arguments['num_layers']}: {_files.listing([names[n] for n in unknown])}. "
            "Rather than drop weights, the checkpoint is refused (only what transformers "
            f"itself skips is skipped: {family.IGNORED_DOC})."
        )


def _in_file(family, table, names, declared, part):
    """Whether the checkpoint has `part`: its architecture has it, or its tensors name it."""
    if part in declared:
        return True
    return part in family.NAMED_PARTS and any(t.name in names for t in table if t.part == part)


def _check_shape(tensor, shapes, name, weights, path):
    weights.check_float(name)
    expected = tensor.to_hf([np.empty(shape, np.float32) for shape in shapes]).shape
    actual = weights.shape(name)
    if tuple(expected) != actual:
        raise ValueError(
            f"{weights.file(name)}: {name} has shape {list(actual)}, but the sizes in "
            f"{os.path.join(path, _files.CONFIG)} need {list(expected)}."
        )


def _layers(table, parts):
    return sorted({p.split("/")[0] for t in table if t.part in parts for p in t.variables})


def save_pretrained(model, path, tokenizer=None, *, label_names=None, overwrite=False):
    """Writes a model of keras_llm's builders as a Hugging Face checkpoint directory.

    The directory holds `config.json` (`architectures`, `model_type` and
    the sizes), `model.safetensors`, and the tokenizer's files if one is
    given (written by `keras_llm.tokenizers.save_pretrained`).
    `transformers` loads it (`AutoModel...from_pretrained(path)`) and gives
    the same outputs (tested to 1e-4). The directory is written whole or not
    at all (`keras_llm._atomic.atomic_output`): on any error nothing is left.

    | builder | architecture |
    |---|---|
    | `build_bert` | `BertModel` |
    | `build_bert_pretrainer` | `BertForPreTraining` |
    | `build_bert_classifier` | `BertForSequenceClassification` |
    | `build_bert_tagger` | `BertForTokenClassification` |
    | `build_bert_question_answerer` | `BertForQuestionAnswering` |
    | `build_gpt` | `GPT2LMHeadModel` |
    | `build_seq2seq` (BART-shaped: learned positions, embedding LayerNorm, GELU, post-norm, tied) | `BartForConditionalGeneration` |

    The model must be what a builder makes: its sizes are read from its
    variables, the builder is run again with them and every layer's settings
    compared; any other model is refused, naming what differs. Weights are
    written as float32 whatever the model's precision.

    Args:
        model: A model from one of the builders above (or `from_pretrained`).
        path: The directory to write.
        tokenizer: Optional keras_llm tokenizer of the model, written beside
            it.
        label_names: A classifier's or tagger's class names, written as
            `id2label`; default: the model's `label_names` attribute if set
            (`from_pretrained` sets it), else transformers' `LABEL_0`, ...
        overwrite: Whether an existing `path` is replaced (whole: files
            there that are not the checkpoint's go too).

    Returns:
        `path`.

    Example:

    ```python
    import json
    import os
    import tempfile
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    path = keras_llm.save_pretrained(model, tempfile.mkdtemp() + "/tiny-gpt")
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["n_layer"] == 1
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
    family, task, arguments, num_classes = _describe(model)
    builder, parts, architecture = family.TASKS[task]
    _compare_with_builder(model, builder, arguments, num_classes)
    config = family.config(task, arguments, tokenizer)
    if task in _LABELLED:
        names = label_names if label_names is not None else getattr(model, "label_names", None)
        names = [f"LABEL_{i}" for i in range(num_classes)] if names is None else names
        names = _check_label_names(names)
        if len(names) != num_classes:
            raise ValueError(
                f"`label_names` must have the model's {num_classes} names. "
                f"Received: label_names={names!r}"
            )
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}
    elif label_names is not None:
        raise ValueError(
            f"`label_names` is for classifiers and taggers; this model is a {architecture}. "
            f"Received: label_names={label_names!r}"
        )
    size = getattr(tokenizer, "vocabulary_size", None)
    if tokenizer is not None and (size is None or size > arguments["vocabulary_size"]):
        raise ValueError(
            f"`tokenizer` must have at most the model's {arguments['vocabulary_size']} token ids. "
            f"Received: tokenizer={type(tokenizer).__name__} with vocabulary_size={size}"
        )
    # transformers keeps the base model's tensors under a prefix in head models.
    prefix = "" if architecture == family.BASE_ARCHITECTURE else family.PREFIX
    variables = {v.path: v for v in model.weights}
    tensors = {}
    for tensor in family.tensors(arguments):
        if tensor.part in parts:
            arrays = [np.asarray(keras.ops.convert_to_numpy(variables[p]), np.float32)
                      for p in tensor.variables]
            name = (prefix if tensor.part in family.BASE_PARTS else "") + tensor.name
            tensors[name] = np.ascontiguousarray(tensor.to_hf(arrays))
    with atomic_output(path, overwrite=overwrite) as temporary:
        os.mkdir(temporary)
        with open(os.path.join(temporary, _files.CONFIG), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        # transformers refuses safetensors files without format "pt" in the header.
        save_file(tensors, os.path.join(temporary, _files.WEIGHTS), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizers.save_pretrained(tokenizer, temporary)
    return path


def _describe(model):
    for family in FAMILIES.values():
        try:
            described = family.describe(model)
        except KeyError:  # a variable a builder's model has is missing
            described = None
        if described is not None:
            return (family, *described)
    raise ValueError(
        "save_pretrained maps models of keras_llm's builders: "
        + ", ".join(f"{family.TASKS[t][0].__name__}" for family in FAMILIES.values()
                    for t in family.TASKS)
        + f". Received: model={model.name!r}, whose variables are not theirs."
    )


def _settings(layer):
    """A layer's config without what may differ between equal computations."""
    config = layer.get_config()
    for key in ("name", "dtype", "trainable"):
        config.pop(key, None)
    return config


def _compare_with_builder(model, builder, arguments, num_classes):
    """Refuses `model` unless `builder(**arguments)` makes the same variables and layers."""
    extra = {} if num_classes is None else {"num_classes": num_classes}
    call = f"keras_llm.{builder.__name__}(" + ", ".join(
        f"{k}={v!r}" for k, v in {**arguments, **extra}.items()) + ")"
    try:
        reference = builder(**arguments, **extra)
    except ValueError as error:
        raise ValueError(f"`model` is not a model {call} can make: {error}") from None

    def differs(what):
        return ValueError(
            f"`model` differs from what {call} builds, so its Hugging Face equivalent is "
            f"unknown: {what}. Received: model={model.name!r}"
        )

    ours = {v.path: tuple(v.shape) for v in model.weights}
    theirs = {v.path: tuple(v.shape) for v in reference.weights}
    if ours != theirs:
        odd = sorted(set(ours.items()) ^ set(theirs.items()))
        raise differs(f"variables {', '.join(f'{p} {list(s)}' for p, s in odd[:6])}")
    for side, a, b in (("inputs", model.input, reference.input),
                       ("outputs", model.output, reference.output)):
        if _structure(a) != _structure(b):
            raise differs(f"{side} {_structure(a)} (expected {_structure(b)})")
    layers = {layer.name: layer for layer in model.layers}
    for layer in reference.layers:
        if not layer.weights and layer.name not in layers:
            continue  # an operation Keras named itself (`+`, slicing): its name has a counter
        if layer.name not in layers:
            raise differs(f"it has no layer {layer.name!r}")
        if type(layers[layer.name]) is not type(layer):
            raise differs(f"layer {layer.name!r} is a {type(layers[layer.name]).__name__}")
        got, want = _settings(layers[layer.name]), _settings(layer)
        if got != want:
            keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            raise differs(
                f"layer {layer.name!r} has "
                + ", ".join(f"{k}={got.get(k)!r} (expected {want.get(k)!r})" for k in keys)
            )


def _structure(tensors):
    if isinstance(tensors, dict):
        return sorted(tensors)
    return len(tensors) if isinstance(tensors, (list, tuple)) else 1
