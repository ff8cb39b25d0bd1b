"""Sinusoidal positional encoding of the original Transformer."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_llm")
class PositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal position table of Vaswani et al. (2017).

    For position `pos` and channel `j` of a `d`-wide sequence, with `i = j // 2`:

        PE(pos, 2i)   = sin(pos / 10000^(2i / d))
        PE(pos, 2i+1) = cos(pos / 10000^(2i / d))

    Channels are interleaved exactly as written (sin on even channels, cos on
    odd ones), so an odd `d` ends with a sin channel. The table is computed on
    the fly for the length of each call, so any sequence length works and
    there are no weights. The layer returns `inputs + PE`: applied to zeros it
    returns the table itself. (keras-hub's `SinePositionEncoding` returns only
    the table and concatenates sin and cos halves instead of interleaving.)

    The angles are always computed in float32, whatever the dtype policy,
    because `pos * 10000^(-2i/d)` loses whole radians in bfloat16 past a few
    hundred positions; the table is cast to the compute dtype only at the end.

    Args:
        max_wavelength: The base of the geometric progression of wavelengths,
            10000 in the paper.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: A float tensor of shape `(batch_size, sequence_length, d)`.
        start_index: An int (or int scalar tensor) added to every position,
            for cached decoding where one position is fed at a time.

    Returns:
        A tensor of the same shape and dtype as `inputs`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    layer = keras_llm.layers.PositionalEncoding()
    table = np.asarray(layer(np.zeros((1, 4, 6), "float32")))[0]
    assert np.allclose(table[3, 2], np.sin(3 / 10000 ** (2 / 6)), atol=1e-6)
    assert np.allclose(table[3, 3], np.cos(3 / 10000 ** (2 / 6)), atol=1e-6)
    ```
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        if max_wavelength <= 1:
            raise ValueError(
                "`max_wavelength` must be greater than 1. "
                f"Received: max_wavelength={max_wavelength}"
            )
        self.max_wavelength = float(max_wavelength)
        self.built = True

    def call(self, inputs, start_index=0):
        # inputs = [B, T, d]
        shape = ops.shape(inputs)
        length, depth = shape[-2], shape[-1]
        positions = ops.cast(ops.arange(length) + start_index, "float32")
        channels = ops.arange(depth)
        # 2i for both members of the (2i, 2i+1) pair, divided by d.
        exponent = ops.cast(channels // 2 * 2, "float32") / ops.cast(depth, "float32")
        inverse_frequency = ops.power(self.max_wavelength, -exponent)
        angles = positions[:, None] * inverse_frequency[None, :]  # [T, d]
        table = ops.where(channels % 2 == 0, ops.sin(angles), ops.cos(angles))
        return inputs + ops.cast(table, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
