"""LoRA: low-rank adapters on a model's projections, saved alone and merged for serving.

LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language
Models") freezes a pretrained kernel `W` `[d_in, d_out]` and learns a
low-rank update beside it: the layer computes `x (W + (alpha / rank) A B)`
with `A` `[d_in, rank]` (He-uniform at first) and `B` `[rank, d_out]` (zeros
at first, so a new adapter changes nothing). A target trains `rank * (d_in +
d_out)` parameters instead of `d_in * d_out`.

The adapters are Keras's own (`layer.enable_lora` of `Dense`, `EinsumDense`
and `Embedding`, on float or `int8`/`int4`-quantized layers); this module
adds what Keras leaves to its users, for every keras_llm model:

- `enable_lora` picks the target layers by name, in keras_llm's composite
  blocks too, and freezes everything else but a fine-tuning head;
- `save_lora` / `load_lora` (in `lora_files.py`) write and read the adapters
  (and the head) alone;
- `merge_lora` folds them into the kernels: a plain model, which is what
  `keras_llm.export` serves;
- a `.keras` file of a LoRA model loads back as one (`keras.saving.load_model`,
  no custom objects): the model's config records the adapters, and a
  `_LoraState` saved with the model restores the base kernels and the
  adapters exactly after Keras has loaded its layers. Keras alone cannot:
  it writes a LoRA layer's kernel merged and zeroes both adapters when it
  loads one (then neither can train again: each one's gradient is a product
  with the other), and keras_llm's blocks build their projections
  themselves, so their configs never carry `lora_rank`.
"""

import keras
from keras.src.saving.keras_saveable import KerasSaveable

from keras_llm._checks import check_int, is_finite_real
from keras_llm.compression.quantize import CALIBRATED_MODES

# The LoRA paper's choice (section 7.1): the attention's query and value projections.
DEFAULT_TARGETS = ("query", "value")

# The tasks whose builders put a freshly initialised layer on a pretrained
# encoder: that head must train (keras-hub's heads stay outside the backbone
# its `enable_lora` freezes; PEFT's `modules_to_save` for sequence classification).
_FRESH_HEAD_TASKS = ("classifier", "tagger", "question_answerer")

_FORMAT = "keras_llm.lora"
_FORMAT_VERSION = 1


def _adaptable(layer):
    return isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding))


def _adapters(layer):
    """`(A, B)` of a LoRA-enabled layer (an `Embedding` names them after its table)."""
    if isinstance(layer, keras.layers.Embedding):
        return layer.lora_embeddings_a, layer.lora_embeddings_b
    return layer.lora_kernel_a, layer.lora_kernel_b


def _weighted_layers(model):
    """`{path: layer}` of the layers of `model` (at any depth) that own variables."""
    return {
        layer.path: layer
        for layer in model._flatten_layers(include_self=False)
        if layer._trainable_variables or layer._non_trainable_variables
    }


def _matches(path, target):
    """Whether `target` names the layer at `path` (see `enable_lora`)."""
    name = path.rsplit("/", 1)[-1]
    return path == target or name == target or name.endswith("_" + target) or (
        path.endswith("/" + target)
    )


def _names(argument, value):
    """`value` as a tuple of non-empty strings, else an error naming `argument`."""
    names = (value,) if isinstance(value, str) else value
    try:
        names = tuple(names)
    except TypeError:
        names = None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"`{argument}` must be a layer name or a non-empty list of them. "
            f"Received: {argument}={value!r}"
        )
    return names


def _select(layers, names, argument, what):
    """The paths of `layers` each name in `names` matches; an error for a name matching none."""
    selected = {}
    for target in names:
        found = [path for path in layers if _matches(path, target)]
        if not found:
            shown = ", ".join(sorted({p.rsplit("/", 1)[-1] for p in layers})[:40])
            raise ValueError(
                f"`{argument}` entry {target!r} matches no {what} of the model; its "
                f"{what}s are named: {shown}. Received: {argument}={names!r}"
            )
        selected.update(dict.fromkeys(found))
    return sorted(selected)


def _fresh_head(model):
    """Paths of the layers with weights nearest to the outputs of a task with a fresh head."""
    if getattr(model, "task", None) not in _FRESH_HEAD_TASKS:
        return []
    found, seen, stack = set(), set(), list(model.outputs)
    while stack:
        operation, node_index, _ = stack.pop()._keras_history
        if id(operation) in seen:
            continue
        seen.add(id(operation))
        if getattr(operation, "weights", None):
            found.add(operation.path)  # the head ends here: what feeds it is the encoder
            continue
        stack.extend(operation._inbound_nodes[node_index].input_tensors)
    return sorted(found)


