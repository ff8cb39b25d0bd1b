"""Llama's layers against NumPy float64 references, and through the shared harness."""

import math

import numpy as np
import pytest

from keras_llm.layers import GroupedQueryAttention, LlamaBlock, RMSNorm, RotaryEmbedding
from tests.harness import check_layer

RNG = np.random.default_rng(0)


def _rope_reference(x, theta, scaling, start=0):
    """Hugging Face's formula (`_compute_llama3_parameters`, `rotate_half`), float64."""
    dim = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
    if scaling and scaling["rope_type"] == "linear":
        inv = inv / scaling["factor"]
    elif scaling:
        f, lo, hi, old = (scaling[k] for k in ("factor", "low_freq_factor", "high_freq_factor",
                                               "original_max_position_embeddings"))
        wl = 2 * math.pi / inv
        llama = np.where(wl > old / lo, inv / f, inv)
        s = (old / wl - lo) / (hi - lo)
        smoothed = (1 - s) * llama / f + s * llama
        medium = ~(wl < old / hi) & ~(wl > old / lo)
        inv = np.where(medium, smoothed, llama)
    pos = start + np.arange(x.shape[1])
    emb = np.concatenate([np.outer(pos, inv)] * 2, -1)[None, :, None, :]
    half = dim // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * np.cos(emb) + rotated * np.sin(emb)


@pytest.mark.parametrize("scaling", [
    None,
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 16},
])
def test_rotary_embedding_matches_hugging_face_formula(scaling):
    x = RNG.normal(size=(2, 7, 3, 32))
    layer = RotaryEmbedding(rope_theta=500.0, rope_scaling=scaling)
    got = np.asarray(layer(x.astype("float32"), start_index=5))
    np.testing.assert_allclose(got, _rope_reference(x, 500.0, scaling, start=5), atol=2e-5)


def test_rotary_embedding_refuses_other_scalings_by_name():
    with pytest.raises(ValueError, match="rope_type='yarn' is not supported"):
        RotaryEmbedding(rope_scaling={"rope_type": "yarn", "factor": 2.0})


def test_rms_norm_matches_numpy():
    x = RNG.normal(size=(2, 3, 8)) * 5
    layer = RMSNorm(epsilon=1e-5)
    got = np.asarray(layer(x.astype("float32")))
    np.testing.assert_allclose(got, x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5), atol=1e-5)


def _gqa_reference(layer, x, mask, probabilities=False):
    """Attention with repeated key/value heads (Hugging Face's `repeat_kv`), float64.

    Returns the outputs, or `(outputs, probabilities [B, N, T, S])` with `probabilities`.
    """
    wq, wk, wv, wo = (np.asarray(w, np.float64) for w in layer.get_weights())
    n, k, h = layer.num_heads, layer.num_key_value_heads, layer.head_dim
    b, t, _ = x.shape
    rope = lambda y: _rope_reference(y, layer.rope_theta, None)  # noqa: E731
    q = rope((x @ wq).reshape(b, t, n, h))
    key = np.repeat(rope((x @ wk).reshape(b, t, k, h)), n // k, axis=2)
    v = np.repeat((x @ wv).reshape(b, t, k, h), n // k, axis=2)
    s = np.einsum("btnh,bsnh->bnts", q, key) / math.sqrt(h)
    s = np.where(mask[:, None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    outputs = np.einsum("bnts,bsnh->btnh", p, v).reshape(b, t, n * h) @ wo
    return (outputs, p) if probabilities else outputs


def test_grouped_query_attention_matches_repeated_heads():
    x = RNG.normal(size=(2, 5, 16))
    padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")
    layer = GroupedQueryAttention(num_heads=4, num_key_value_heads=2, head_dim=6)
    got = np.asarray(layer(x.astype("float32"), padding_mask=padding))
    mask = np.tril(np.ones((5, 5), bool))[None] & padding[:, None, :].astype(bool)
    want = _gqa_reference(layer, x, mask)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    np.testing.assert_allclose(got[1, :3], want[1, :3], atol=1e-5)  # padded outputs: unused


def test_grouped_query_attention_scores_are_the_repeated_heads_probabilities():
    x = RNG.normal(size=(2, 5, 16))
    padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")
    layer = GroupedQueryAttention(num_heads=6, num_key_value_heads=2, head_dim=4)
    got, scores = layer(x.astype("float32"), padding_mask=padding, return_attention_scores=True)
    mask = np.tril(np.ones((5, 5), bool))[None] & padding[:, None, :].astype(bool)
    want, want_scores = _gqa_reference(layer, x, mask, probabilities=True)
    assert scores.shape == (2, 6, 5, 5) and scores.dtype == "float32"
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    # The outputs are those of the call without scores.
    np.testing.assert_allclose(got, layer(x.astype("float32"), padding_mask=padding), atol=1e-6)
    with pytest.raises(ValueError, match="return_attention_scores=True"):
        layer(x[:, :1].astype("float32"), cache=(np.zeros((2, 2, 4, 4), "float32"),) * 2,
              cache_index=0, return_attention_scores=True)


def test_llama_block_returns_its_attention_scores():
    x = RNG.normal(size=(1, 4, 16))
    block = LlamaBlock(num_heads=4, num_key_value_heads=2, intermediate_dim=24)
    outputs, scores = block(x.astype("float32"), return_attention_scores=True)
    np.testing.assert_allclose(outputs, block(x.astype("float32")), atol=1e-6)
    normed = x / np.sqrt((x**2).mean(-1, keepdims=True) + block.layer_norm_epsilon)  # gamma = 1
    _, want = _gqa_reference(block._self_attention, normed, np.tril(np.ones((1, 4, 4), bool)),
                             probabilities=True)
    np.testing.assert_allclose(scores, want, atol=1e-5)


def test_grouped_query_attention_cache_equals_recomputing():
    x = RNG.normal(size=(1, 6, 16)).astype("float32")
    layer = GroupedQueryAttention(num_heads=4, num_key_value_heads=1)
    full = np.asarray(layer(x))
    cache = (np.zeros((1, 1, 8, 4), "float32"),) * 2
    first, cache = layer(x[:, :4], cache=cache, cache_index=0)
    assert cache[0].shape == (1, 1, 8, 4)  # key/value heads only
    steps = [first]
    for i in (4, 5):
        out, cache = layer(x[:, i:i + 1], cache=cache, cache_index=i)
        steps.append(out)
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-5)


@pytest.mark.parametrize("cls,kwargs", [
    (RMSNorm, dict(epsilon=1e-5)),
    (RotaryEmbedding, dict(rope_theta=1000.0, rope_scaling={"rope_type": "linear", "factor": 2.0})),
    (LlamaBlock, dict(num_heads=4, num_key_value_heads=2, intermediate_dim=24,
                      attention_bias=True)),
])
def test_layer_harness(cls, kwargs, tmp_path):
    shape = (2, 5, 2, 8) if cls is RotaryEmbedding else (2, 5, 16)
    check_layer(cls, kwargs, RNG.normal(size=shape).astype("float32"), tmp_path=tmp_path)
