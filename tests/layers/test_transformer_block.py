import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.layers import TransformerBlock, gelu_approximate
from tests.harness import check_layer

B, T, S, D, N, F = 2, 5, 4, 8, 2, 16


def weights_of(layer):
    return {w.path.split("/", 1)[1]: w.numpy().astype("float64") for w in layer.weights}


def np_layer_norm(x, w, name, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[f"{name}/gamma"] + w[f"{name}/beta"]


def np_attention(w, prefix, q_in, kv_in, mask, num_heads):
    """softmax(Q K^T / sqrt(d_k)) V, heads the projections' consecutive slices, in float64."""

    def heads(x, part):
        y = x @ w[f"{prefix}_{part}/kernel"] + w[f"{prefix}_{part}/bias"]
        return y.reshape(*y.shape[:2], num_heads, -1)

    q, k, v = heads(q_in, "query"), heads(kv_in, "key"), heads(kv_in, "value")
    scores = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask[:, None], scores, -np.inf)
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    out = np.einsum("bnts,bsnh->btnh", probs, v)
    out = out.reshape(*out.shape[:2], -1) @ w[f"{prefix}_output/kernel"] + w[f"{prefix}_output/bias"]
    return out, probs


def np_block(layer, x, padding_mask=None, encoder=None, encoder_mask=None, activation=None):
    """The whole block in NumPy float64, from the layer's own weights."""
    w = weights_of(layer)
    eps = layer.layer_norm_epsilon
    x = x.astype("float64")
    t = x.shape[1]
    mask = np.ones((x.shape[0], t, t), bool)
    if padding_mask is not None:
        mask &= padding_mask[:, None, :].astype(bool)
    if layer.causal:
        mask &= np.tril(np.ones((t, t), bool))[None]
    activation = activation or (lambda h: 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2))))

    def ffn(h):
        h = activation(h @ w["feedforward_intermediate_dense/kernel"] + w["feedforward_intermediate_dense/bias"])
        return h @ w["feedforward_output_dense/kernel"] + w["feedforward_output_dense/bias"], None

    sublayers = [(
        "self_attention_layer_norm",
        lambda h: np_attention(w, "self_attention", h, h, mask, layer.num_heads),
    )]
    if encoder is not None:
        cross_mask = np.ones((x.shape[0], t, encoder.shape[1]), bool)
        if encoder_mask is not None:
            cross_mask &= encoder_mask[:, None, :].astype(bool)
        sublayers.append((
            "cross_attention_layer_norm",
            lambda h: np_attention(w, "cross_attention", h, encoder.astype("float64"), cross_mask,
                                   layer.num_heads),
        ))
    sublayers.append(("feedforward_layer_norm", ffn))
    scores = []
    for norm, fn in sublayers:
        if layer.normalize_first:
            y, s = fn(np_layer_norm(x, w, norm, eps))
            x = x + y
        else:
            y, s = fn(x)
            x = np_layer_norm(x + y, w, norm, eps)
        scores.append(s)
    return x, scores


