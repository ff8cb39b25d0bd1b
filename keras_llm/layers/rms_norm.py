"""Root-mean-square normalization (Zhang & Sennrich, 2019), as Llama, Mistral and Qwen2 use."""

import keras
from keras import ops

from keras_llm._checks import is_finite_real


@keras.saving.register_keras_serializable(package="keras_llm")
class RMSNorm(keras.layers.Layer):
    """Scales each vector to unit root mean square, then by a learned gain.

    `y = x / sqrt(mean(x^2) + epsilon) * scale`, over the last axis, with
    `scale` a `(d,)` weight initialized to ones. No mean is subtracted and
    there is no bias (unlike LayerNorm). The statistics and the division are
    computed in float32 whatever the compute dtype (the mean of squares
    overflows float16 and loses bfloat16's few bits); the normalized value is
    cast back to the compute dtype before the gain, in the order Hugging
    Face's `LlamaRMSNorm` uses.

    Args:
        epsilon: Added to the mean of squares; a positive float.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: A float tensor `(..., d)`.

    Returns:
        A tensor of the shape of `inputs`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    x = np.array([[3.0, 4.0]], "float32")
    y = np.asarray(keras_llm.layers.RMSNorm(epsilon=1e-6)(x))
    assert np.allclose(y, x / np.sqrt(12.5 + 1e-6), atol=1e-6)
    ```
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if not is_finite_real(epsilon) or epsilon <= 0.0:
            raise ValueError(f"`epsilon` must be a positive float. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        depth = input_shape[-1]
        if depth is None:
            raise ValueError(
                f"The last dimension of the inputs to RMSNorm must be known. "
                f"Received: input_shape={input_shape}"
            )
        self.scale = self.add_weight(name="scale", shape=(depth,), initializer="ones")

    def call(self, inputs):
        # float32 on purpose: see the class docstring.
        x = ops.cast(inputs, "float32")
        x = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(x, self.compute_dtype) * ops.cast(self.scale, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
