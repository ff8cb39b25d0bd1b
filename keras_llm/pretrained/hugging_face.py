"""Hugging Face checkpoints in: `from_pretrained` and `checkpoint_task` (`save_pretrained` is in `saving.py`)."""

import logging
import os
import re

import numpy as np

from keras_llm import tokenizers
from keras_llm.models import registry
from keras_llm.pretrained import _files, _llama
from keras_llm.pretrained import gguf as gguf_file
from keras_llm.pretrained._families import (
    FAMILIES,
    LABELLED,
    architectures,
    check_label_names,
    public_name,
    tasks,
)
from keras_llm.pretrained.saving import save_pretrained  # noqa: F401 (its old home)
from keras_llm.tokenizers.pretrained import has_tokenizer_files

logger = logging.getLogger("keras_llm")

# The `task` names from_pretrained takes (a registry alias, else its name).
TASKS = tuple(public_name(t) for f in FAMILIES.values() for t in tasks(f).values())
_BUILDER_ARGUMENTS = ("dropout", "precision", "name")
_HEAD_ARGUMENTS = ("num_classes", "label_names") + _BUILDER_ARGUMENTS
# Old BERT files name LayerNorm parameters as TensorFlow did; Hugging Face renames them too.
_LEGACY = ((re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
           (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias"))


def from_pretrained(path, task=None, *, keep_quantized=False, **head_arguments):
    """Loads a Hugging Face checkpoint into a model of keras_llm's builders.

    `path` is a local Hugging Face model directory: `config.json` and
    `model.safetensors`, or `model.safetensors.index.json` and its shards.
    The model is built by keras_llm's own builders (`build_bert`,
    `build_bert_pretrainer`, `build_bert_classifier`, `build_bert_tagger`,
    `build_bert_question_answerer`, `build_gpt`, `build_llama`), comes compiled with
    keras_llm's training defaults, and holds the checkpoint's weights: it
    gives the outputs of `transformers` on the same inputs (tested to 1e-4),
    and trains, saves to `.keras` and exports like any keras_llm model.
    When the directory holds a tokenizer keras_llm reads (the BERT family's
    WordPiece; the byte-level BPE of GPT-2, Llama 3, Qwen2 and SmolLM2, with
    its chat template: `keras_llm.tokenizers.from_pretrained`), the model
    carries it (`model.tokenizer`), so exporting, chatting, generating and
    `save_pretrained` need no tokenizer argument; one that cannot be read
    or does not fit the model is left out with a warning.

    A path ending in `.gguf` is a llama.cpp file of the `llama` architecture
    (`keras_llm.pretrained.gguf.read_gguf`: its metadata gives the config,
    its tensors are dequantized to float32): it loads into `build_llama`
    as task `"causal_lm"`, carrying the tokenizer and chat template of its
    metadata (`read_gguf_tokenizer`). With `keep_quantized=True` the
    file's Q4_0 and Q4_1 projections are not dequantized: each
    `OffsetDense` projection of the attention and the feed-forward network
    holds the file's 4-bit blocks as they are (Keras's int4 kernel in
    blocks of 32, a float16 scale, and the Q4_1 minimum as a float
    offset), so the model computes the file's weights with no second
    rounding (what `keras_llm.quantize(model, "int4")` of the float32 model
    cannot do: its integer zero points do not hold Q4_1's minimums) at an
    eighth of float32's memory; other types (the token table, F32 norms,
    Q8_0 and K-quant tensors) are read as float32. The model is then an int4
    model like `keras_llm.quantize`'s: it saves, loads and exports the same
    way, and does not fine-tune with LoRA.

    | `config.json` architecture | `task=None` gives | builder |
    |---|---|---|
    | `BertModel` (also MiniLM, sentence-transformers) | `"backbone"` | `build_bert` |
    | `BertForMaskedLM`, `BertForPreTraining` | `"masked_lm"` | `build_bert_pretrainer` |
    | `BertForSequenceClassification` | `"classify"` | `build_bert_classifier` |
    | `BertForTokenClassification` | `"tag"` | `build_bert_tagger` |
    | `BertForQuestionAnswering` | `"qa"` | `build_bert_question_answerer` |
    | `GPT2Model`, `GPT2LMHeadModel` | `"causal_lm"` | `build_gpt` |
    | `LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM` | `"causal_lm"` | `build_llama` |
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
        path: A Hugging Face model directory, or a `.gguf` file.
        task: None for the checkpoint's own head, or `"backbone"`,
            `"masked_lm"`, `"classify"`, `"tag"`, `"qa"` (BERT), `"causal_lm"`
            (GPT-2), `"seq2seq_lm"` (BART); the registry's names
            (`"encoder"`, `"classifier"`, ...) work too. Which architecture is
            which task is `keras_llm.models.registry`'s `hugging_face`.
        **head_arguments: `num_classes` and `label_names` (a list of
            strings) for `"classify"` and `"tag"`: a fresh head needs one of
            them; the checkpoint's head takes its classes and names from
            `id2label` (`label_names` renames them). `dropout`, `precision`
            and `name` are passed to the builder (the dropout rate defaults
            to the checkpoint's).
        keep_quantized: For a `.gguf` file only: keep its Q4_0/Q4_1
            projections as 4-bit blocks instead of dequantizing them
            (above).

    Returns:
        A compiled functional `keras.Model` that carries the checkpoint's
        tokenizer if it has one (`model.tokenizer`). A classifier or tagger also has
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
    if not isinstance(keep_quantized, bool):
        raise ValueError(f"`keep_quantized` must be a bool. Received: keep_quantized={keep_quantized!r}")
    if path.endswith(".gguf"):  # llama.cpp's single file: config, weights and tokenizer
        return _from_gguf(path, task, head_arguments, keep_quantized)
    if keep_quantized:
        raise ValueError(
            "`keep_quantized=True` keeps a GGUF file's 4-bit blocks; a Hugging Face directory's "
            f"weights are float (quantize them with keras_llm.quantize). Received: path={path!r}"
        )
    config = _files.read_config(path)
    where = os.path.join(path, _files.CONFIG)
    if config.get("model_type") in _llama.MODEL_TYPES:  # Llama, Mistral, Qwen2: build_llama
        return _from_llama_directory(path, config, where, task, head_arguments)
    family = _family(config, where)
    architecture = _architecture(family, config, where)
    checkpoint_entry, declared = architectures(family)[architecture], family.FILE_PARTS[architecture]
    asked = task
    entry = _task(family, task, checkpoint_entry)  # the registry's Task
    task = public_name(entry)
    unknown = sorted(set(head_arguments) - set(_HEAD_ARGUMENTS))
    if unknown:
        raise TypeError(
            f"from_pretrained: unexpected keyword arguments {', '.join(unknown)}; expected some "
            f"of {', '.join(_HEAD_ARGUMENTS)}."
        )
    arguments = family.arguments(config, where, entry.name)
    own_head = entry is checkpoint_entry
    num_classes, label_names = _classes(entry, own_head, config, where, head_arguments)
    builder, parts = entry.resolve("builder"), family.TASK_PARTS[entry.name]
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
    if entry.name in LABELLED:
        model.label_names = None if label_names is None else tuple(label_names)
    _attach_tokenizer(model, path)
    return model


def _from_llama_directory(path, config, where, task, head_arguments):
    """A `LlamaForCausalLM`, `MistralForCausalLM` or `Qwen2ForCausalLM` directory, into `build_llama`."""
    _llama_architecture(config, where)
    if task not in (None, "causal_lm") or head_arguments:
        raise ValueError(
            f"{where}: a {config['model_type']} checkpoint loads as task 'causal_lm' only, "
            f"with no head arguments. Received: task={task!r}, "
            f"arguments={sorted(head_arguments)!r}"
        )
    with _files.open_weights(path) as weights:
        tensors = {name: weights.read(name) for name in weights.names()}
    model = _llama.model_from_hf(config, tensors, where)
    _attach_tokenizer(model, path)
    return model


def _llama_architecture(config, where):
    """The checkpoint's architecture, one of those the registry declares for `build_llama`."""
    listed = config.get("architectures") or [_llama.ARCHITECTURES[config["model_type"]]]
    known = architectures(_llama)  # {architecture: registry Task}
    if not isinstance(listed, list) or listed[0] not in known:
        raise ValueError(
            f"{where}: architectures={listed!r} is not supported. keras_llm maps the "
            f"{_llama.NAME}-family architectures {', '.join(known)} (keras_llm.build_llama)."
        )
    return listed[0]


def _from_gguf(path, task, head_arguments, keep_quantized=False):
    """A Llama-architecture GGUF file, into `build_llama`, with the tokenizer its metadata describes."""
    if task not in (None, "causal_lm") or head_arguments:
        raise ValueError(
            f"{path}: a GGUF checkpoint loads as task 'causal_lm' only, with no head arguments. "
            f"Received: task={task!r}, arguments={sorted(head_arguments)!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` must be a GGUF file. Received: path={path!r} "
                                f"({'a directory' if os.path.isdir(path) else 'does not exist'})")
    reader = gguf_file._open(path)  # parsed once for the weights and the tokenizer
    config, tensors = gguf_file._config_and_tensors(reader, path)
    if keep_quantized:
        model = gguf_file.model_with_kept_blocks(config, tensors, path)
    else:
        model = _llama.model_from_hf(config, tensors, path)
    try:
        tokenizer = gguf_file._tokenizer_of(reader, path)
        if tokenizer is None:
            logger.warning("%s: the file holds no tokenizer; pass one by hand to generate text", path)
        else:
            model.tokenizer = tokenizer
    except ValueError as error:
        # The weights load all the same: a tokenizer can still be given by hand.
        logger.warning("%s: the file's tokenizer is not attached to the model: %s", path, error)
    return model


def _attach_tokenizer(model, path):
    """Gives `model` the tokenizer of the checkpoint directory, when it has one that fits."""
    if not has_tokenizer_files(path):
        return
    try:
        model.tokenizer = tokenizers.from_pretrained(path)
    except (ValueError, FileNotFoundError) as error:
        # The weights load all the same: a tokenizer can still be given by hand.
        logger.warning("%s: the checkpoint's tokenizer is not attached to the model: %s",
                       path, error)


def checkpoint_task(path):
    """The task of a checkpoint's own head: what `from_pretrained(path)` gives, unbuilt.

    Reads only `config.json` (its `model_type` and first `architectures`
    entry), so a caller can decide between the checkpoint's head and a fresh
    one without loading the weights.

    Args:
        path: A Hugging Face model directory.

    Returns:
        One of `"backbone"`, `"masked_lm"`, `"classify"`, `"tag"`, `"qa"`
        (BERT) or `"causal_lm"` (GPT-2, Llama, Mistral, Qwen2).

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
    if path.endswith(".gguf"):  # a GGUF file of the llama architecture: a causal LM
        return "causal_lm"
    config = _files.read_config(path)
    where = os.path.join(path, _files.CONFIG)
    if config.get("model_type") in _llama.MODEL_TYPES:
        return public_name(architectures(_llama)[_llama_architecture(config, where)])
    family = _family(config, where)
    return public_name(architectures(family)[_architecture(family, config, where)])


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
    listed = config.get("architectures") or [family.BASE_ARCHITECTURE]
    if not isinstance(listed, list) or listed[0] not in family.FILE_PARTS:
        raise ValueError(
            f"{where}: architectures={listed!r} is not supported. keras_llm maps the "
            f"{family.NAME} architectures {', '.join(family.FILE_PARTS)}."
        )
    return listed[0]  # the first, as transformers takes it


def _task(family, task, checkpoint_entry):
    """The registry `Task` of the `task` argument: an alias ("classify") or a registry name."""
    if task is None:
        return checkpoint_entry
    known = tasks(family)
    entry = known.get(task) if isinstance(task, str) else None
    if entry is None and isinstance(task, str) and task in registry.TASKS:
        entry = registry.TASKS[task] if task in family.TASK_PARTS else None
    if entry is None:
        raise ValueError(
            f"`task` must be None (the checkpoint's own head) or one of "
            f"{', '.join(repr(t) for t in known)} for a {family.NAME} checkpoint. "
            f"Received: task={task!r}"
        )
    return entry


def _classes(entry, own_head, config, where, head_arguments):
    """(num_classes, label_names) of a classify or tag head, from the arguments and config."""
    task = public_name(entry)
    num_classes = head_arguments.get("num_classes")
    label_names = head_arguments.get("label_names")
    if entry.name not in LABELLED:
        given = [k for k in ("num_classes", "label_names") if k in head_arguments]
        if given:
            raise ValueError(
                f"{' and '.join(given)} are for task='classify' or 'tag'. "
                f"Received: task={task!r}, "
                + ", ".join(f"{k}={head_arguments[k]!r}" for k in given)
            )
        return None, None
    if label_names is not None:
        label_names = check_label_names(label_names)
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
