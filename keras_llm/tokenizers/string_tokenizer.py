"""The base of keras_llm's tokenizers: strings in, int32 ids out."""

import keras
import tensorflow as tf


class StringTokenizer(keras.layers.Layer):
    """Base layer: calls `_tokenize` on a `[batch]` string tensor.

    Subclasses implement `_tokenize(texts)`, mapping `[B]` strings to `[B,
    None]` ragged int32 ids. This class accepts Python strings and lists
    (Keras layers take only tensors positionally), returns 1-D ids for a
    scalar string, and, when called eagerly, runs `_tokenize` as one traced
    `tf.function` rather than op by op (the tokenizers' loops would
    otherwise run in Python).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)

    def __call__(self, inputs, *args, **kwargs):
        if not isinstance(inputs, (tf.Tensor, keras.KerasTensor)):
            inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs, tf.string)
        if inputs.shape.rank is not None and inputs.shape.rank > 1:
            raise ValueError(
                "Tokenizers take a string or a 1-D batch of strings. "
                f"Received: inputs.shape={inputs.shape}"
            )
        texts = tf.reshape(inputs, [-1])
        ids = self._tokenize_graph(texts) if tf.executing_eagerly() else self._tokenize(texts)
        return ids.flat_values if inputs.shape.rank == 0 else ids

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def _tokenize_graph(self, texts):
        return self._tokenize(texts)

    def _tokenize(self, texts):
        raise NotImplementedError

    def tokenize(self, inputs):
        """Same as calling the layer."""
        return self(inputs)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(tuple(inputs.shape) + (None,), dtype="int32", ragged=True)
