"""Causal-LM windows: a token stream cut into (inputs, next-token labels)."""

import numpy as np
import tensorflow as tf


def causal_lm_dataset(
    token_ids,
    sequence_length,
    batch_size,
    shuffle=True,
    seed=0,
    repeat=False,
    drop_remainder=True,
):
    """A `tf.data.Dataset` of next-token training batches from one token stream.

    The stream (documents already joined with an end-of-text id) is cut into
    consecutive windows of `sequence_length + 1` tokens that overlap by one;
    each gives inputs `window[:-1]` and labels `window[1:]`. Every position
    of such a window is real text, so the padding mask and the sample weights
    are all ones. Order is deterministic given `seed`.

    Args:
        token_ids: A 1-D int array, the whole stream.
        sequence_length: Tokens per training sequence.
        batch_size: Sequences per batch.
        shuffle: Whether to shuffle the windows (each epoch, from `seed`).
        seed: The shuffling seed.
        repeat: Whether to repeat forever.
        drop_remainder: Whether to drop a last, smaller batch.

    Returns:
        A dataset of `({"token_ids", "padding_mask"}, labels, sample_weight)`,
        each `(batch_size, sequence_length)`, as `build_gpt`'s model expects.

    Example:

    ```python
    import numpy as np
    import keras_llm

    ds = keras_llm.data.causal_lm_dataset(np.arange(100), 9, batch_size=2, shuffle=False)
    x, y, w = next(iter(ds))
    assert x["token_ids"][0].numpy().tolist() == list(range(9))
    assert y[0].numpy().tolist() == list(range(1, 10))
    ```
    """
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 1 or not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(
            "`token_ids` must be a 1-D array of ints. "
            f"Received: shape={token_ids.shape}, dtype={token_ids.dtype}"
        )
    if sequence_length <= 0 or batch_size <= 0:
        raise ValueError(
            "`sequence_length` and `batch_size` must be positive. Received: "
            f"sequence_length={sequence_length}, batch_size={batch_size}"
        )
    num_windows = (len(token_ids) - 1) // sequence_length
    if num_windows < (batch_size if drop_remainder else 1):
        raise ValueError(
            f"{len(token_ids)} tokens make {num_windows} windows of "
            f"sequence_length={sequence_length}, fewer than one batch of "
            f"batch_size={batch_size}."
        )
    starts = np.arange(num_windows) * sequence_length
    windows = token_ids[starts[:, None] + np.arange(sequence_length + 1)].astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(windows)
    if shuffle:
        dataset = dataset.shuffle(num_windows, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def split(window):
        inputs = window[:, :-1]
        ones = tf.ones_like(inputs)
        return (
            {"token_ids": inputs, "padding_mask": ones},
            window[:, 1:],
            tf.cast(ones, tf.float32),
        )

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
