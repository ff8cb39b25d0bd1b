import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.training.token_loss import TokenCrossEntropy


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


def test_label_smoothing_matches_keras_categorical_cross_entropy():
    # Keras's CategoricalCrossentropy(label_smoothing=e) on one-hot labels is
    # the reference: target (1 - e) one_hot + e / V, weighted mean over tokens.
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    labels = rng.integers(0, 7, (2, 3))
    weights = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], "float32")
    reference = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1, reduction=None
    )(np.eye(7, dtype="float32")[labels], logits)
    expected = (np.asarray(reference) * weights).sum() / weights.sum()
    got = TokenCrossEntropy(label_smoothing=0.1)(labels, logits, sample_weight=weights)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert TokenCrossEntropy.from_config(TokenCrossEntropy(0.1).get_config()).label_smoothing == 0.1
    with pytest.raises(ValueError, match=r"`label_smoothing` must be a number in \[0, 1\)"):
        TokenCrossEntropy(label_smoothing=-0.1)


@pytest.mark.parametrize("label", [7, -1])
def test_labels_outside_the_logits_are_named(label):
    logits = np.zeros((1, 3, 7), "float32")
    labels = np.array([[0, label, 6]])
    with pytest.raises(ValueError, match=(
        rf"`labels` must be labels in \[0, 7\) \(the classes of the logits\)\. "
        rf"Received: labels holding 1 label\(s\) outside it: {label}"
    )):
        TokenCrossEntropy()(labels, logits)
    graph = tf.function(lambda y, x: TokenCrossEntropy()(y, x))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"`labels` must be labels in \[0, 7\).*: {label}"):
        graph(tf.constant(labels), tf.constant(logits))
    # In range: ln 7 per token, uniform logits.
    np.testing.assert_allclose(float(graph(tf.constant([[0, 3, 6]]), tf.constant(logits))), np.log(7), rtol=1e-6)