def lora_spec(model):
    """The LoRA settings of `model`, a dict, or None if `enable_lora` was not called on it.

    The dict (JSON-ready, what the model's config and `save_lora`'s file
    record) has `rank`, `alpha`, `targets` (as given), `layers` (the paths of
    the adapted layers) and `trainable_layers` (the paths of the layers left
    whole to train).

    Example:

    ```python
    import keras_llm
    from keras_llm.training import enable_lora, lora_spec

    model = keras_llm.build_gpt("gpt_nano", num_layers=1, vocabulary_size=64)
    assert lora_spec(model) is None
    enable_lora(model, rank=2)
    assert lora_spec(model)["layers"] == [
        "transformer_layer_0/self_attention_query", "transformer_layer_0/self_attention_value"
    ]
    ```
    """
    state = model.__dict__.get("_lora")
    return None if state is None else dict(state.spec)


def _apply(model, spec):
    """Freezes `model` but `spec`'s trainable layers and adds its adapters (already checked)."""
    layers = _weighted_layers(model)
    adapted = [layers[path] for path in spec["layers"]]
    whole = {id(layers[path]) for path in spec["trainable_layers"]}
    model.trainable = True  # every variable trainable again, then freeze all but ours
    for layer in layers.values():
        layer.trainable = id(layer) in whole
    for layer in adapted:
        layer.trainable = True
        if not layer.lora_enabled:  # a plain Dense from a config comes back enabled
            layer.enable_lora(spec["rank"], lora_alpha=spec["alpha"])
        # Keras's build re-enables a config's `lora_rank` with alpha = rank:
        # the recorded alpha is the one trained.
        layer.lora_alpha = spec["alpha"]
        adapters = {id(v) for v in _adapters(layer)}
        for variable in layer.trainable_variables:
            if id(variable) not in adapters:
                variable.trainable = False  # the bias too, as in the paper and PEFT's default
    object.__setattr__(model, "_lora", _LoraState(spec, adapted))
    # A model traced before trains its old variables: retrace on the next fit.
    model.train_function = model.test_function = model.predict_function = None