def random(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("normalize_first", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_numpy_reference(normalize_first, causal):
    x = random(B, T, D)
    padding_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")
    layer = TransformerBlock(N, F, normalize_first=normalize_first, causal=causal)
    out, scores = layer(x, padding_mask=padding_mask, return_attention_scores=True)
    want, want_scores = np_block(layer, x, padding_mask)
    np.testing.assert_allclose(out, want, atol=2e-5)
    np.testing.assert_allclose(scores, want_scores[0], atol=1e-6)


def test_cross_attention_matches_numpy_reference():
    x, encoder = random(B, T, D), random(B, S, 6, seed=1)
    encoder_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")
    layer = TransformerBlock(N, F, causal=True, normalize_first=True, cross_attention=True,
                             activation=gelu_approximate)
    out, _, cross = layer(x, encoder_outputs=encoder, encoder_padding_mask=encoder_mask,
                          return_attention_scores=True)
    tanh_gelu = lambda h: 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    want, want_scores = np_block(layer, x, None, encoder, encoder_mask, activation=tanh_gelu)
    np.testing.assert_allclose(out, want, atol=2e-5)
    np.testing.assert_allclose(cross, want_scores[1], atol=1e-6)


def test_causality():
    layer = TransformerBlock(N, F, causal=True, normalize_first=True)
    x = random(1, 6, D)
    changed = x.copy()
    changed[0, 3] += 5.0
    a, b = np.asarray(layer(x)), np.asarray(layer(changed))
    np.testing.assert_allclose(a[0, :3], b[0, :3], atol=1e-6)
    assert np.abs(a[0, 3:] - b[0, 3:]).max() > 1e-3


@pytest.mark.parametrize("causal", [False, True])
def test_padding_invariance(causal):
    layer = TransformerBlock(N, F, causal=causal)
    x = random(2, 4, D)
    short = layer(x, padding_mask=np.ones((2, 4), "int32"))
    padded_x = np.concatenate([x, random(2, 3, D, seed=9)], axis=1)
    padded_mask = np.concatenate([np.ones((2, 4)), np.zeros((2, 3))], axis=1).astype("int32")
    long = layer(padded_x, padding_mask=padded_mask)
    np.testing.assert_allclose(np.asarray(long)[:, :4], short, atol=1e-5)


def test_attention_mask_combines_with_padding_mask():
    layer = TransformerBlock(N, F)
    x = random(1, 3, D)
    attention_mask = np.array([[[1, 0, 1], [1, 1, 1], [0, 0, 1]]], "int32")
    padding_mask = np.array([[1, 1, 0]], "int32")
    _, scores = layer(x, padding_mask=padding_mask, attention_mask=attention_mask,
                      return_attention_scores=True)
    allowed = (attention_mask & padding_mask[:, None, :]).astype(bool)
    scores = np.asarray(scores)[0]  # [N, T, S]
    # Queries 0 and 1 have keys they may see; query 2 has none (a degenerate
    # row, whose output is unused).
    for query in (0, 1):
        assert np.all(scores[:, query, ~allowed[0, query]] == 0)
        np.testing.assert_allclose(scores[:, query].sum(-1), 1.0, atol=1e-6)


def test_every_weight_gets_a_gradient():
    layer = TransformerBlock(N, F, cross_attention=True)
    x, encoder = tf.constant(random(B, T, D)), tf.constant(random(B, S, D, seed=3))
    with tf.GradientTape() as tape:
        y = layer(x, encoder_outputs=encoder)
        loss = tf.reduce_sum(y * tf.constant(random(B, T, D, seed=4)))
    grads = tape.gradient(loss, layer.trainable_variables)
    # 2 attentions x 4 projections x (kernel, bias) + 3 LayerNorms x 2 + 2 x 2 FFN.
    assert len(grads) == 26
    for var, grad in zip(layer.trainable_variables, grads):
        assert grad is not None and np.abs(grad.numpy()).max() > 0, var.path


def test_each_kernel_and_its_gradient_are_one_2d_matmul():
    # A kernel multiplied into `[B, T, D]` by a matmul broadcast over the batch gets
    # its gradient as one product per example, summed: 3x the time of a 2-D matmul
    # (benchmarks/RESULTS.md). Every kernel read must feed `MatMul`, and every
    # kernel gradient come out of one.
    layer = TransformerBlock(N, F, cross_attention=True)
    x, encoder = tf.constant(random(B, T, D)), tf.constant(random(B, S, D, seed=3))
    layer(x, encoder_outputs=encoder)
    kernels = [v for v in layer.trainable_variables if v.path.endswith("kernel")]
    assert len(kernels) == 10

    @tf.function
    def gradients(x, encoder):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, encoder_outputs=encoder) ** 2)
        return tape.gradient(loss, kernels)

    traced = gradients.get_concrete_function(x, encoder)
    graph = traced.graph
    handles = {id(handle) for _, handle in graph.captures}
    reads = [op for op in graph.get_operations() if op.type == "ReadVariableOp"
             and id(op.inputs[0]) in handles and len(op.outputs[0].shape) == 2]
    assert len(reads) == 10
    for read in reads:
        users = {c.type for c in read.outputs[0].consumers()} - {"Identity"}
        assert users <= {"MatMul"}, users
    for grad in traced.outputs:
        op = grad.op
        while op.type == "Identity":
            op = op.inputs[0].op
        assert op.type == "MatMul", op.type


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_heads=N, intermediate_dim=F),
        dict(num_heads=N, intermediate_dim=F, normalize_first=True, causal=True,
             activation=gelu_approximate, dropout=0.1),
    ],
)
def test_harness(tmp_path, kwargs):
    check_layer(TransformerBlock, kwargs, random(B, T, D),
                {"padding_mask": np.array([[1] * 5, [1, 1, 1, 0, 0]], "int32")},
                tmp_path=tmp_path, atol=1e-5)


