"""The base of keras_llm's tokenizers (strings in, int32 ids out) and the one check of ids."""

import reprlib

import keras
import numpy as np
import tensorflow as tf

# How many offending values an error message lists.
_SHOWN = 10


def assert_that(condition, message, *values):
    """A graph assertion that fails with `message`, its `{}`s filled with `values`.

    A scalar value is printed as a number, a 1-D one as "1, 2, 3" (its first
    ten). The message holds no "]", so it reads back whole from the error's
    `assertion failed: [MESSAGE]`.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.tokenizers.string_tokenizer import assert_that

    @tf.function
    def positive(x):
        with tf.control_dependencies([assert_that(tf.reduce_all(x > 0), "`x` must be > 0. Received: {}", x)]):
            return tf.identity(x)

    try:
        positive(tf.constant([1, -2]))
    except tf.errors.InvalidArgumentError as error:
        assert "`x` must be > 0. Received: 1, -2" in error.message
    ```
    """
    pieces = message.split("{}")
    if len(pieces) != len(values) + 1:
        raise ValueError(f"{message!r} needs {len(pieces) - 1} values; received {len(values)}")
    parts = [pieces[0]]
    for value, piece in zip(map(tf.convert_to_tensor, values), pieces[1:]):
        text = tf.strings.as_string(value)
        if value.shape.rank != 0:
            text = tf.strings.reduce_join(text[:_SHOWN], separator=", ")
        parts += [text, piece]
    return tf.debugging.Assert(condition, [tf.strings.join(parts)])


def check_token_ids(ids, vocabulary_size, name="ids"):
    """`ids` as int32 ids, checked to be integers in `[0, vocabulary_size)`.

    The one check of ids against a vocabulary: the tokenizers' `detokenize`,
    the generator and the exported signatures use it. `ids` may be a list,
    nested lists (rows of any lengths), a NumPy array or a (ragged) tensor
    with at least one dimension. Eagerly, ids outside the vocabulary raise a
    `ValueError` that lists them; in a graph (a `tf.function`, a SavedModel)
    the returned ids depend on an assertion that fails with the same message
    (`InvalidArgumentError`). Ids that are not integers raise a `TypeError`.

    Example:

    ```python
    from keras_llm.tokenizers.string_tokenizer import check_token_ids

    assert check_token_ids([[1, 2], [3]], 4).to_list() == [[1, 2], [3]]
    try:
        check_token_ids([1, 9], 4)
    except ValueError as error:
        assert "`ids` must be token ids in [0, 4)" in str(error) and ": 9" in str(error)
    ```
    """
    ids = _integer_tensor(ids, name)
    flat = ids.flat_values if isinstance(ids, tf.RaggedTensor) else tf.reshape(ids, [-1])
    outside = tf.logical_or(flat < 0, flat >= vocabulary_size)
    message = (
        f"`{name}` must be token ids in [0, {vocabulary_size}) (the vocabulary). "
        f"Received: {name} holding {{}} id(s) outside it: {{}}"
    )
    if tf.executing_eagerly():
        bad = flat.numpy()[outside.numpy()]
        if bad.size:
            listed = ", ".join(str(v) for v in bad[:_SHOWN]) + (", ..." if bad.size > _SHOWN else "")
            raise ValueError(message.format(bad.size, listed))
    else:
        check = assert_that(
            tf.logical_not(tf.reduce_any(outside)), message,
            tf.reduce_sum(tf.cast(outside, tf.int32)), tf.boolean_mask(flat, outside),
        )
        with tf.control_dependencies([check]):
            ids = tf.identity(ids)
    return tf.cast(ids, tf.int32)


def _integer_tensor(ids, name):
    """`ids` as an integer tf.Tensor or tf.RaggedTensor (Python ints: int64), rank >= 1."""
    raw = ids
    if isinstance(ids, (tf.Tensor, tf.RaggedTensor)):
        if not ids.dtype.is_integer:
            raise TypeError(
                f"`{name}` must be integer token ids. Received: {name} of dtype {ids.dtype.name}"
            )
    else:
        try:
            array = np.asarray(ids)
        except ValueError:  # rows of different lengths
            array = np.empty(1, object)
        if array.dtype == object:
            try:
                ids = tf.ragged.constant(ids, dtype=tf.int64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"`{name}` must be integer token ids: a list, rows of ids, a NumPy array "
                    f"or a tensor. Received: {name}={reprlib.repr(ids)}"
                ) from None
        elif array.size == 0:
            ids = tf.zeros(array.shape, tf.int32)
        elif np.issubdtype(array.dtype, np.integer):
            ids = tf.constant(array)
        else:
            raise TypeError(f"`{name}` must be integer token ids. Received: {name}={reprlib.repr(ids)}")
    if ids.shape.rank == 0:
        raise ValueError(
            f"`{name}` must have a length (`[length]` or `[batch, length]` ids). "
            f"Received: {name}={reprlib.repr(raw)}"
        )
    return ids


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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
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
