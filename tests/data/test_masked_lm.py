import numpy as np
import pytest
import tensorflow as tf

import keras_llm

V, MASK, CLS, SEP, PAD = 1000, 4, 2, 3, 0


def batch(rng, rows=256, length=64):
    ids = rng.integers(5, V, size=(rows, length)).astype("int32")
    lengths = rng.integers(10, length + 1, size=rows)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids[:, 0] = CLS
    ids[np.arange(rows), lengths - 1] = SEP
    ids[mask == 0] = PAD
    return ids, mask


def run(ids, mask, seed, **kwargs):
    out = keras_llm.data.mask_tokens(
        ids, mask, seed, vocabulary_size=V, mask_token_id=MASK,
        special_token_ids=[CLS, SEP], max_predictions=12, **kwargs,
    )
    return {k: v.numpy() for k, v in out.items()}


def test_chooses_the_bert_count_of_real_non_special_tokens():
    ids, mask = batch(np.random.default_rng(0))
    out = run(ids, mask, (1, 2))
    n = mask.sum(1) - 2  # minus [CLS] and [SEP]
    expected = np.minimum(np.maximum(np.round(0.15 * n), 1), 12)
    np.testing.assert_array_equal(out["mask_weights"].sum(1), expected)
    for row in range(len(ids)):
        positions = out["mask_positions"][row][out["mask_weights"][row] > 0]
        assert np.all(np.diff(positions) > 0)  # sorted, distinct
        assert np.all(mask[row, positions] == 1)
        assert not np.isin(ids[row, positions], [CLS, SEP]).any()
        np.testing.assert_array_equal(out["mask_ids"][row][: len(positions)], ids[row, positions])
        untouched = np.ones(ids.shape[1], bool)
        untouched[positions] = False
        np.testing.assert_array_equal(out["token_ids"][row, untouched], ids[row, untouched])


def test_replacement_proportions_are_80_10_10():
    """Over ~60k predictions the shares are within 4 standard errors of 0.8/0.1/0.1."""
    rng = np.random.default_rng(1)
    mask_share, random_share, kept_share, total = 0, 0, 0, 0
    for step in range(30):
        ids, mask = batch(rng)
        out = run(ids, mask, (7, step))
        w = out["mask_weights"] > 0
        new = np.take_along_axis(out["token_ids"], out["mask_positions"], 1)[w]
        old = out["mask_ids"][w]
        mask_share += np.sum(new == MASK)
        kept_share += np.sum((new == old) & (new != MASK))
        random_share += np.sum((new != old) & (new != MASK))
        total += w.sum()
    # A random replacement can draw the original id (1 in V) or [MASK]: negligible here.
    for share, p in ((mask_share, 0.8), (random_share, 0.1 * (1 - 1 / V)), (kept_share, 0.1)):
        assert abs(share / total - p) < 4 * np.sqrt(p * (1 - p) / total), (share / total, p)


def test_selection_is_uniform_over_positions():
    ids, mask = batch(np.random.default_rng(2), rows=2000, length=20)
    mask[:] = 1
    ids[:, 0], ids[:, -1] = 5, 6  # no specials: every position is a candidate
    out = run(ids, mask, (3, 4))
    counts = np.bincount(out["mask_positions"][out["mask_weights"] > 0], minlength=20)
    expected = counts.sum() / 20
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 43.8  # 99.9th percentile of chi-squared with 19 degrees of freedom


def test_deterministic_given_seed_and_different_across_seeds():
    ids, mask = batch(np.random.default_rng(3), rows=8)
    a, b, c = run(ids, mask, (5, 6)), run(ids, mask, (5, 6)), run(ids, mask, (5, 7))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["mask_positions"], c["mask_positions"])


def test_in_tf_data_with_per_batch_seeds():
    ids, mask = batch(np.random.default_rng(4), rows=16)
    ds = tf.data.Dataset.from_tensor_slices((ids, mask)).batch(8).enumerate().map(
        lambda i, b: keras_llm.data.mask_tokens(
            b[0], b[1], tf.stack([tf.constant(9, tf.int64), i]), vocabulary_size=V,
            mask_token_id=MASK, special_token_ids=[CLS, SEP], max_predictions=12)
    )
    first = [x["mask_positions"].numpy() for x in ds]
    second = [x["mask_positions"].numpy() for x in ds]
    np.testing.assert_array_equal(first, second)


def test_bad_rates_are_named():
    ids, mask = batch(np.random.default_rng(5), rows=2)
    with pytest.raises(ValueError, match="mask_rate=0"):
        run(ids, mask, (0, 0), mask_rate=0)
    with pytest.raises(ValueError, match="random_token_rate=0.5"):
        run(ids, mask, (0, 0), mask_token_rate=0.8, random_token_rate=0.5)
