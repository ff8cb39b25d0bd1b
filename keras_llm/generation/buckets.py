"""Shape buckets: what lets `Generator`'s decoding loops be XLA-compiled once per bucket.

XLA compiles a program for each shape of its inputs, and no shape inside it
may depend on a tensor's values. So the plain graph around a compiled loop
pads its inputs to a bucket (`bucket_shapes`, `to_bucket`), the loop takes
every shape from its inputs' shapes (`loop_signature`), and each bucket
compiles once per process.
"""

import tensorflow as tf


def bucket_shapes(lengths, row_end, context, *, seq2seq=False, source_width=None):
    """The shape bucket that XLA compiles a decoding loop for.

    Given each row's prompt length and where it ends (`[B]` each) and a
    seq2seq model's source width, returns (as int32 scalars): the batch
    size rounded up to a power of two, the prompt width rounded up to a
    multiple of 32 (a seq2seq decoder's prompt is its start token: 1),
    the total length rounded up to a multiple of 64, and the source
    width rounded up to a multiple of 32 (None without a source); every
    length at most the model's `context`. Buckets bound how many programs
    XLA compiles (each a few seconds, once per process): a server that
    sees batches of 1 to 32 and prompts of any length compiles at most
    6 batch sizes x (context / 32) prompt widths x (context / 64) totals.

    Args:
        lengths: int32 `[B]`, each prompt's length.
        row_end: int32 `[B]`, each prompt's length plus its new tokens.
        context: The model's `max_sequence_length`.
        seq2seq: Whether the decoder's prompt is a seq2seq start token.
        source_width: A seq2seq model's source width, or None.

    Returns:
        `(rows, prompt_width, total, source_width)`.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.generation.buckets import bucket_shapes

    lengths = tf.constant([5, 40, 7])  # three prompts
    rows, prompt, total, _ = bucket_shapes(lengths, lengths + 30, 256)
    assert (int(rows), int(prompt), int(total)) == (4, 64, 128)
    ```
    """
    round_up = lambda value, multiple: tf.minimum(-(-value // multiple) * multiple, context)
    # The next power of two of the batch size: its bits below the top one set, plus one.
    smeared = tf.shape(lengths)[0] - 1
    for shift in (1, 2, 4, 8, 16):
        smeared = tf.bitwise.bitwise_or(smeared, tf.bitwise.right_shift(smeared, shift))
    total = round_up(tf.reduce_max(row_end), 64)
    prompt_width = tf.constant(1) if seq2seq else round_up(tf.reduce_max(lengths), 32)
    return (
        smeared + 1,
        tf.minimum(prompt_width, total),
        total,
        None if source_width is None else round_up(source_width, 32),
    )


def to_bucket(shapes, ids, lengths, row_end, sampling=(), source=None):
    """The decoding inputs padded to the bucket `shapes` (`bucket_shapes`'s).

    Extra rows copy the first (they finish with it: no extra steps); the
    prompt is cut or padded to the bucket's prompt width, a source to its
    source width.

    Returns:
        `(prompt, lengths, row_end, sampling, source, positions)`: the
        compiled loop's inputs, `positions` `[total]` carrying the total
        length in its shape (`source` is `()` without one).
    """
    rows, prompt_width, total, source_width = shapes
    batch_size = tf.shape(ids)[0]
    rows = tf.concat([tf.range(batch_size), tf.zeros([rows - batch_size], tf.int32)], 0)
    pad = lambda value: tf.gather(value, rows)
    prompt = tf.pad(ids, [[0, 0], [0, tf.maximum(prompt_width - tf.shape(ids)[1], 0)]])
    prompt = pad(prompt[:, :prompt_width])
    if source is not None:
        source = tuple(
            pad(tf.pad(value, [[0, 0], [0, source_width - tf.shape(value)[1]]]))
            for value in source
        )
    return (
        prompt, pad(lengths), pad(row_end), tuple(pad(value) for value in sampling),
        source or (), tf.range(total),
    )


def loop_signature(num_beams, seq2seq):
    """The compiled loop's input signature: `(prompt, lengths, row_end, stop_token_ids,
    positions, alpha, sampling, source)`, every dimension open (its shape is the bucket's)."""
    vector = lambda dtype: tf.TensorSpec([None], dtype)
    matrix = tf.TensorSpec([None, None], tf.int32)
    sampling = (
        (vector(tf.float32), vector(tf.int32), vector(tf.float32), vector(tf.int32))
        if num_beams == 1 else ()
    )
    return [
        matrix, vector(tf.int32), vector(tf.int32), vector(tf.int32), vector(tf.int32),
        tf.TensorSpec([], tf.float32), sampling, (matrix, matrix) if seq2seq else (),
    ]
