"""keras_llm.training.distill: its loss against a float64 formula, the frozen teacher, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.training import distillation
from keras_llm.training.distillation import distill

VOCABULARY = 40


def classifier(num_layers=1, hidden_dim=8, num_classes=3, seed=0, vocabulary_size=VOCABULARY):
    keras.utils.set_random_seed(seed)
    return keras_llm.build_bert_classifier(
        num_layers=num_layers, num_heads=2, hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim,
        vocabulary_size=vocabulary_size, max_sequence_length=8, num_classes=num_classes,
        dropout=0.0,
    )


def gpt(num_layers=1, hidden_dim=8, vocabulary_size=VOCABULARY, seed=0):
    keras.utils.set_random_seed(seed)
    return keras_llm.build_gpt(
        "gpt_nano", vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=2,
        hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim, max_sequence_length=8, dropout=0.0,
    )


def bert_inputs(batch=4, length=6, seed=0):
    ids = np.random.default_rng(seed).integers(1, VOCABULARY, (batch, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[0, 4:] = 0  # a padded example
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def log_softmax64(logits):
    x = np.asarray(logits, "float64")
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def hinton64(teacher_logits, student_logits, labels, temperature, alpha, weights=None):
    """alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE(labels, s), float64."""
    log_p = log_softmax64(np.asarray(teacher_logits, "float64") / temperature)
    log_q = log_softmax64(np.asarray(student_logits, "float64") / temperature)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    ce = -np.take_along_axis(log_softmax64(student_logits), labels[..., None], -1)[..., 0]
    weights = np.ones_like(kl) if weights is None else np.asarray(weights, "float64")
    mean = lambda v: (v * weights).sum() / weights.sum()  # noqa: E731
    return alpha * temperature**2 * mean(kl) + (1 - alpha) * mean(ce), weights


def make_distiller(teacher, student, **settings):
    return distillation._distiller(teacher, student, jit_compile=False, **settings)


def test_classifier_loss_is_hintons_in_float64():
    teacher, student = classifier(num_layers=2, seed=1), classifier(seed=2)
    x = bert_inputs()
    labels = np.array([0, 2, 1, 2])
    # Student logits far from the teacher's, so that both terms matter.
    student_logits = np.random.default_rng(3).normal(scale=3.0, size=(4, 3)).astype("float32")
    distiller = make_distiller(teacher, student, temperature=2.5, alpha=0.3)
    got = distiller.compute_loss(x, labels, y_pred=student_logits, training=False)
    teacher_logits = teacher.predict_on_batch(x)
    expected, _ = hinton64(teacher_logits, student_logits, labels, 2.5, 0.3)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_causal_lm_loss_masks_padding_and_adds_the_hidden_state_term():
    teacher, student = gpt(num_layers=2, seed=1), gpt(seed=2)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCABULARY, (2, 6)).astype("int32")
    padding_mask = np.ones_like(ids)
    padding_mask[1, 3:] = 0
    weights = padding_mask.astype("float32")
    weights[0, 0] = 0.0  # a sample weight that is not the padding mask: the logits use it
    labels = rng.integers(0, VOCABULARY, (2, 6))
    x = {"token_ids": ids, "padding_mask": padding_mask}
    student_logits = rng.normal(scale=3.0, size=(2, 6, VOCABULARY)).astype("float32")
    distiller = make_distiller(teacher, student, temperature=1.5, alpha=0.6,
                               feature_layers="last", feature_weight=0.5)
    got = float(distiller.compute_loss(x, labels, y_pred=student_logits, sample_weight=weights,
                                       training=False))

    expected, _ = hinton64(teacher.predict_on_batch(x), student_logits, labels, 1.5, 0.6, weights)
    hidden = [
        keras.Model(m.inputs, m.get_layer("transformer_layer_" + str(n)).output).predict_on_batch(x)
        for m, n in ((teacher, 1), (student, 0))
    ]
    squared = ((hidden[0].astype("float64") - hidden[1]) ** 2).mean(-1)
    mse = (squared * padding_mask).sum() / padding_mask.sum()
    np.testing.assert_allclose(got, expected + 0.6 * 0.5 * mse, rtol=1e-5)

    # What a padded position holds does not count.
    student_logits[1, 4:] = 100.0
    again = float(distiller.compute_loss(x, labels, y_pred=student_logits, sample_weight=weights,
                                         training=False))
    np.testing.assert_allclose(again, got, rtol=1e-6)


@pytest.mark.slow  # trains (about 30 s idle, most of it tracing the distiller's step)
def test_fit_trains_the_student_towards_a_frozen_teacher():
    teacher, student = classifier(num_layers=2, seed=1), classifier(seed=2)
    head = [layer for layer in teacher.layers if isinstance(layer, keras.layers.Dense)][-1]
    # A confident teacher: a target far from the untrained student's uniform one.
    head.kernel.assign(np.random.default_rng(5).normal(scale=30.0, size=head.kernel.shape))
    teacher_weights = [w.numpy().copy() for w in teacher.weights]
    student_weights = [w.numpy().copy() for w in student.weights]
    x = bert_inputs(batch=8, seed=4)
    labels = np.argmax(teacher.predict_on_batch(x), -1)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(8)

    trained, history = distill(teacher, student, dataset, temperature=2.0, alpha=0.9, epochs=12,
                               learning_rate=1e-2, verbose=0)

    assert trained is student
    assert int(student.optimizer.iterations) == 12  # compiled with the optimizer that trained it
    losses = history.history["distillation_loss"]
    # Down at every step after the first (warm-up: learning rate 0), by 15% in all.
    assert all(later < earlier for earlier, later in zip(losses[1:], losses[2:])), losses
    assert losses[-1] < 0.85 * losses[0], losses
    assert {"student_loss", "total_loss", "accuracy"} <= set(history.history)
    for before, after in zip(teacher_weights, teacher.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert teacher.trainable  # frozen during fit only
    changed = [not np.array_equal(b, a.numpy()) for b, a in zip(student_weights, student.weights)]
    assert sum(changed) > len(changed) // 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(alpha=1.5), r"`alpha` must be a number in \[0, 1\]. Received: alpha=1.5"),
        (dict(alpha=-0.1), r"Received: alpha=-0.1"),
        (dict(temperature=0), r"`temperature` must be a positive number. Received: temperature=0"),
        (dict(temperature=-2.0), r"Received: temperature=-2.0"),
        (dict(feature_layers=[("transformer_layer_1", "transformer_layer_0")]),
         r"teacher layer 'transformer_layer_1' gives width 16, student layer "
         r"'transformer_layer_0' width 8"),
        (dict(feature_layers=[("transformer_layer_9", "transformer_layer_0")]),
         r"`teacher` \('bert_classifier'\) has no layer 'transformer_layer_9'"),
    ],
)
def test_bad_settings_are_refused_before_training(arguments, message):
    teacher, student = classifier(num_layers=2, hidden_dim=16), classifier()
    before = [w.numpy().copy() for w in student.weights]
    with pytest.raises(ValueError, match=message):
        distill(teacher, student, None, **arguments)
    assert teacher.trainable
    for b, a in zip(before, student.weights):
        np.testing.assert_array_equal(b, a.numpy())


def test_models_that_cannot_be_distilled_are_refused():
    with pytest.raises(ValueError, match=r"same classes. Received: teacher with 3 classes, "
                                         r"student with 2"):
        distill(classifier(), classifier(num_classes=2), None)
    with pytest.raises(ValueError, match=r"same token ids.*teacher vocabulary_size=40, "
                                         r"student vocabulary_size=41"):
        distill(gpt(), gpt(vocabulary_size=41), None)
    with pytest.raises(ValueError, match=r"same task. Received: teacher='bert_classifier' \(classifier\), "
                                         r"student='gpt' \(causal_lm\)"):
        distill(classifier(), gpt(), None)
    encoder = keras_llm.build_bert("bert_tiny", num_layers=1, vocabulary_size=VOCABULARY)
    with pytest.raises(ValueError, match=r"`teacher` must be a classifier, a tagger or a causal "
                                         r"LM.*task='encoder'"):
        distill(encoder, classifier(), None)
