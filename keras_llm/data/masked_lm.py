"""BERT's masked-LM dynamic masking, as a deterministic `tf.data`-friendly function."""

import math

import tensorflow as tf

from keras_llm.data._pipeline import (
    as_dataset,
    check_positive,
    column,
    shuffled,
    special_ids,
    with_batch_seeds,
)


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


def masked_lm_dataset(
    texts,
    tokenizer,
    sequence_length,
    batch_size,
    *,
    seed=0,
    shuffle=True,
    shuffle_buffer=10_000,
    repeat=False,
    drop_remainder=True,
    max_predictions=None,
    mask_rate=0.15,
    cls_token_id=None,
    sep_token_id=None,
    pad_token_id=None,
    mask_token_id=None,
):
    """BERT pre-training batches: sentence pairs, next-sentence labels, dynamic masks.

    Consecutive elements of `texts` are consecutive segments (sentences or
    lines, as in BERT's one-sentence-per-line pre-training files). Each
    segment A is paired with the segment that follows it (label 0) or, with
    probability 1/2, with a random segment drawn from a shuffle buffer of
    `shuffle_buffer` segments of the whole corpus (label 1, "is random
    next"). The pair becomes `[CLS] A [SEP] B [SEP]` with segment ids 0 then
    1, truncated longest-first to `sequence_length` (BERT's
    `truncate_seq_pair`), padded to `sequence_length` (static shapes, as TPUs
    want), and masked by `mask_tokens` with a fresh seed per batch and epoch.
    Everything is deterministic given `seed`.

    Args:
        texts: A dataset of strings (`keras_llm.data.load_texts`) or a list.
        tokenizer: A WordPiece or SentencePiece tokenizer.
        sequence_length: Tokens per example, specials included.
        batch_size: Examples per batch.
        seed: Seed of the shuffles, the pairing and the masks.
        shuffle: Whether to shuffle the pairs.
        shuffle_buffer: Elements held by each shuffle buffer.
        repeat: Whether to repeat forever.
        drop_remainder: Whether to drop a last, smaller batch.
        max_predictions: Masked positions per example; defaults to
            `ceil(mask_rate * sequence_length)` (20 for 128, BERT's choice).
        mask_rate: The share of real, non-special tokens that are predicted.
        cls_token_id, sep_token_id, pad_token_id, mask_token_id: Default to
            the tokenizer's attributes of the same names.

    Returns:
        A dataset of `(x, y, sample_weight)` for `build_bert_pretrainer`: `x`
        has `token_ids`, `segment_ids`, `padding_mask` `[B, sequence_length]`
        and `mask_positions` `[B, max_predictions]`; `y` has `mlm_logits`
        (the original ids at the masked positions) and `nsp_logits` (1 when
        B is random); `sample_weight` has `mlm_logits` (0 for unused
        prediction slots) and `nsp_logits` (ones).

    Example:

    ```python
    import keras_llm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    ds = keras_llm.data.masked_lm_dataset(["a b", "c d", "a c", "b d"], tokenizer, 8, batch_size=3)
    x, y, w = next(iter(ds))
    assert x["token_ids"].shape == (3, 8) and x["mask_positions"].shape == (3, 2)
    assert set(y["nsp_logits"].numpy().tolist()) <= {0, 1}
    ```
    """
    check_positive(sequence_length=sequence_length, batch_size=batch_size)
    if sequence_length < 4:
        raise ValueError(
            "`sequence_length` must be at least 4 ([CLS] A [SEP] B [SEP]). "
            f"Received: sequence_length={sequence_length}"
        )
    cls_id, sep_id, pad_id, mask_id = special_ids(
        tokenizer, cls_token_id=cls_token_id, sep_token_id=sep_token_id,
        pad_token_id=pad_token_id, mask_token_id=mask_token_id,
    )
    if max_predictions is None:
        max_predictions = math.ceil(mask_rate * sequence_length)
    texts = as_dataset(texts)
    # (segment, the segment after it, a random segment), per element.
    # Shuffle, then repeat: filling the buffer never reads more than one pass.
    partners = texts.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    pairs = tf.data.Dataset.zip(texts, texts.skip(1), partners)
    pairs = shuffled(pairs, shuffle, shuffle_buffer, seed + 1, repeat)
    budget = sequence_length - 3

    def build(triples, seed_pair):
        first, following, random_text = triples
        size = tf.shape(first)[0]
        is_random = tf.random.stateless_uniform([size], seed_pair) < 0.5
        second = tf.where(is_random, random_text, following)
        a = tf.cast(tokenizer(first), tf.int32)  # [B, None]
        b = tf.cast(tokenizer(second), tf.int32)
        # truncate_seq_pair, longest first (ties trim B), in closed form.
        len_a = tf.cast(a.row_lengths(), tf.int32)
        len_b = tf.cast(b.row_lengths(), tf.int32)
        keep_b = tf.minimum(len_b, tf.maximum(budget // 2, budget - len_a))
        keep_a = tf.minimum(len_a, budget - keep_b)
        a = tf.ragged.boolean_mask(a, tf.ragged.range(len_a) < keep_a[:, None])
        b = tf.ragged.boolean_mask(b, tf.ragged.range(len_b) < keep_b[:, None])
        token_ids = tf.concat(
            [column(size, cls_id), a, column(size, sep_id), b, column(size, sep_id)], axis=1
        )
        segment_ids = tf.concat(
            [column(size, 0), tf.zeros_like(a), column(size, 0), tf.ones_like(b), column(size, 1)],
            axis=1,
        )
        shape = [size, sequence_length]
        padding_mask = tf.ones_like(token_ids).to_tensor(0, shape=shape)
        token_ids = token_ids.to_tensor(pad_id, shape=shape)
        masked = mask_tokens(
            token_ids,
            padding_mask,
            seed_pair + [0, 7],
            vocabulary_size=tokenizer.vocabulary_size,
            mask_token_id=mask_id,
            special_token_ids=(cls_id, sep_id, pad_id),
            max_predictions=max_predictions,
            mask_rate=mask_rate,
        )
        x = {
            "token_ids": masked["token_ids"],
            "segment_ids": segment_ids.to_tensor(0, shape=shape),
            "padding_mask": padding_mask,
            "mask_positions": masked["mask_positions"],
        }
        y = {"mlm_logits": masked["mask_ids"], "nsp_logits": tf.cast(is_random, tf.int32)}
        w = {"mlm_logits": masked["mask_weights"], "nsp_logits": tf.ones([size], tf.float32)}
        return x, y, w

    batches = with_batch_seeds(pairs.batch(batch_size, drop_remainder=drop_remainder), seed)
    return batches.map(build, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
