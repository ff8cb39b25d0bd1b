"""`precision=` on every builder: mixed bfloat16 trains on CPU, float16 scales the loss."""

import keras
import numpy as np
import pytest

import keras_llm

TINY = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=32)


def _layer_norm_float64(x, gamma, beta, epsilon):
    x = x.astype("float64")
    mean = x.mean(-1, keepdims=True)
    variance = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def test_mixed_bfloat16_layer_norm_keeps_float32_statistics_and_returns_bfloat16():
    model = keras_llm.build_gpt(vocabulary_size=50, precision="mixed_bfloat16", **TINY)
    layer_norm = model.get_layer("final_layer_norm")
    assert layer_norm.gamma.dtype == "float32" and layer_norm.beta.dtype == "float32"
    # Values whose mean is large next to their spread: a bfloat16 mean and
    # variance lose the spread; float32 statistics keep it.
    rng = np.random.default_rng(0)
    x = keras.ops.cast(100.0 + rng.normal(size=(4, 32)), "bfloat16")
    out = layer_norm(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"  # documented
    expected = _layer_norm_float64(
        keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")),
        layer_norm.gamma.numpy(), layer_norm.beta.numpy(), layer_norm.epsilon,
    )
    got = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
    # bfloat16 keeps 8 significant bits: within one rounding of the float64 result.
    np.testing.assert_allclose(got, expected, rtol=2**-8, atol=2**-8)


def _train_tiny_gpt(precision, x, y):
    keras.utils.set_random_seed(0)
    model = keras_llm.build_gpt(vocabulary_size=50, precision=precision, dropout=0.0, **TINY)
    keras_llm.compile_model(model, "causal_lm", learning_rate=3e-3, warmup_steps=0, total_steps=40)
    history = model.fit(x, y, epochs=30, batch_size=8, verbose=0)
    return model, history.history["loss"]


@pytest.mark.slow
def test_mixed_bfloat16_gpt_trains_on_cpu_without_nans():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(8, 17)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((8, 16), "int32")}
    model, losses = _train_tiny_gpt("mixed_bfloat16", x, ids[:, 1:])
    _, float32_losses = _train_tiny_gpt("float32", x, ids[:, 1:])
    assert keras.backend.standardize_dtype(model(x).dtype) == "bfloat16"
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.7 * losses[0], losses  # memorising 8 sequences
    # ... about as fast as in float32 (same seed, same batches).
    np.testing.assert_allclose(losses[-1], float32_losses[-1], rtol=0.1)
    for weight in model.weights:
        assert weight.dtype == "float32" or "seed" in weight.path, weight.path
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(weight))), weight.path
    # The loss is a float32 computation: it matches a float64 cross-entropy of the
    # bfloat16 logits (to float32 rounding, not bfloat16's).
    logits = keras.ops.convert_to_numpy(keras.ops.cast(model(x), "float32")).astype("float64")
    log_probabilities = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    expected = -np.take_along_axis(log_probabilities, ids[:, 1:, None], -1).mean()
    loss = model.compute_loss(x, ids[:, 1:], model(x))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.slow
def test_mixed_float16_scales_the_loss_and_trains():
    model = keras_llm.build_gpt(vocabulary_size=50, precision="mixed_float16", **TINY)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    ids = np.random.default_rng(0).integers(0, 50, size=(4, 9)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((4, 8), "int32")}
    loss = model.train_on_batch(x, ids[:, 1:], return_dict=True)["loss"]
    assert np.isfinite(loss)
    assert model.optimizer.dynamic_scale.numpy() > 1.0
    plain = keras_llm.build_gpt(vocabulary_size=50, precision="float32", **TINY)
    assert not isinstance(plain.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize(
    "build, output",
    [
        (keras_llm.build_bert, "sequence_output"),
        (keras_llm.build_bert_pretrainer, "mlm_logits"),
        (keras_llm.build_bert_classifier, None),
    ],
)
def test_every_bert_builder_takes_precision(build, output):
    extra = {} if output else {"num_classes": 3}
    model = build(vocabulary_size=60, precision="mixed_bfloat16", **TINY, **extra)
    inputs = {
        "token_ids": np.ones((2, 8), "int32"),
        "segment_ids": np.zeros((2, 8), "int32"),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    if output == "mlm_logits":
        inputs["mask_positions"] = np.ones((2, 2), "int32")
    outputs = model(inputs)
    result = outputs[output] if output else outputs
    assert keras.backend.standardize_dtype(result.dtype) == "bfloat16"


def test_unknown_precision_is_rejected_by_name():
    with pytest.raises(ValueError, match="precision='bf16'.*mixed_bfloat16"):
        keras_llm.build_gpt("gpt_nano", precision="bf16")
