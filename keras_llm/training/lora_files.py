"""LoRA adapter files: `save_lora` writes a model's adapters (and the head it trains) alone,
`load_lora` reads them back into the same architecture, checked before anything changes.

The adapters themselves (`enable_lora`, `lora_spec`, `merge_lora`) are in
`keras_llm/training/lora.py`.
"""

import json
import os

import h5py
import keras
import numpy as np

from keras_llm._atomic import atomic_output
from keras_llm.training.lora import (
    _FORMAT,
    _FORMAT_VERSION,
    _adaptable,
    _adapters,
    _apply,
    _spec_of,
    _weighted_layers,
    lora_spec,
)


def save_lora(model, path):
    """Writes `model`'s adapters, and the layers it trains whole, alone to an HDF5 file.

    The file holds, per adapted layer (by its path in the model), `A` and
    `B` as float32, every variable of the `trainable_layers` (a classifier's
    head), and the LoRA settings (`lora_spec`): kilobytes to a few
    megabytes, against the whole model's hundreds. It is written whole or
    not at all (`keras_llm._atomic`). `load_lora` reads it into the same
    architecture, e.g. the pretrained model loaded again. keras-hub names
    such files `*.lora.h5`; any name will do.

    Args:
        model: A model `enable_lora` was called on.
        path: The file to write (replaced if it exists).

    Returns:
        `path`.

    Raises:
        ValueError: the model has no adapters; nothing is written.

    Example:

    ```python
    import os
    import tempfile
    import keras_llm
    from keras_llm.training import enable_lora, load_lora, save_lora

    model = keras_llm.build_gpt("gpt_nano", num_layers=1, vocabulary_size=64)
    enable_lora(model, rank=2)
    path = save_lora(model, os.path.join(tempfile.mkdtemp(), "gpt.lora.h5"))
    assert os.path.getsize(path) < 50_000
    other = keras_llm.build_gpt("gpt_nano", num_layers=1, vocabulary_size=64)
    load_lora(other, path)  # enables LoRA as recorded, then loads the adapters
    assert keras_llm.training.lora_spec(other) == keras_llm.training.lora_spec(model)
    ```
    """
    spec = _spec_of(model, "save_lora")
    layers = _weighted_layers(model)
    with atomic_output(path) as temporary:
        with h5py.File(temporary, "w") as f:
            f.attrs["format"] = _FORMAT
            f.attrs["format_version"] = _FORMAT_VERSION
            f.attrs["spec"] = json.dumps(spec)
            for layer_path in spec["layers"]:
                a, b = _adapters(layers[layer_path])
                f[f"adapters/{layer_path}/a"] = np.asarray(a.numpy(), "float32")
                f[f"adapters/{layer_path}/b"] = np.asarray(b.numpy(), "float32")
            for layer_path in spec["trainable_layers"]:
                for i, variable in enumerate(layers[layer_path].variables):
                    f[f"trainable/{layer_path}/{i}"] = variable.numpy()
    return path


