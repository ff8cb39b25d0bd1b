"""Rotary position embedding (Su et al., 2021) with the scalings Llama checkpoints declare."""

import math

import keras
import numpy as np
from keras import ops

from keras_llm._checks import is_finite_real

# What each supported `rope_type` of a Hugging Face `rope_scaling` takes.
_SCALING_KEYS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor",
               "original_max_position_embeddings"),
}


def check_rope_scaling(rope_scaling):
    """`rope_scaling` as `{"rope_type", its keys}`, or None; refuses other types by name.

    Takes the dict a Hugging Face config declares: `rope_type` (or the older
    `type`) and the type's parameters; other keys (`rope_theta`, which
    transformers 5 files keep in the same dict) are dropped.
    """
    if rope_scaling is None:
        return None
    if not isinstance(rope_scaling, dict):
        raise ValueError(
            "`rope_scaling` must be None or a dict with `rope_type` and its parameters. "
            f"Received: rope_scaling={rope_scaling!r}"
        )
    rope_type = rope_scaling.get("rope_type", rope_scaling.get("type"))
    if rope_type == "default":
        return None
    if rope_type not in _SCALING_KEYS:
        raise ValueError(
            f"rope_type={rope_type!r} is not supported: keras_llm's RotaryEmbedding implements "
            f"no scaling, {', '.join(repr(t) for t in _SCALING_KEYS)}. "
            f"Received: rope_scaling={rope_scaling!r}"
        )
    checked = {"rope_type": rope_type}
    for key in _SCALING_KEYS[rope_type]:
        value = rope_scaling.get(key)
        if not is_finite_real(value) or value <= 0:
            raise ValueError(
                f"`rope_scaling` of rope_type={rope_type!r} needs a positive `{key}`. "
                f"Received: rope_scaling={rope_scaling!r}"
            )
        checked[key] = int(value) if key == "original_max_position_embeddings" else float(value)
    if rope_type == "llama3" and checked["high_freq_factor"] <= checked["low_freq_factor"]:
        raise ValueError(
            "`rope_scaling` of rope_type='llama3' needs high_freq_factor > low_freq_factor. "
            f"Received: rope_scaling={rope_scaling!r}"
        )
    return checked


def inverse_frequencies(head_dim, rope_theta, rope_scaling=None):
    """The `head_dim // 2` rotation frequencies (radians per position), float64 NumPy.

    `theta ** (-2i / head_dim)`, then the scaling: `"linear"` divides every
    frequency by `factor` (positions stretched `factor` times); `"llama3"`
    divides the low frequencies (wavelength over `original_max_position_embeddings
    / low_freq_factor`) by `factor`, keeps the high ones (wavelength under
    `... / high_freq_factor`) and interpolates between, as Meta's Llama 3.1
    code and Hugging Face's `_compute_llama3_parameters` do.
    """
    frequencies = 1.0 / rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if rope_scaling is None:
        return frequencies
    factor = rope_scaling["factor"]
    if rope_scaling["rope_type"] == "linear":
        return frequencies / factor
    context = rope_scaling["original_max_position_embeddings"]
    low, high = rope_scaling["low_freq_factor"], rope_scaling["high_freq_factor"]
    wavelengths = 2 * math.pi / frequencies
    smooth = (context / wavelengths - low) / (high - low)
    interpolated = (1 - smooth) * frequencies / factor + smooth * frequencies
    scaled = np.where(wavelengths > context / low, frequencies / factor, frequencies)
    medium = (wavelengths >= context / high) & (wavelengths <= context / low)
    return np.where(medium, interpolated, scaled)


@keras.saving.register_keras_serializable(package="keras_llm")
class RotaryEmbedding(keras.layers.Layer):
    """Rotates each head's query or key vector by angles proportional to its position.

    For position `p` and frequency `f_i` (`inverse_frequencies`: `rope_theta
    ** (-2i / head_dim)`, then the declared scaling), the pair `(x_i,
    x_{i + head_dim/2})` becomes `(x_i cos(p f_i) - x_{i + head_dim/2}
    sin(p f_i), x_{i + head_dim/2} cos(p f_i) + x_i sin(p f_i))`. The pairs
    are the two halves of the head (Hugging Face's `rotate_half` layout, in
    which its Llama, Mistral and Qwen2 checkpoints store the query and key
    projections), not adjacent elements (Meta's and GGUF's layout, a
    permutation of the projections' rows). Dot products of rotated queries and
    keys then depend on positions only through their difference. Angles,
    sines and cosines are computed in float32 (a position times a frequency
    loses the angle in bfloat16); the rotation follows the compute dtype.

    Args:
        rope_theta: The base of the frequencies (10000 in Llama 2, 500000 in
            Llama 3, 1000000 in Qwen2.5).
        rope_scaling: None, or a Hugging Face `rope_scaling` dict:
            `{"rope_type": "linear", "factor"}` or `{"rope_type": "llama3",
            "factor", "low_freq_factor", "high_freq_factor",
            "original_max_position_embeddings"}`. Other types (`"dynamic"`,
            `"yarn"`, `"longrope"`, ...) are refused by name.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: A float tensor `(batch_size, sequence_length, num_heads,
            head_dim)`; `head_dim` even.
        start_index: The position of the first element (an int or an int
            scalar tensor), for cached decoding.

    Returns:
        A tensor of the shape of `inputs`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    layer = keras_llm.layers.RotaryEmbedding(rope_theta=10000.0)
    x = np.ones((1, 3, 1, 2), "float32")  # head_dim 2: one pair, frequency 1
    y = np.asarray(layer(x))
    p = np.arange(3)
    assert np.allclose(y[0, :, 0, 0], np.cos(p) - np.sin(p), atol=1e-6)
    assert np.allclose(y[0, :, 0, 1], np.cos(p) + np.sin(p), atol=1e-6)
    ```
    """

    def __init__(self, rope_theta=10000.0, rope_scaling=None, **kwargs):
        super().__init__(**kwargs)
        if not is_finite_real(rope_theta) or rope_theta <= 1.0:
            raise ValueError(
                f"`rope_theta` must be a float > 1. Received: rope_theta={rope_theta!r}"
            )
        self.rope_theta = float(rope_theta)
        self.rope_scaling = check_rope_scaling(rope_scaling)

    def build(self, input_shape):
        head_dim = input_shape[-1]
        if head_dim is None or head_dim % 2:
            raise ValueError(
                "The last dimension of the inputs to RotaryEmbedding (head_dim) must be known "
                f"and even. Received: input_shape={input_shape}"
            )
        # A constant of the graph, not a weight: it follows from the config.
        self._frequencies = inverse_frequencies(
            head_dim, self.rope_theta, self.rope_scaling
        ).astype("float32")

    def call(self, inputs, start_index=0):
        # inputs = [B, T, N, H]
        length = ops.shape(inputs)[1]
        positions = ops.cast(start_index, "float32") + ops.cast(ops.arange(length), "float32")
        # float32 on purpose: see the class docstring.
        angles = positions[:, None] * ops.convert_to_tensor(self._frequencies)  # [T, H/2]
        angles = ops.concatenate([angles, angles], axis=-1)[None, :, None, :]  # [1, T, 1, H]
        cos = ops.cast(ops.cos(angles), inputs.dtype)
        sin = ops.cast(ops.sin(angles), inputs.dtype)
        first, second = ops.split(inputs, 2, axis=-1)
        rotated = ops.concatenate([-second, first], axis=-1)  # rotate_half
        return inputs * cos + rotated * sin

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rope_theta": self.rope_theta, "rope_scaling": self.rope_scaling})
        return config
