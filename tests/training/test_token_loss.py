import numpy as np

import keras_llm


def test_token_cross_entropy_is_the_weighted_mean_in_float64():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype("float32")
    labels = rng.integers(0, 7, size=(3, 5))
    weights = (rng.random((3, 5)) > 0.4).astype("float32")
    x = logits.astype("float64")
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    token_losses = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    expected = (token_losses * weights).sum() / weights.sum()
    loss = keras_llm.training.TokenCrossEntropy()
    np.testing.assert_allclose(float(loss(labels, logits, sample_weight=weights)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss(labels, logits)), token_losses.mean(), rtol=1e-5)
    assert float(loss(labels, logits, sample_weight=np.zeros_like(weights))) == 0.0
