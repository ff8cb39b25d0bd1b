import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.training import WarmupLinearDecay, default_jit_compile, make_optimizer


def reference_lr(step, peak, warmup, total, floor):
    if step < warmup:
        return peak * step / warmup
    progress = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    return peak * (1 - (1 - floor) * progress)


def test_schedule_matches_formula():
    schedule = WarmupLinearDecay(peak=2e-3, warmup_steps=20, total_steps=220, final_fraction=0.1)
    for step in [0, 1, 10, 19, 20, 21, 100, 219, 220, 221, 10_000]:
        assert float(schedule(step)) == pytest.approx(reference_lr(step, 2e-3, 20, 220, 0.1), rel=1e-5, abs=1e-12)


def test_schedule_rejects_bad_steps():
    with pytest.raises(ValueError, match="warmup_steps=10, total_steps=10"):
        WarmupLinearDecay(1e-3, 10, 10)


def test_weight_decay_skips_layer_norm_biases_and_embeddings():
    """One AdamW step with zero gradients changes only the decayed weights."""
    model = keras_llm.build_gpt(vocabulary_size=7, num_layers=1, num_heads=1, hidden_dim=4,
                                intermediate_dim=8, max_sequence_length=4)
    optimizer = make_optimizer(1.0, warmup_steps=0, total_steps=10, weight_decay=0.5)
    for var in model.trainable_variables:  # make every weight non-zero
        var.assign(np.full(var.shape, 0.5, "float32"))
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in model.trainable_variables])
    for var, old in zip(model.trainable_variables, before):
        changed = not np.allclose(var.numpy(), old)
        decayed = var.name == "kernel"
        assert changed == decayed, var.path


def test_clipping_and_unknown_setting():
    assert make_optimizer(1e-3).global_clipnorm == 1.0
    with pytest.raises(ValueError, match="warmup"):
        make_optimizer(1e-3, warmups=3)


def test_causal_lm_loss_ignores_padding():
    """The compiled loss is cross-entropy averaged over the real tokens only."""
    model = keras_llm.build_gpt(vocabulary_size=9, num_layers=1, num_heads=2, hidden_dim=8,
                                intermediate_dim=16, max_sequence_length=8)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, size=(3, 6)).astype("int32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], "int32")
    labels = rng.integers(0, 9, size=(3, 6)).astype("int32")
    x = {"token_ids": ids, "padding_mask": mask}
    logits = np.asarray(model(x)).astype("float64")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    token_loss = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    want = token_loss[mask == 1].mean()
    got = model.evaluate(x, labels, sample_weight=mask.astype("float32"), batch_size=3,
                         verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(want, rel=1e-5)
    assert got["perplexity"] == pytest.approx(np.exp(want), rel=1e-4)
    accuracy = (logits.argmax(-1) == labels)[mask == 1].mean()
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_unknown_task():
    with pytest.raises(ValueError, match="task='translation'"):
        keras_llm.compile_model(keras.Sequential([keras.layers.Dense(1)]), "translation")


def test_xla_is_the_default_on_one_device_for_fixed_shape_tasks_only():
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    assert default_jit_compile("causal_lm") is True
    assert default_jit_compile("bert_pretraining") is True
    assert default_jit_compile("causal_lm", two_replicas) == "auto"
    for task in ("seq2seq_lm", "classification", "token_tagging", "question_answering"):
        assert default_jit_compile(task) == "auto"
    gpt = keras_llm.build_gpt(vocabulary_size=7, num_layers=1, num_heads=1, hidden_dim=4,
                              intermediate_dim=8, max_sequence_length=4)
    assert keras_llm.compile_model(gpt, "causal_lm").jit_compile is True
    assert keras_llm.compile_model(gpt, "causal_lm", jit_compile=False).jit_compile is False
    classifier = keras_llm.build_bert_classifier(
        vocabulary_size=7, num_classes=2, num_layers=1, num_heads=1, hidden_dim=4,
        intermediate_dim=8, max_sequence_length=4,
    )
    # Keras's "auto": XLA on one GPU only.
    expected = bool(tf.config.list_logical_devices("GPU"))
    assert keras_llm.compile_model(classifier, "classification").jit_compile is expected


def _tiny(task):
    sizes = dict(vocabulary_size=7, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8,
                 max_sequence_length=4)
    ids = np.random.default_rng(0).integers(0, 7, (8, 4)).astype("int32")
    if task == "causal_lm":
        inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
        return keras_llm.build_gpt(**sizes), inputs, ids
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    return keras_llm.build_bert_classifier(num_classes=2, **sizes), inputs, ids[:, 0] % 2


@pytest.mark.parametrize("task", ["causal_lm", "classifier"])
def test_the_first_fit_traces_the_train_step_once(task):
    # TensorFlow retraces a function whose first trace created variables: the
    # optimizer's slots, unless they exist before the step is traced.
    model, x, y = _tiny(task)
    keras_llm.compile_model(model, "causal_lm" if task == "causal_lm" else "classification",
                            jit_compile=False)
    traces = []
    step = model.train_step
    model.train_step = lambda data: (traces.append(1), step(data))[1]
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert len(traces) == 1
    assert model.optimizer.iterations.numpy() == 4
