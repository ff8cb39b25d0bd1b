"""A Hugging Face model directory on disk: `config.json` and safetensors weights, nothing else.

Only safetensors files are read: a safetensors file is a JSON header and raw
arrays, so loading it runs no code. PyTorch's `.bin` / `.pt` / `.pth` /
`.ckpt` files are pickles, and unpickling runs whatever code the file names:
they are refused without being opened.
"""

import contextlib
import os

import numpy as np
from safetensors import SafetensorError, safe_open

from keras_llm._json import read_json_object

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"

# Weights keras_llm refuses, by file name: pickles (unpickling runs code) and
# formats with no reader here.
_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_OTHER_FORMATS = (".h5", ".msgpack", ".ckpt.index", ".gguf", ".onnx")

_WHY = "loading a pickle runs any code it holds, so keras_llm reads safetensors only"
_CONVERT = (
    "Convert it to safetensors where running its code is safe, e.g. with transformers: "
    "`AutoModel.from_pretrained(path).save_pretrained(path, safe_serialization=True)` (use "
    "the class of its architecture), or with the `convert.py` script of "
    "github.com/huggingface/safetensors."
)

# safetensors dtypes read as float32 (the models' variables).
_FLOATS = ("F32", "F16", "BF16", "F64")


def _refused(names):
    pickles = [n for n in names if n.endswith(_PICKLES)]
    others = [n for n in names if n.endswith(_OTHER_FORMATS)]
    return pickles, others


def _refuse_file(path):
    if path.endswith(_PICKLES):
        raise ValueError(f"{path} is a pickle (PyTorch's format): {_WHY}. {_CONVERT}")
    raise ValueError(
        "`path` must be a Hugging Face model directory holding config.json and "
        f"{WEIGHTS} (or {INDEX} and its shards). Received: path={path!r}"
        + (" (a file; pass its directory)" if os.path.exists(path) else " (does not exist)")
    )


def read_config(path):
    """The parsed `config.json` of the model directory `path`."""
    if not os.path.isdir(path):
        _refuse_file(path)
    config_path = os.path.join(path, CONFIG)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{path} has no {CONFIG}: a Hugging Face model directory has one, giving the "
            "architecture and sizes."
        )
    return read_json_object(config_path)


class Weights:
    """The tensors of a checkpoint, single-file or sharded: names, shapes, float32 arrays."""

    def __init__(self, stack, files):
        self._handles = {}  # file -> safe_open handle
        self._where = {}  # tensor name -> file
        for file, names in files.items():
            try:
                handle = stack.enter_context(safe_open(file, framework="np"))
            except SafetensorError as error:
                raise ValueError(
                    f"{file} is not a complete safetensors file (truncated or damaged): {error}"
                ) from None
            self._handles[file] = handle
            present = set(handle.keys())
            if names is not None:  # a shard: the index says what it holds
                absent = sorted(set(names) - present)
                if absent:
                    raise ValueError(
                        f"{file} lacks tensors that {INDEX} places in it: {listing(absent)}. "
                        "The shards do not match the index (an incomplete download?)."
                    )
            for name in present:
                if name in self._where:
                    raise ValueError(f"{name} is in two shards: {self._where[name]} and {file}")
                self._where[name] = file

    def names(self):
        return list(self._where)

    def file(self, name):
        return self._where[name]

    def shape(self, name):
        return tuple(self._handles[self._where[name]].get_slice(name).get_shape())

    def check_float(self, name):
        dtype = self._handles[self._where[name]].get_slice(name).get_dtype()
        if dtype not in _FLOATS:
            raise ValueError(
                f"{self._where[name]}: {name} has dtype {dtype}; expected one of "
                f"{', '.join(_FLOATS)}"
            )
        return dtype

    def read(self, name):
        """The tensor as a float32 NumPy array."""
        file = self._where[name]
        if self.check_float(name) == "BF16":
            # NumPy has no bfloat16: TensorFlow reads it (as an ml_dtypes array).
            with safe_open(file, framework="tf") as handle:
                return handle.get_tensor(name).numpy().astype(np.float32)
        return self._handles[file].get_tensor(name).astype(np.float32, copy=False)


def listing(names, limit=8):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@contextlib.contextmanager
def open_weights(path):
    """Yields the `Weights` of the model directory `path` (`model.safetensors`, or sharded)."""
    single, index = os.path.join(path, WEIGHTS), os.path.join(path, INDEX)
    with contextlib.ExitStack() as stack:
        if os.path.isfile(single):
            files = {single: None}
        elif os.path.isfile(index):
            files = _shards(path, index)
        else:
            pickles, others = _refused(sorted(os.listdir(path)))
            if pickles:
                raise ValueError(
                    f"{path} has weights only as pickles ({', '.join(pickles)}, PyTorch's "
                    f"format): {_WHY}. {_CONVERT}"
                )
            raise FileNotFoundError(
                f"{path} has no {WEIGHTS} or {INDEX}: keras_llm reads Hugging Face weights "
                "in safetensors files"
                + (f" (found {', '.join(others)}, which it does not read). {_CONVERT}"
                   if others else ".")
            )
        yield Weights(stack, files)


def _shards(path, index):
    """{shard path: [tensor names]} from `model.safetensors.index.json`."""
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(
            f"{index} must hold a non-empty \"weight_map\" of tensor name -> shard file"
        )
    files = {}
    for name, shard in weight_map.items():
        # A shard is a file of this directory: no paths that lead out of it.
        if not isinstance(shard, str) or os.path.basename(shard) != shard or shard in ("", ".."):
            raise ValueError(
                f"{index}: the shard of {name} must be a file name. Received: {shard!r}"
            )
        files.setdefault(os.path.join(path, shard), []).append(name)
    missing = sorted(os.path.basename(f) for f in files if not os.path.isfile(f))
    if missing:
        raise FileNotFoundError(f"{path} lacks shards that {INDEX} names: {', '.join(missing)}")
    return files
