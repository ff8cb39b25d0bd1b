"""Checks of tensor values that also run inside graphs: the ids, ranges and lengths every floor checks.

Layers, models, tokenizers, the generator and the exports import them from
here (the root floor), so no floor imports another just for a check. Each
check raises a `ValueError` eagerly; in a graph (a `tf.function`, a
SavedModel, a non-XLA `fit`) the checked tensor depends on an assertion that
fails with the same message (`InvalidArgumentError`), its message built only
when it fails; inside an XLA cluster, which compiles `tf.debugging.Assert` as
a no-op and has no string ops, nothing is checked and nothing is added:
`CheckedSteps` checks a model's batches outside the XLA step instead.
"""

import reprlib

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

# Keras 3's marker of its symbolic model builds (`compute_output_spec`); no public name.
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

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
    from keras_llm._graph_checks import assert_that

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


def in_xla_context():
    """Whether the graph being traced is compiled by XLA (`jit_compile=True`): asserts are dropped there."""
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def check_in_range(values, name, high, *, low=0, what="values", unit="value(s)", where=""):
    """`values` (an int tensor, dense or ragged), checked to lie in `[low, high)`.

    The one range check of keras_llm: token ids against a vocabulary,
    segment ids against `num_segments`, positions against a sequence length
    (`high` may then be a scalar tensor). The message names the argument,
    the range and the values outside it. Under XLA it checks nothing (see
    the module's docstring).

    Args:
        values: An integer `tf.Tensor` or `tf.RaggedTensor`.
        name: The argument's name, as the user wrote it (`"segment_ids"`).
        high: The end of the range (excluded): an int or a scalar int tensor.
        low: Its start.
        what, unit, where: Words of the message: "`{name}` must be {what} in
            [{low}, {high}){where}. Received: {name} holding N {unit}
            outside it: ...".

    Returns:
        `values`, which in a graph depend on the check.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm._graph_checks import check_in_range

    segment_ids = tf.constant([[0, 1, 2]])
    try:
        check_in_range(segment_ids, "segment_ids", 2, what="segment ids", where=" (num_segments=2)")
    except ValueError as error:
        assert str(error) == (
            "`segment_ids` must be segment ids in [0, 2) (num_segments=2). "
            "Received: segment_ids holding 1 value(s) outside it: 2"
        )
    ```
    """
    if in_xla_context():
        return values
    flat = values.flat_values if isinstance(values, tf.RaggedTensor) else tf.reshape(values, [-1])
    high_value = tf.cast(high, flat.dtype)
    outside = tf.logical_or(flat < low, flat >= high_value)
    static_high = high if isinstance(high, (int, np.integer)) else "{}"
    message = (
        f"`{name}` must be {what} in [{low}, {static_high}){where}. "
        f"Received: {name} holding {{}} {unit} outside it: {{}}"
    )
    if tf.executing_eagerly():
        bad = flat.numpy()[outside.numpy()]
        if bad.size:
            listed = ", ".join(str(v) for v in bad[:_SHOWN]) + (", ..." if bad.size > _SHOWN else "")
            shown = [] if static_high != "{}" else [int(high_value)]
            raise ValueError(message.format(*shown, bad.size, listed))
        return values
    any_outside = tf.reduce_any(outside)

    def fail():
        # Built only when something is outside: the message's string ops
        # cost nothing on the batches that pass.
        shown = [] if static_high != "{}" else [high_value]
        check = assert_that(
            tf.logical_not(any_outside), message, *shown,
            tf.reduce_sum(tf.cast(outside, tf.int32)), tf.boolean_mask(flat, outside),
        )
        with tf.control_dependencies([check]):
            return tf.identity(any_outside)

    checked = tf.cond(any_outside, fail, lambda: any_outside)
    with tf.control_dependencies([checked]):
        return tf.identity(values) if isinstance(values, tf.Tensor) else values.with_flat_values(
            tf.identity(values.flat_values)
        )


def check_token_ids(ids, vocabulary_size, name="ids"):
    """`ids` as int32 ids, checked to be integers in `[0, vocabulary_size)`.

    The one check of ids against a vocabulary: the token embeddings, the
    tokenizers' `detokenize`, the generator and the exported signatures use
    it. `ids` may be a list, nested lists (rows of any lengths), a NumPy
    array or a (ragged) tensor with at least one dimension. Eagerly, ids
    outside the vocabulary raise a `ValueError` that lists them; in a graph
    (a `tf.function`, a SavedModel) the returned ids depend on an assertion
    that fails with the same message (`InvalidArgumentError`); under XLA
    they are not checked (see the module's docstring). Ids that are not
    integers raise a `TypeError`.

    Example:

    ```python
    from keras_llm._graph_checks import check_token_ids

    assert check_token_ids([[1, 2], [3]], 4).to_list() == [[1, 2], [3]]
    try:
        check_token_ids([1, 9], 4)
    except ValueError as error:
        assert "`ids` must be token ids in [0, 4)" in str(error) and ": 9" in str(error)
    ```
    """
    ids = check_in_range(
        integer_tensor(ids, name), name, vocabulary_size, what="token ids", unit="id(s)",
        where=" (the vocabulary)",
    )
    return tf.cast(ids, tf.int32)