def enable_lora(model, rank, targets=DEFAULT_TARGETS, *, alpha=None, trainable_layers=None):
    """Adds LoRA adapters to `model`'s target layers and freezes the rest of it.

    Each target layer (a `Dense`, `EinsumDense` or `Embedding`, float or
    quantized with `model.quantize`: QLoRA) gets Keras's adapters
    (`layer.enable_lora`): its output becomes `x (W + (alpha / rank) A B)`
    with `W` frozen, `A` `[d_in, rank]` He-uniform and `B` `[rank, d_out]`
    zeros, so the model computes what it did before until it trains. Its
    bias is frozen too. Every other weight is frozen except the layers of
    `trainable_layers`, by default a fine-tuning head's fresh layers: the
    output `Dense` of a classifier (`build_bert_classifier`), a tagger or a
    question answerer, which nothing pretrained; a causal LM's, seq2seq
    model's or masked LM's output layers are pretrained and stay frozen.

    A name in `targets` (or `trainable_layers`) matches a layer with weights,
    at any depth, when it is the layer's name, the end of its name after an
    underscore, or the end of its path after a slash: the default
    `("query", "value")` matches every attention's query and value
    projections, `self_attention_*` and a seq2seq decoder's
    `cross_attention_*` in `TransformerBlock`, `query`/`value` in a Llama
    block's `GroupedQueryAttention`. `"self_attention_query"` leaves
    cross-attention out; `"transformer_layer_0/self_attention_query"` names
    one block's. `"key"`, `"output"`, `"feedforward_intermediate_dense"`,
    `"feedforward_output_dense"` (or a Llama block's `"gate_dense"`,
    `"up_dense"`, `"down_dense"`) adapt more.

    The freezing is the layers' and variables' `trainable` flags: setting
    `model.trainable = True` afterwards makes every weight train again.
    Enable LoRA, then compile (the builders' models come compiled; a model
    compiled or fitted before is retraced on its next fit, but an optimizer
    that already stepped keeps the variables it was built for: compile
    again), then fit.

    Args:
        model: A built keras_llm model (any `keras.Model` whose layers are
            built), without adapters yet.
        rank: The adapters' rank, a positive int (8 or 16 is usual).
        targets: A layer name or a list of them (see above); each must match
            at least one `Dense`, `EinsumDense` or `Embedding`.
        alpha: The scale numerator, a positive number: the update is
            `(alpha / rank) A B`. Default: `rank` (scale 1, Keras's default).
        trainable_layers: Names (matched as `targets`) of the layers that
            train whole; default: the fresh head of a classifier, tagger or
            question answerer, none for other models. `()` freezes all.

    Returns:
        `model`, changed in place (its `lora_spec` set).

    Raises:
        ValueError: naming the argument: `rank` not a positive int, `alpha`
            not a positive number, a name matching no layer, a layer both
            adapted and trained whole, a model that has adapters already.
            Nothing is changed then.

    Example:

    ```python
    import numpy as np
    import keras_llm
    from keras_llm.training import enable_lora

    model = keras_llm.build_bert_classifier(
        "bert_tiny", num_classes=2, vocabulary_size=100, num_layers=1, hidden_dim=16,
        num_heads=2, intermediate_dim=32,
    )
    inputs = {"token_ids": np.array([[2, 7, 3]], "int32"),
              "segment_ids": np.zeros((1, 3), "int32"), "padding_mask": np.ones((1, 3), "int32")}
    before = np.asarray(model(inputs))
    enable_lora(model, rank=4)
    assert np.allclose(np.asarray(model(inputs)), before)  # B starts at zero
    # query and value: 4 * (16 + 16) each; the head Dense(2): 16 * 2 + 2.
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 2 * 128 + 34
    ```
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    check_int("rank", rank, where="enable_lora")
    if alpha is not None and not (is_finite_real(alpha) and alpha > 0):
        raise ValueError(
            f"enable_lora: `alpha` must be a positive number or None. Received: alpha={alpha!r}"
        )
    targets = _names("targets", targets)
    existing = lora_spec(model)
    if existing is not None:
        raise ValueError(
            f"enable_lora: model {model.name!r} has LoRA adapters already (rank "
            f"{existing['rank']} on {len(existing['layers'])} layers); enable LoRA once, or "
            "start from `merge_lora(model)`, a plain model with the adapters folded in. "
            f"Received: rank={rank!r}, targets={targets!r}"
        )
    layers = _weighted_layers(model)
    enabled = [path for path, layer in layers.items() if getattr(layer, "lora_enabled", False)]
    if enabled:
        raise ValueError(
            f"enable_lora: layers of model {model.name!r} have Keras LoRA adapters already "
            f"({', '.join(enabled)}): merge them first. Received: model={model.name!r}"
        )
    adaptable = {path: layer for path, layer in layers.items() if _adaptable(layer)}
    adapted = _select(adaptable, targets, "targets", "Dense, EinsumDense or Embedding layer")
    calibrated = [p for p in adapted if adaptable[p].quantization_mode in CALIBRATED_MODES]
    if calibrated:
        raise ValueError(
            f"enable_lora: {calibrated[0]} (and {len(calibrated) - 1} more) is "
            f"{adaptable[calibrated[0]].quantization_mode}-quantized, and Keras 3.15 has no LoRA "
            "for GPTQ or AWQ layers: put the adapters on the float model (or an int8/int4 one, "
            f"QLoRA), merge, then calibrate. Received: targets={targets!r}"
        )
    if trainable_layers is None:
        whole = _fresh_head(model)
    elif isinstance(trainable_layers, (list, tuple)) and not trainable_layers:
        whole = []
    else:
        whole = _select(
            layers, _names("trainable_layers", trainable_layers), "trainable_layers",
            "layer with weights",
        )
    both = sorted(set(adapted) & set(whole))
    if both:
        raise ValueError(
            f"enable_lora: {', '.join(both)} would be both adapted (`targets`) and trained whole "
            f"(`trainable_layers`): pick one. Received: targets={targets!r}, "
            f"trainable_layers={trainable_layers!r}"
        )
    _apply(model, {
        "rank": rank, "alpha": rank if alpha is None else alpha, "targets": list(targets),
        "layers": adapted, "trainable_layers": whole,
    })
    return model


class _LoraState(KerasSaveable):
    """What a `.keras` file of a LoRA model holds besides Keras's own: each adapted layer as trained.

    An attribute of the model (`model._lora`): Keras saves and loads it after
    the model's layers (a functional model's layers come first), so on load
    it puts back, over what Keras loaded (the merged kernel, zero adapters),
    each adapted layer's variables as they were: base kernel, bias,
    quantization scale, `A`, `B`.
    """

    def __init__(self, spec, layers):
        self.spec = spec
        self._adapted = layers

    def _obj_type(self):
        return "Operation"  # Keras walks its attributes as an operation's (none to skip)

    def _variables(self):
        return [v for layer in self._adapted for v in layer.variables]

    def save_own_variables(self, store):
        for i, variable in enumerate(self._variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        variables = self._variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"The LoRA state in this file has {len(store.keys())} variables; the model's "
                f"{len(variables)} adapted-layer variables ({', '.join(self.spec['layers'])}) "
                "differ: the file was not written from this model's configuration."
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])


def lora_config(model):
    """What a keras_llm model's config records of its adapters: `lora_spec(model)`.

    keras_llm's models (`TaskModel`, the decoders) put it in their
    `get_config()` under `"lora"` and give it to `restore_lora` when a
    `.keras` file rebuilds them.
    """
    return lora_spec(model)


def restore_lora(model, spec):
    """Adds the adapters a config recorded (`lora_config`) to a freshly built model.

    Called by keras_llm's models as a `.keras` file rebuilds them, before
    Keras loads the weights; `spec` None does nothing.
    """
    if spec is None:
        return
    layers = _weighted_layers(model)
    missing = [p for p in spec["layers"] + spec["trainable_layers"] if p not in layers]
    if missing:
        raise ValueError(
            f"The model's LoRA config names layers it does not have: {', '.join(missing)}. "
            f"Received: lora={spec!r}"
        )
    _apply(model, dict(spec))


def _spec_of(model, function):
    spec = lora_spec(model)
    if spec is None:
        raise ValueError(
            f"{function}: model {getattr(model, 'name', model)!r} has no LoRA adapters: call "
            "`keras_llm.training.enable_lora(model, rank)` first."
        )
    return spec


def _without_lora(config):
    """A serialized model's config with its LoRA settings removed, every layer trainable."""
    if isinstance(config, dict):
        return {
            key: True if key == "trainable" else _without_lora(value)
            for key, value in config.items() if key not in ("lora", "lora_rank", "lora_alpha")
        }
    if isinstance(config, list):
        return [_without_lora(value) for value in config]
    return config