def test_harness_cross_attention_and_scores(tmp_path):
    check_layer(
        TransformerBlock,
        dict(num_heads=N, intermediate_dim=F, cross_attention=True),
        random(B, T, D),
        {"encoder_outputs": random(B, S, 6, seed=2), "return_attention_scores": True},
        tmp_path=tmp_path,
        atol=1e-5,
    )


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="hidden_dim=8, num_heads=3"):
        TransformerBlock(3, F)(random(1, 2, 8))
    with pytest.raises(ValueError, match="num_heads=0"):
        TransformerBlock(0, F)
    # A bool is an int to Python, not a size: True heads used to build a 1-head block.
    with pytest.raises(ValueError, match="`num_heads` must be a positive int. Received: num_heads=True"):
        TransformerBlock(True, F)
    with pytest.raises(ValueError, match="intermediate_dim=True"):
        TransformerBlock(2, True)
    with pytest.raises(ValueError, match="dropout=1.5"):
        TransformerBlock(2, F, dropout=1.5)
    with pytest.raises(ValueError, match="encoder_outputs"):
        TransformerBlock(2, F, cross_attention=True)(random(1, 2, 8))


def test_mixed_precision_keeps_layer_norm_and_softmax_in_float32():
    layer = TransformerBlock(N, F, dtype="mixed_bfloat16")
    out, scores = layer(random(B, T, D), return_attention_scores=True)
    assert out.dtype == "bfloat16"
    assert scores.dtype == "float32"
    assert layer._self_attention_layer_norm.gamma.dtype == "float32"
    assert keras.backend.standardize_dtype(layer._self_attention["query"].kernel.dtype) == "float32"


def test_cached_decoding_equals_the_full_causal_pass():
    block = TransformerBlock(
        num_heads=2, intermediate_dim=16, causal=True, normalize_first=True
    )
    x = np.random.default_rng(0).normal(size=(3, 7, 8)).astype("float32")
    full = np.asarray(block(x))
    cache = (np.zeros((3, 2, 10, 4), "float32"),) * 2  # keys, values [B, N, C, H]: 10 positions
    y, cache = block(x[:, :4], cache=cache, cache_index=0)  # a 4-token prompt
    outputs = [np.asarray(y)]
    for i in range(4, 7):  # then one token at a time
        y, cache = block(x[:, i : i + 1], cache=cache, cache_index=i)
        outputs.append(np.asarray(y))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        TransformerBlock(num_heads=2, intermediate_dim=16)(
            x, cache=cache, cache_index=0
        )


@pytest.mark.parametrize("normalize_first", [False, True])
def test_cached_decoding_with_encoder_attention_equals_the_full_pass(normalize_first):
    # A decoder block: the encoder's keys and values computed once
    # (compute_cross_attention_cache) give what projecting them at every
    # step gives; padded source positions get no attention either way.
    block = TransformerBlock(
        num_heads=2, intermediate_dim=16, causal=True, cross_attention=True,
        normalize_first=normalize_first,
    )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    source = rng.normal(size=(2, 5, 8)).astype("float32")
    source_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "int32")
    full = np.asarray(block(x, encoder_outputs=source, encoder_padding_mask=source_mask))
    cross = block.compute_cross_attention_cache(source)
    assert [tuple(part.shape) for part in cross] == [(2, 2, 5, 4)] * 2  # keys, values [B, N, S, H]
    cache = (np.zeros((2, 2, 6, 4), "float32"),) * 2
    outputs = []
    for i in range(6):
        y, cache = block(
            x[:, i : i + 1], cache=cache, cache_index=i, cross_attention_cache=cross,
            encoder_padding_mask=source_mask,
        )
        outputs.append(np.asarray(y))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
    # Changing a padded source position changes nothing.
    source[0, 3:] = 100.0
    again = np.asarray(block(x, encoder_outputs=source, encoder_padding_mask=source_mask))
    np.testing.assert_allclose(again[0], full[0], atol=1e-5)
    with pytest.raises(ValueError, match="no encoder attention"):
        TransformerBlock(num_heads=2, intermediate_dim=16, causal=True).compute_cross_attention_cache(
            source
        )
