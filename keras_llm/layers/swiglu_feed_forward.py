"""The SwiGLU feed-forward network (Shazeer, 2020) of Llama, Mistral and Qwen2."""

import keras
from keras import ops

from keras_llm._checks import check_int
from keras_llm.layers._dtype_policy import dtype_policy_config
from keras_llm.layers.offset_dense import OffsetDense


def _clone(initializer):
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="keras_llm")
class SwiGLUFeedForward(keras.layers.Layer):
    """`down(silu(gate(x)) * up(x))`: a feed-forward network with a SiLU-gated linear unit.

    `gate` and `up` are `hidden_dim -> intermediate_dim` projections,
    `down` is `intermediate_dim -> hidden_dim`, none with a bias (Llama's
    `mlp_bias=False`); `silu(z) = z * sigmoid(z)`. The kernels are 2-D,
    `[in, out]`, as in every keras_llm layer (Hugging Face's `gate_proj`,
    `up_proj`, `down_proj` weights are their transposes).

    Args:
        intermediate_dim: Width of the gated hidden layer.
        kernel_initializer: Initializer of the three kernels. Defaults to a
            truncated normal with standard deviation 0.02 (Llama's
            `initializer_range`).
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: A float tensor `(batch_size, sequence_length, hidden_dim)`.

    Returns:
        A tensor of the shape of `inputs`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    layer = keras_llm.layers.SwiGLUFeedForward(intermediate_dim=6)
    x = np.random.default_rng(0).normal(size=(1, 2, 4)).astype("float32")
    y = np.asarray(layer(x))
    gate, up, down = (np.asarray(w) for w in layer.get_weights())
    g = x @ gate
    assert np.allclose(y, (g / (1 + np.exp(-g)) * (x @ up)) @ down, atol=1e-5)
    ```
    """

    def __init__(self, intermediate_dim, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = check_int("intermediate_dim", intermediate_dim)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )

    def _dense(self, units, name):
        return OffsetDense(
            units,
            use_bias=False,
            kernel_initializer=_clone(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self._gate_dense = self._dense(self.intermediate_dim, "gate_dense")
        self._gate_dense.build(input_shape)
        self._up_dense = self._dense(self.intermediate_dim, "up_dense")
        self._up_dense.build(input_shape)
        self._down_dense = self._dense(hidden_dim, "down_dense")
        self._down_dense.build((*input_shape[:-1], self.intermediate_dim))

    def call(self, inputs):
        # inputs = [B, T, D]
        hidden = ops.silu(self._gate_dense(inputs)) * self._up_dense(inputs)  # [B, T, I]
        return self._down_dense(hidden)  # [B, T, D]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                # With the policies of its quantized sublayers, if any.
                "dtype": dtype_policy_config(self),
                "intermediate_dim": self.intermediate_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