def check_length(ids, max_length, name="token_ids", start_index=0):
    """`ids` `[..., length]`, checked to fit positions `start_index ... < max_length`.

    A static length is checked when traced; a dynamic one as the ranges are.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm._graph_checks import check_length

    try:
        check_length(tf.zeros([1, 9], "int32"), 8)
    except ValueError as error:
        assert "`token_ids` must hold at most 8 tokens (max_sequence_length)" in str(error)
    ```
    """
    length = ids.shape[-1]
    message = (
        f"`{name}` must hold at most {max_length} tokens (max_sequence_length) from "
        "position {}. Received: " + name + " of length {}"
    )
    if length is not None and isinstance(start_index, int):
        if start_index + length > max_length:
            raise ValueError(message.format(start_index, length))
        return ids
    if in_xla_context():
        return ids
    length = tf.shape(ids)[-1]
    end = tf.cast(start_index, tf.int32) + length
    if tf.executing_eagerly():
        if int(end) > max_length:
            raise ValueError(message.format(int(start_index), int(length)))
        return ids
    check = assert_that(end <= max_length, message, start_index, length)
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def integer_tensor(ids, name):
    """`ids` as an integer tf.Tensor or tf.RaggedTensor (Python ints: int64), rank >= 1.

    Floats (even whole ones, which a model's int32 input would silently
    truncate) and other non-integers raise a `TypeError` naming `name`.
    """
    raw = ids
    if isinstance(ids, (tf.Tensor, tf.RaggedTensor, tf.Variable)):
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


def check_batch(model, data):
    """A `(x, y, sample_weight)` batch of `model` with its ids, lengths and labels checked.

    Inputs named `*token_ids` are checked against `model.vocabulary_size`
    (`encoder_token_ids` against `model.source_vocabulary_size` when the
    model has one) and `model.max_sequence_length`; they must be integers
    (`TypeError`: the model's int32 inputs would truncate floats). Labels
    are checked against their output's last dimension, the classes of
    keras_llm's sparse cross-entropy losses. Outside XLA only: it is what
    `CheckedSteps` runs before an XLA step.
    """
    x, y, weights = keras.utils.unpack_x_y_sample_weight(data)
    if isinstance(x, dict):
        x = dict(x)
        for key, ids in x.items():
            if not key.endswith("token_ids") or ids is None:
                continue
            size = model.vocabulary_size
            if key == "encoder_token_ids":
                size = getattr(model, "source_vocabulary_size", size)
            ids = check_token_ids(ids, size, key)
            x[key] = check_length(ids, model.max_sequence_length, key)
        # BERT's other id inputs: XLA's gathers would clamp them too.
        num_segments = (getattr(model, "builder_config", None) or {}).get("num_segments")
        if x.get("segment_ids") is not None and num_segments:
            x["segment_ids"] = check_in_range(
                x["segment_ids"], "segment_ids", num_segments, what="segment ids",
                where=f" (num_segments={num_segments})",
            )
        if x.get("mask_positions") is not None and x.get("token_ids") is not None:
            x["mask_positions"] = check_in_range(
                x["mask_positions"], "mask_positions", tf.shape(x["token_ids"])[-1],
                what="positions", where=" (the sequence length)",
            )
    if y is not None:
        outputs = model.outputs
        names = getattr(model, "output_names", None) or []
        if isinstance(y, dict):
            y = {key: _check_labels(value, _output(outputs, names, key), key)
                 for key, value in y.items()}
        elif len(outputs) == 1:
            y = _check_labels(y, outputs[0], "labels")
    return keras.utils.pack_x_y_sample_weight(x, y, weights)


def _output(outputs, names, key):
    return outputs[names.index(key)] if key in names else None


def _check_labels(labels, output, name):
    """Sparse labels `[...]` of a `[..., classes]` output: ints in `[0, classes)`."""
    if output is None or labels is None:
        return labels
    labels = tf.convert_to_tensor(labels)  # `train_on_batch` passes NumPy arrays
    if not labels.dtype.is_integer:
        return labels
    classes = output.shape[-1]
    if classes is None or len(output.shape) != labels.shape.rank + 1:
        return labels
    return check_in_range(labels, name, classes, what="labels", unit="label(s)",
                          where=" (the classes of the outputs)")


class CheckedSteps:
    """A `keras.Model` mixin: `fit`, `evaluate` and `predict` check each batch before an XLA step.

    XLA compiles `tf.debugging.Assert` as a no-op (and has no string ops),
    so the checks inside the layers vanish from an XLA-compiled step: ids
    past the vocabulary would be clamped by XLA's gather and trained on, and
    labels past it give a NaN loss. Keras runs its XLA step from a plain
    `tf.function` that takes the batch from the iterator; this mixin adds
    `check_batch` there, through the wrapper Keras 3.15 puts around every
    step function (`_autoconvert_optionals`, in `make_train_function`,
    `make_test_function` and `make_predict_function`). Without XLA it adds
    nothing: the layers' own checks run in the step. Its cost is one pass
    over the batch's ids and labels (a comparison and a reduction each),
    asynchronous with the step.

    Usage: `class TaskModel(CheckedSteps, keras.Model)`; the model has
    `vocabulary_size` and `max_sequence_length`.
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        # A functional model casts its inputs to their int32 dtype (1.5 -> 1)
        # before any layer could see that they were floats: refuse them here.
        # Keras builds a model under a distribution strategy by calling it on
        # placeholders whose dtypes it does not keep (float64 ids): nothing to check.
        if isinstance(inputs, dict) and not in_symbolic_scope():
            for key, ids in inputs.items():
                dtype = getattr(ids, "dtype", None)
                if dtype is None and ids is not None:
                    dtype = np.asarray(ids).dtype
                if key.endswith("token_ids") and dtype is not None and not _is_integer(dtype):
                    raise TypeError(
                        f"`{key}` must be integer token ids. Received: {key} of dtype "
                        f"{keras.backend.standardize_dtype(dtype)}"
                    )
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _autoconvert_optionals(self, step_function):
        step = super()._autoconvert_optionals(step_function)
        if self.run_eagerly or not self.jit_compile:
            return step
        return lambda data: step(check_batch(self, data))


def _is_integer(dtype):
    return "int" in keras.backend.standardize_dtype(dtype)
