"""The checks and signatures that `Generator` and the exports share.

`check_decoder` (is this a model that decodes?), `check_inputs` (a
model's id inputs, in the graph), `check_stop_token_ids` (Python), and the
decoding loop's signature specs (`PROMPT_SPECS`, `SETTING_SPECS`,
`STOP_SPEC`), which are also the exported `generate_ids` signature's.
`per_prompt` broadcasts per-row settings. They import nothing of
`keras_llm.data` or of the tokenizers: the id checks are
`keras_llm._graph_checks`'.
"""

import reprlib

import keras
import tensorflow as tf

from keras_llm._checks import is_int
from keras_llm._graph_checks import assert_that, check_token_ids
from keras_llm.models import registry

# The decoding loop's signature (also the exported `generate_ids` signature's):
# right-padded prompts, then per-row settings.
PROMPT_SPECS = [
    tf.TensorSpec([None, None], tf.int32, name="token_ids"),
    tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
]
SETTING_SPECS = [
    tf.TensorSpec([None], tf.int32, name="max_new_tokens"),
    tf.TensorSpec([None], tf.float32, name="temperature"),
    tf.TensorSpec([None], tf.int32, name="top_k"),
    tf.TensorSpec([None], tf.float32, name="top_p"),
    tf.TensorSpec([None], tf.int32, name="seed"),
]
STOP_SPEC = tf.TensorSpec([None], tf.int32, name="stop_token_ids")


def check_decoder(model, *tasks):
    """Refuses a model without the decoding interface, or of another task, naming it.

    A model decodes through `keras_llm.generation` when it says what it is
    (`model.task`, one of `tasks`) and has `call_with_cache` and
    `empty_cache` (see `keras_llm.models.GPT`).

    Returns:
        The model's task.

    Example:

    ```python
    import keras_llm
    from keras_llm.generation.checks import check_decoder

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    assert check_decoder(model, "causal_lm", "seq2seq_lm") == "causal_lm"
    ```
    """
    task = getattr(model, "task", None)
    if task in tasks and callable(getattr(model, "call_with_cache", None)):
        return task
    if task is None and isinstance(model, keras.Model):
        raise ValueError(
            f"`model` ({model.name!r}, a plain {type(model).__name__}) has no decoding interface: "
            "it must be a model from keras_llm's builders (a .keras file saved by an earlier "
            "keras_llm loads as a plain keras.Model: build the model again with the same sizes "
            "and copy the weights, `new.set_weights(old.get_weights())`)."
        )
    wanted = [registry.TASKS[t] for t in tasks]
    raise ValueError(
        f"`model` must be {' or '.join(f'{t.description} ({t.builder_names()})' for t in wanted)}."
        f" Received: a {task} model "
        f"({type(model).__name__} {getattr(model, 'name', '')!r})"
    )


def check_inputs(token_ids, vocabulary_size, max_length=None, **same_shape):
    """Graph checks of a model's inputs: `token_ids` and then each of `same_shape`, checked.

    `token_ids` `[B, T]` must be ids in `[0, vocabulary_size)` and, given
    `max_length`, at most that long; each tensor of `same_shape` (e.g.
    `padding_mask=...`) must have its shape. Otherwise the graph fails with
    `InvalidArgumentError` naming the argument, what it received and what
    was expected. Used by `Generator` and by the exported signatures.

    Returns:
        `token_ids` (int32) and the tensors of `same_shape`, in order, each
        depending on the checks.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.generation.checks import check_inputs

    @tf.function
    def checked(token_ids, padding_mask):
        return check_inputs(token_ids, 10, 4, padding_mask=padding_mask)

    ids = tf.constant([[1, 2, 3]])
    checked(ids, tf.ones_like(ids))
    try:
        checked(tf.constant([[1, 12]]), tf.ones([1, 2], tf.int32))
    except tf.errors.InvalidArgumentError as error:
        assert "`token_ids` must be token ids in [0, 10)" in error.message
    ```
    """
    checks = [
        assert_that(
            tf.reduce_all(tf.equal(tf.shape(value), tf.shape(token_ids))),
            f"`{name}` must have the shape of `token_ids` ({{}}). Received: {name} of shape {{}}",
            tf.shape(token_ids), tf.shape(value),
        )
        for name, value in same_shape.items()
    ]
    if max_length is not None:
        checks.append(assert_that(
            tf.shape(token_ids)[1] <= max_length,
            f"`token_ids` must be at most {max_length} tokens long (the context of the model). "
            "Received: token_ids of length {}",
            tf.shape(token_ids)[1],
        ))
    with tf.control_dependencies(checks):
        others = [tf.identity(value) for value in same_shape.values()]
    return (check_token_ids(token_ids, vocabulary_size, "token_ids"), *others)


def check_stop_token_ids(stop_token_ids, vocabulary_size):
    """`stop_token_ids` (a list of ids in `[0, vocabulary_size)`) as a list of ints.

    Used by `Generator.generate` and `keras_llm.export`; anything else raises
    an error naming `stop_token_ids` (see `check_token_ids`).

    Returns:
        The ids, a list of Python ints.

    Example:

    ```python
    from keras_llm.generation.checks import check_stop_token_ids

    assert check_stop_token_ids((256,), 258) == [256]
    try:
        check_stop_token_ids([258], 258)
    except ValueError as error:
        assert "`stop_token_ids` must be token ids in [0, 258)" in str(error)
    ```
    """
    if isinstance(stop_token_ids, (str, bytes)):
        raise TypeError(
            f"`stop_token_ids` must be a list of token ids. Received: stop_token_ids={stop_token_ids!r}"
        )
    if isinstance(stop_token_ids, (list, tuple)) and all(
        is_int(t) and 0 <= t < vocabulary_size for t in stop_token_ids
    ):  # valid ids, accepted in Python: the TensorFlow check took about 1 ms a call
        return [int(t) for t in stop_token_ids]
    ids = check_token_ids(stop_token_ids, vocabulary_size, "stop_token_ids")
    if isinstance(ids, tf.RaggedTensor) or ids.shape.rank != 1:
        raise ValueError(
            "`stop_token_ids` must be a flat list of token ids. "
            f"Received: stop_token_ids={reprlib.repr(stop_token_ids)}"
        )
    return ids.numpy().tolist()


def per_prompt(batch_size, **settings):
    """Each setting `[N]` as `[B]`: N is B (one per prompt) or 1 (one for every prompt).

    Any other N fails the graph with `InvalidArgumentError` naming the
    setting, its number of values and the number of prompts.

    Returns:
        The settings, in order, each broadcast to `[batch_size]`.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.generation.checks import per_prompt

    (top_k,) = per_prompt(3, top_k=tf.constant([5]))
    assert top_k.numpy().tolist() == [5, 5, 5]
    ```
    """
    broadcast = []
    for name, value in settings.items():
        count = tf.shape(value)[0]
        check = assert_that(
            tf.logical_or(tf.equal(count, batch_size), tf.equal(count, 1)),
            f"`{name}` must have one value per prompt ({{}} prompts) or one value for all. "
            f"Received: {{}} values of {name}",
            batch_size, count,
        )
        with tf.control_dependencies([check]):
            broadcast.append(tf.broadcast_to(value, [batch_size]))
    return broadcast