def _read(path):
    """`(spec, {key: array})` of a `save_lora` file; a clear error naming it if it is not one."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != _FORMAT:
                raise ValueError("it has no keras_llm LoRA header")
            spec = json.loads(f.attrs["spec"])
            arrays = {}
            f.visititems(
                lambda key, item: arrays.__setitem__(key, item[()])
                if isinstance(item, h5py.Dataset) else None
            )
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(
            f"load_lora: {path} is not a LoRA file written by save_lora ({error}). "
            f"Received: path={path!r}"
        ) from None
    return spec, arrays


def _expected_adapter_shapes(layer, rank):
    """`(A shape, B shape)` that `layer.enable_lora(rank)` makes (or made)."""
    if getattr(layer, "lora_enabled", False):
        return tuple(tuple(v.shape) for v in _adapters(layer))
    if isinstance(layer, keras.layers.Embedding):
        shape = (layer.input_dim, layer.output_dim)
    elif isinstance(layer, keras.layers.EinsumDense) and layer.quantization_mode == "int4":
        shape = tuple(layer.original_kernel_shape)
    elif isinstance(layer, keras.layers.Dense) and layer.quantization_mode == "int4":
        shape = (getattr(layer, "_orig_input_dim", layer.kernel.shape[0]), layer.units)
    else:
        shape = tuple(layer.kernel.shape)
    return tuple(shape[:-1]) + (rank,), (rank, shape[-1])


def load_lora(model, path):
    """Loads adapters written by `save_lora` into `model`, enabling them first if needed.

    A model without adapters gets those the file records (`enable_lora`
    with its rank, alpha and layers); one with adapters must have the same.
    Every check is made before anything changes: a file of another shape
    (another rank or alpha, other target layers, other widths, another
    head) is refused naming the file and the first differences, and the
    model is left as it was.

    Args:
        model: The architecture the file was saved from (e.g. the same
            pretrained model, loaded again).
        path: A file from `save_lora`.

    Returns:
        `model`, with the file's adapters and head weights.

    Raises:
        ValueError: `path` is not a LoRA file, or does not fit `model`.

    Example:

    ```python
    import os
    import tempfile
    import numpy as np
    import keras_llm
    from keras_llm.training import enable_lora, load_lora, save_lora

    model = keras_llm.build_gpt("gpt_nano", num_layers=1, vocabulary_size=64)
    enable_lora(model, rank=2)
    b = model.get_layer("transformer_layer_0")._self_attention["query"].lora_kernel_b
    b.assign(np.ones(b.shape))  # as if trained
    path = save_lora(model, os.path.join(tempfile.mkdtemp(), "a.lora.h5"))
    other = keras_llm.build_gpt("gpt_nano", num_layers=1, vocabulary_size=64)
    other.set_weights([w.numpy() for w in model.weights if "lora" not in w.path])
    load_lora(other, path)
    ids = {"token_ids": np.array([[1, 2, 3]], "int32"), "padding_mask": np.ones((1, 3), "int32")}
    assert np.allclose(np.asarray(other(ids)), np.asarray(model(ids)), atol=1e-6)
    ```
    """
    path = os.fspath(path)
    spec, arrays = _read(path)
    current = lora_spec(model)
    problems = []
    if current is not None:
        for key in ("rank", "alpha", "layers", "trainable_layers"):
            if current[key] != spec.get(key):
                problems.append(f"{key}: the file's {spec.get(key)!r}, the model's {current[key]!r}")
    layers = _weighted_layers(model)
    values = []  # (variable getter, array), assigned once everything is checked
    for layer_path in spec["layers"]:
        layer = layers.get(layer_path)
        if layer is None or not _adaptable(layer):
            problems.append(f"adapted layer {layer_path}: not in the model")
            continue
        shapes = _expected_adapter_shapes(layer, spec["rank"])
        for part, shape in zip("ab", shapes):
            array = arrays[f"adapters/{layer_path}/{part}"]
            if tuple(array.shape) != shape:
                problems.append(
                    f"{layer_path} adapter {part.upper()}: the file's shape {array.shape}, "
                    f"the model's {shape}"
                )
            values.append((layer_path, part, array))
    for layer_path in spec["trainable_layers"]:
        layer = layers.get(layer_path)
        if layer is None:
            problems.append(f"trained layer {layer_path}: not in the model")
            continue
        stored = sorted(
            (int(k.rsplit("/", 1)[1]), a) for k, a in arrays.items()
            if k.rsplit("/", 1)[0] == f"trainable/{layer_path}"
        )
        shapes = [tuple(v.shape) for v in layer.variables]
        if [tuple(a.shape) for _, a in stored] != shapes:
            problems.append(
                f"trained layer {layer_path}: the file's variable shapes "
                f"{[tuple(a.shape) for _, a in stored]}, the model's {shapes}"
            )
        values.extend((layer_path, i, a) for i, a in stored)
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise ValueError(
            f"load_lora: {path} does not fit model {model.name!r} (nothing was changed): {shown}. "
            f"Received: path={path!r}"
        )
    if current is None:
        _apply(model, spec)
    layers = _weighted_layers(model)
    for layer_path, part, array in values:
        layer = layers[layer_path]
        if part in ("a", "b"):
            _adapters(layer)["ab".index(part)].assign(array)
        else:
            layer.variables[part].assign(array)
    return model


__all__ = ["load_lora", "save_lora"]
