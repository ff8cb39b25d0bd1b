"""One checkpoint tensor and the Keras variables it fills, both ways.

A model family (`_bert.py`, `_gpt2.py`) lists its checkpoint as `Tensor`s;
`hugging_face.py` reads and writes them. Each `Tensor` carries the two
transforms between the layouts, so import and export share one table and
cannot drift apart.

Layouts: PyTorch's `nn.Linear` stores `[out, in]`; GPT-2's `Conv1D` stores
`[in, out]`; keras_llm's kernels are all `[in, out]` (the attention
projections too: heads are consecutive slices of the output, as in both
Hugging Face layouts) and their biases `[out]`.
"""

from typing import Callable, NamedTuple

import numpy as np


class Tensor(NamedTuple):
    """A checkpoint tensor: its name, its part and how it maps to Keras variables."""

    name: str  # the Hugging Face name, without the base model's prefix
    part: str  # "body", "pooler" or a head: a checkpoint has or lacks a part as a whole
    variables: tuple  # paths of the Keras variables it fills
    to_keras: Callable  # (array, [variable shapes]) -> [one array per variable]
    to_hf: Callable  # [one array per variable] -> array


def stored(name, part, path):
    """A tensor stored as Keras stores it (embeddings, LayerNorm, biases, GPT-2's Conv1D)."""
    return Tensor(
        name,
        part,
        (path,),
        lambda array, shapes: [array],
        lambda arrays: arrays[0],
    )


def transposed(name, part, path):
    """A PyTorch `nn.Linear` weight, `[out, in]`: the transpose of the Keras kernel."""
    return Tensor(
        name,
        part,
        (path,),
        lambda array, shapes: [array.T],
        lambda arrays: arrays[0].T,
    )


def fused(name, part, paths):
    """GPT-2's `c_attn`: query, key and value side by side on the last axis, `[in, 3 * out]`."""
    return Tensor(
        name,
        part,
        tuple(paths),
        lambda array, shapes: np.split(array, len(shapes), axis=-1),
        lambda arrays: np.concatenate(arrays, axis=-1),
    )


def layer_norm(name, part, layer):
    """A `torch.nn.LayerNorm`'s `weight` and `bias`: a LayerNormalization's `gamma` and `beta`."""
    return [stored(f"{name}.weight", part, f"{layer}/gamma"),
            stored(f"{name}.bias", part, f"{layer}/beta")]


def linear(name, part, layer):
    """A `torch.nn.Linear`'s `weight` (transposed) and `bias`: a Keras Dense's `kernel`, `bias`."""
    return [transposed(f"{name}.weight", part, f"{layer}/kernel"),
            stored(f"{name}.bias", part, f"{layer}/bias")]
