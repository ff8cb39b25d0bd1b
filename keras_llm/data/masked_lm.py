"""BERT's masked-LM dynamic masking, as a deterministic `tf.data`-friendly function."""

import tensorflow as tf


def mask_tokens(
    token_ids,
    padding_mask,
    seed,
    *,
    vocabulary_size,
    mask_token_id,
    special_token_ids=(),
    max_predictions=20,
    mask_rate=0.15,
    mask_token_rate=0.8,
    random_token_rate=0.1,
):
    """Chooses and corrupts masked-LM targets in a batch, as BERT does.

    In each row, `k = min(max_predictions, max(1, round(mask_rate * n)))`
    of the `n` real tokens that are not special are chosen uniformly at
    random (BERT's `create_pretraining_data.py` picks an exact count too).
    Of the chosen tokens, `mask_token_rate` (80%) become `mask_token_id`,
    `random_token_rate` (10%) a uniformly random id, and the rest (10%)
    stay unchanged. Randomness comes from stateless ops keyed on `seed`, so
    the same seed gives the same masks on any machine; give each batch its
    own seed (e.g. `(base_seed, batch_index)` from `Dataset.enumerate`) so
    that masks differ between batches and epochs ("dynamic" masking,
    RoBERTa style).

    Args:
        token_ids: int `[batch, length]`.
        padding_mask: `[batch, length]`, 1 for real tokens.
        seed: A shape-`[2]` int tensor or pair.
        vocabulary_size: Random replacements are drawn from `[0, vocabulary_size)`.
        mask_token_id: The id of `[MASK]`.
        special_token_ids: Ids never chosen (`[CLS]`, `[SEP]`, ...).
        max_predictions: Predictions per row: the static width of the outputs.
        mask_rate, mask_token_rate, random_token_rate: The rates above.

    Returns:
        A dict: `token_ids` (corrupted), and `mask_positions`, `mask_ids`
        (the original ids there) and `mask_weights` (1.0 for real
        predictions, 0.0 for padding slots), each `[batch, max_predictions]`,
        positions in increasing order; the inputs and targets of
        `build_bert_pretrainer`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    ids = np.array([[2, 10, 11, 12, 13, 14, 15, 16, 3, 0]], "int32")
    out = keras_llm.data.mask_tokens(
        ids, ids > 0, seed=(0, 1), vocabulary_size=30, mask_token_id=4,
        special_token_ids=[2, 3], max_predictions=3,
    )
    positions = out["mask_positions"].numpy()[0]
    assert out["mask_weights"].numpy().tolist() == [[1.0, 0.0, 0.0]]  # 15% of 7 -> 1
    assert 1 <= positions[0] <= 7
    assert out["mask_ids"].numpy()[0, 0] == ids[0, positions[0]]
    ```
    """
    if not 0.0 < mask_rate <= 1.0:
        raise ValueError(f"`mask_rate` must be in (0, 1]. Received: mask_rate={mask_rate}")
    if mask_token_rate < 0 or random_token_rate < 0 or mask_token_rate + random_token_rate > 1:
        raise ValueError(
            "`mask_token_rate` and `random_token_rate` must be non-negative and sum to at "
            f"most 1. Received: mask_token_rate={mask_token_rate}, "
            f"random_token_rate={random_token_rate}"
        )
    if not isinstance(max_predictions, int) or max_predictions <= 0:
        raise ValueError(
            f"`max_predictions` must be a positive int. Received: max_predictions={max_predictions!r}"
        )
    token_ids = tf.convert_to_tensor(token_ids, tf.int32)  # [B, T]
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    candidates = tf.cast(padding_mask, tf.bool)
    for special in special_token_ids:
        candidates = tf.logical_and(candidates, tf.not_equal(token_ids, special))
    count = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)  # [B]
    wanted = tf.cast(tf.round(mask_rate * tf.cast(count, tf.float32)), tf.int32)
    wanted = tf.minimum(tf.minimum(tf.maximum(wanted, 1), count), max_predictions)

    # Top-k of random scores over the candidates is a uniform random subset.
    scores = tf.where(candidates, tf.random.stateless_uniform([batch, length], seed), -1.0)
    width = tf.minimum(max_predictions, length)
    _, chosen = tf.math.top_k(scores, k=width)  # [B, width]
    valid = tf.range(width)[None, :] < wanted[:, None]
    positions = tf.sort(tf.where(valid, chosen, length), axis=1)  # invalid slots last
    valid = positions < length
    positions = tf.where(valid, positions, 0)
    pad = max_predictions - width
    positions = tf.pad(positions, [[0, 0], [0, pad]])
    valid = tf.pad(valid, [[0, 0], [0, pad]])

    original = tf.gather(token_ids, positions, batch_dims=1)  # [B, P]
    choice = tf.random.stateless_uniform(tf.shape(positions), seed + [0, 1])
    random_ids = tf.random.stateless_uniform(
        tf.shape(positions), seed + [0, 2], minval=0, maxval=vocabulary_size, dtype=tf.int32
    )
    replacement = tf.where(
        choice < mask_token_rate,
        mask_token_id,
        tf.where(choice < mask_token_rate + random_token_rate, random_ids, original),
    )
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(positions))
    indices = tf.boolean_mask(tf.stack([rows, positions], axis=-1), valid)
    corrupted = tf.tensor_scatter_nd_update(token_ids, indices, tf.boolean_mask(replacement, valid))
    return {
        "token_ids": corrupted,
        "mask_positions": positions,
        "mask_ids": tf.where(valid, original, 0),
        "mask_weights": tf.cast(valid, tf.float32),
    }