def merge_lora(model):
    """A plain copy of `model` with its adapters folded into the kernels: what is served.

    Each adapted layer's kernel becomes `W + (alpha / rank) A B` (Keras's
    own merge, the one it writes to `.keras` files); on a quantized layer
    (QLoRA) Keras dequantizes the kernel, adds the update and quantizes the
    sum again with new scales, so the copy is quantized as the model was.
    The copy has no adapters (nothing extra per call), every weight
    trainable, the same config, tokenizer and compile settings; `model`
    itself keeps its adapters and can go on training. `keras_llm.export`
    of a LoRA model serves such a copy.

    Args:
        model: A model `enable_lora` was called on.

    Returns:
        A new model of the same class and config, without adapters.

    Raises:
        ValueError: the model has no adapters.

    Example:

    ```python
    import numpy as np
    import keras_llm
    from keras_llm.training import enable_lora, lora_spec, merge_lora

    model = keras_llm.build_gpt("gpt_nano", num_layers=1, vocabulary_size=64)
    enable_lora(model, rank=2)
    b = model.get_layer("transformer_layer_0")._self_attention["value"].lora_kernel_b
    b.assign(np.full(b.shape, 0.1))  # as if trained
    merged = merge_lora(model)
    assert lora_spec(merged) is None and not any("lora" in w.path for w in merged.weights)
    ids = {"token_ids": np.array([[1, 2, 3]], "int32"), "padding_mask": np.ones((1, 3), "int32")}
    assert np.allclose(np.asarray(merged(ids)), np.asarray(model(ids)), atol=1e-5)
    ```
    """
    _spec_of(model, "merge_lora")
    config = _without_lora(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    ours, theirs = _weighted_layers(model), _weighted_layers(copy)
    if set(ours) != set(theirs):
        raise ValueError(
            f"merge_lora: model {model.name!r} did not rebuild from its config with the same "
            f"layers (only in the model: {sorted(set(ours) - set(theirs))}; only in the copy: "
            f"{sorted(set(theirs) - set(ours))})."
        )
    for path, layer in ours.items():
        store = {}
        layer.save_own_variables(store)  # a LoRA layer writes its kernel merged
        theirs[path].load_own_variables(store)
    if model.compiled:
        copy.compile_from_config(model.get_compile_config())
    return copy


__all__ = [
    "DEFAULT_TARGETS", "enable_lora", "lora_spec", "merge_lora",
]
