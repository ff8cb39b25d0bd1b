"""Learned absolute position embeddings (BERT, GPT-2)."""

import keras
from keras import ops

from keras_llm._checks import check_int


@keras.saving.register_keras_serializable(package="keras_llm")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each position, as in BERT and GPT-2.

    Holds a `(max_sequence_length, d)` table and returns
    `inputs + table[start_index : start_index + sequence_length]`. Like
    `PositionalEncoding`, it returns the input plus the positions so the two
    are interchangeable; keras-hub's `PositionEmbedding` returns only the rows.

    Args:
        max_sequence_length: The number of positions the table holds.
        initializer: Initializer of the table. Defaults to a truncated normal
            with standard deviation 0.02, as BERT and GPT-2 use.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: A float tensor of shape `(batch_size, sequence_length, d)`.
        start_index: An int (or int scalar tensor): the position of the first
            element of `inputs`, for cached decoding.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    layer = keras_llm.layers.PositionEmbedding(max_sequence_length=16)
    outputs = layer(np.zeros((2, 5, 8), "float32"))
    table = layer.embeddings.numpy()
    assert np.allclose(outputs[1], table[:5])
    ```
    """

    def __init__(self, max_sequence_length, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.max_sequence_length = check_int("max_sequence_length", max_sequence_length)
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )

    def build(self, input_shape):
        depth = input_shape[-1]
        if depth is None:
            raise ValueError(
                "The last dimension of the inputs to PositionEmbedding must be "
                f"known. Received: input_shape={input_shape}"
            )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_sequence_length, depth),
            initializer=self.initializer,
        )

    def call(self, inputs, start_index=0):
        # inputs = [B, T, d]
        length = ops.shape(inputs)[-2]
        if isinstance(length, int) and isinstance(start_index, int):
            if start_index + length > self.max_sequence_length:
                raise ValueError(
                    f"Positions {start_index}..{start_index + length - 1} "
                    "are past the table of PositionEmbedding, which holds "
                    f"max_sequence_length={self.max_sequence_length}. "
                    f"Received: inputs.shape={inputs.shape}, "
                    f"start_index={start_index}"
                )
        rows = ops.slice(
            ops.convert_to_tensor(self.embeddings),
            (start_index, 0),
            (length, ops.shape(self.embeddings)[-1]),
        )
        return inputs + ops.cast(rows, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_sequence_length": self.max_sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
