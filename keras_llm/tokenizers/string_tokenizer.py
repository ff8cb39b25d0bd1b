"""The base of keras_llm's tokenizers (strings in, int32 ids out) and the one check of ids."""

import reprlib

import keras
import tensorflow as tf

# The checks of ids live with keras_llm's other graph checks; imported here
# too, where tokenizers and older code import them from.
from keras_llm._graph import graph_function
from keras_llm._graph_checks import assert_that, check_token_ids  # noqa: F401


class StringTokenizer(keras.layers.Layer):
    """Base layer: calls `_tokenize` on a `[batch]` string tensor.

    Subclasses implement `_tokenize(texts)`, mapping `[B]` strings to `[B,
    None]` ragged int32 ids, `_detokenize(ids)`, mapping int32 ids in the
    vocabulary (`[..., length]`, dense or ragged) to strings, and set
    `vocabulary_size`. This class accepts Python strings and lists (Keras
    layers take only tensors positionally), returns 1-D ids for a scalar
    string, runs `_tokenize` as one traced `tf.function` when called
    eagerly rather than op by op (the tokenizers' loops would otherwise run
    in Python), and checks the ids given to `detokenize`.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)

    def __call__(self, inputs, *args, **kwargs):
        if not isinstance(inputs, keras.KerasTensor):
            inputs = _string_tensor(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        inputs = _check_rank(tf.convert_to_tensor(inputs, tf.string))
        texts = tf.reshape(inputs, [-1])
        ids = self._tokenize_graph(texts) if tf.executing_eagerly() else self._tokenize(texts)
        return ids.flat_values if inputs.shape.rank == 0 else ids

    def _string_batch(self, inputs):
        """`inputs` as a string tensor of rank 0 or 1, checked as calling the layer checks it."""
        return _check_rank(_string_tensor(inputs))

    @graph_function(input_signature=[tf.TensorSpec([None], tf.string)])
    def _tokenize_graph(self, texts):
        return self._tokenize(texts)

    def _tokenize(self, texts):
        raise NotImplementedError

    def tokenize(self, inputs):
        """Same as calling the layer."""
        return self(inputs)

    def detokenize(self, ids):
        """The text of `ids`: `[length]` ids give a string, `[batch, None]` ids `[batch]` strings.

        Args:
            ids: int token ids in `[0, vocabulary_size)`: a list, rows of
                ids, a NumPy array or a (ragged) tensor. Ids outside the
                vocabulary are an error that lists them (`ValueError`; in a
                graph, `InvalidArgumentError`).

        Returns:
            A string tensor with the last dimension joined.
        """
        return self._detokenize(check_token_ids(ids, self.vocabulary_size))

    def _detokenize(self, ids):
        raise NotImplementedError

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(tuple(inputs.shape) + (None,), dtype="int32", ragged=True)


def _string_tensor(inputs):
    """`inputs` as a tf.string tensor, or a `TypeError` that says what it is instead."""
    if isinstance(inputs, tf.Tensor) and inputs.dtype != tf.string:
        raise TypeError(
            "`inputs` must be a string or a 1-D batch of strings. "
            f"Received: inputs of dtype {inputs.dtype.name}"
        )
    if not isinstance(inputs, tf.Tensor):
        try:
            inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        except (TypeError, ValueError):
            raise TypeError(
                "`inputs` must be a string or a 1-D batch of strings (str or bytes; a list, "
                f"a NumPy array or a tf.string tensor). Received: inputs={reprlib.repr(inputs)}"
            ) from None
    return inputs


def _check_rank(inputs):
    if inputs.shape.rank is not None and inputs.shape.rank > 1:
        raise ValueError(
            "Tokenizers take a string or a 1-D batch of strings. "
            f"Received: inputs.shape={inputs.shape}"
        )
    return inputs
