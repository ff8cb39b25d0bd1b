"""Hugging Face checkpoints out: `save_pretrained` writes what a model says it is.

The model's task (`model.task`) and class give its builder (the registry's
`get_builder`), which gives the architecture written and the family that
maps it; its builder configuration (`model.builder_config`) gives the
sizes. No model is recognized by its
variable or layer names: the model is then rebuilt from its configuration
and compared, layer by layer, so that only what the builder makes is written.
"""

import json
import logging
import os

import keras
import numpy as np
from safetensors.numpy import save_file

from keras_llm import tokenizers
from keras_llm._atomic import atomic_output
from keras_llm.models import registry
from keras_llm.pretrained import _files
from keras_llm.pretrained._families import LABELLED, check_label_names, family_of
from keras_llm.tokenizers.pretrained import can_save

logger = logging.getLogger("keras_llm")


def save_pretrained(model, path, tokenizer=None, *, label_names=None, overwrite=False):
    """Writes a model of keras_llm's builders as a Hugging Face checkpoint directory.

    The directory holds `config.json` (`architectures`, `model_type` and
    the sizes), `model.safetensors`, and the tokenizer's files (written by
    `keras_llm.tokenizers.save_pretrained`): the one given, else the one
    the model carries (`model.tokenizer`) when it is a WordPiece or
    byte-level BPE tokenizer.
    `transformers` loads it (`AutoModel...from_pretrained(path)`) and gives
    the same outputs (tested to 1e-4). The directory is written whole or not
    at all (`keras_llm._atomic.atomic_output`): on any error nothing is left.

    | builder (`model.task`) | architecture |
    |---|---|
    | `build_bert` | `BertModel` |
    | `build_bert_pretrainer` | `BertForPreTraining` |
    | `build_bert_classifier` | `BertForSequenceClassification` |
    | `build_bert_tagger` | `BertForTokenClassification` |
    | `build_bert_question_answerer` | `BertForQuestionAnswering` |
    | `build_gpt` | `GPT2LMHeadModel` |
    | `build_llama` | `LlamaForCausalLM`; `Qwen2ForCausalLM` with q/k/v biases; `MistralForCausalLM` with a window or `hidden_dim % num_heads != 0` |
    | `build_seq2seq` (BART-shaped: learned positions, embedding LayerNorm, GELU, post-norm, tied) | `BartForConditionalGeneration` |

    The model says what it is: its task (`model.task`) and class give
    its builder and so the architecture (`keras_llm.models.registry`), its
    builder configuration (`model.builder_config`) the sizes. A head
    built on an encoder (`build_bert_classifier(encoder=...)`)
    is written like one built from a preset. The builder is run again with
    that configuration and every layer's settings compared: any other model
    is refused, naming what differs. Weights are written as float32 whatever
    the model's precision.

    Args:
        model: A model from one of the builders above (or `from_pretrained`).
        path: The directory to write.
        tokenizer: A keras_llm tokenizer of the model, written beside it;
            default: `model.tokenizer` (skipped if Hugging Face has no such
            tokenizer, e.g. a `ByteTokenizer`).
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
    task, builder, family = _task_builder_and_family(model)
    arguments = dict(family.save_arguments(model))
    num_classes = arguments.pop("num_classes", None)
    _compare_with_builder(model, builder.resolve("function"), arguments, num_classes)
    # One builder may make several architectures' models (build_llama: Llama,
    # Mistral, Qwen2): its family picks by the configuration, refusing by name
    # what none of them writes.
    picked = getattr(family, "architecture", None)
    architecture = picked(arguments) if picked else builder.hugging_face[0]
    assert architecture in builder.hugging_face, (architecture, builder)
    parts = family.TASK_PARTS[task.name]
    if tokenizer is None:  # the one the model carries, where it is one Hugging Face reads
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is not None and not can_save(tokenizer):
            logger.info("save_pretrained: the model's %s is not written (Hugging Face has no "
                        "such tokenizer)", type(tokenizer).__name__)
            tokenizer = None
    config = family.config(architecture, arguments, tokenizer)
    if task.name in LABELLED:
        names = label_names if label_names is not None else getattr(model, "label_names", None)
        names = [f"LABEL_{i}" for i in range(num_classes)] if names is None else names
        names = check_label_names(names)
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


def _task_builder_and_family(model):
    """The registry `Task` and `Builder` of the model, and the checkpoint family that writes it."""
    try:
        task, builder = registry.get_task(model), registry.get_builder(model)
    except ValueError:  # no task, or not of its builders' classes
        task = builder = None
    family = None if builder is None else family_of(builder)
    if family is None:
        builders = [b.name for t in registry.TASKS.values() for b in t.builders
                    if family_of(b) is not None]
        raise ValueError(
            "save_pretrained maps models of keras_llm's builders, which say what they are "
            f"(`model.task` and their class): {', '.join(builders)}. Received: "
            f"model={model.name!r} of class {type(model).__name__} with "
            f"task={getattr(model, 'task', None)!r}"
        )
    return task, builder, family


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
