import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from tests.harness import check_model

TINY = dict(vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=16, dropout=0.0)


def bert_inputs(ids, mask=None, segments=None, positions=None):
    ids = np.asarray(ids, "int32")
    x = {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids) if segments is None else np.asarray(segments, "int32"),
        "padding_mask": np.ones_like(ids) if mask is None else np.asarray(mask, "int32"),
    }
    if positions is not None:
        x["mask_positions"] = np.asarray(positions, "int32")
    return x


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["bert_tiny", "bert_mini", "bert_small"])
def test_parameter_count_matches_keras_hub(preset):
    import keras_hub

    config = keras_llm.BERT_PRESETS[preset]
    theirs = keras_hub.models.BertBackbone(**config).count_params()
    assert keras_llm.build_bert(preset).count_params() == theirs


@pytest.mark.slow  # 7 s to build 110M parameters; the small presets match keras-hub above
def test_bert_base_has_the_published_parameter_count():
    # bert-base-uncased: 109,482,240 parameters with the pooler.
    assert keras_llm.build_bert("bert_base").count_params() == 109_482_240


def test_presets_have_published_sizes():
    sizes = {name: (p["num_layers"], p["hidden_dim"], p["num_heads"]) for name, p in keras_llm.BERT_PRESETS.items()}
    assert sizes == {
        "bert_tiny": (2, 128, 2), "bert_mini": (4, 256, 4), "bert_small": (4, 512, 8),
        "bert_medium": (8, 512, 8), "bert_base": (12, 768, 12), "bert_large": (24, 1024, 16),
    }


def test_padding_invariance_and_bidirectionality():
    model = keras_llm.build_bert(**TINY)
    ids = np.array([[2, 7, 5, 9, 3]])
    out = model(bert_inputs(ids))
    padded = model(bert_inputs(np.concatenate([ids, [[1, 1]]], 1), mask=[[1] * 5 + [0, 0]]))
    np.testing.assert_allclose(padded["sequence_output"][:, :5], out["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(padded["pooled_output"], out["pooled_output"], atol=1e-5)
    changed = model(bert_inputs([[2, 7, 5, 9, 4]]))
    # Bidirectional: a change at the end reaches the first position.
    assert np.abs(np.asarray(changed["sequence_output"])[0, 0] - np.asarray(out["sequence_output"])[0, 0]).max() > 1e-4


def test_mlm_logits_use_tied_embeddings_and_bias():
    model = keras_llm.build_bert_pretrainer(**TINY)
    x = bert_inputs([[2, 7, 5, 9, 3]], positions=[[1, 3]])
    normed = keras.Model(model.input, model.get_layer("mlm_layer_norm").output)
    # The bias is the head's own layer (its encoder's embedding has none), as keras-hub's MaskedLMHead.
    model.get_layer("mlm_output_bias").bias.assign(np.linspace(-1, 1, 20).astype("float32"))
    table = model.get_layer("embeddings").token_embedding.embeddings.numpy()
    want = np.asarray(normed(x)) @ table.T + np.linspace(-1, 1, 20)
    np.testing.assert_allclose(model(x)["mlm_logits"], want, atol=1e-5)


def test_mlm_head_reads_the_masked_positions():
    model = keras_llm.build_bert_pretrainer(**TINY)
    x = bert_inputs([[2, 7, 5, 9, 3]], positions=[[3, 1]])
    both = np.asarray(model(x)["mlm_logits"])
    single = np.asarray(model({**x, "mask_positions": np.array([[1]], "int32")})["mlm_logits"])
    np.testing.assert_allclose(both[0, 1], single[0, 0], atol=1e-5)


@pytest.mark.parametrize("builder", ["pretrainer", "classifier"])
def test_every_weight_gets_a_gradient(builder):
    if builder == "pretrainer":
        model = keras_llm.build_bert_pretrainer(**TINY)
        x = bert_inputs([[2, 7, 5, 9, 3]], segments=[[0, 0, 1, 1, 1]], positions=[[1, 3]])
        loss_of = lambda out: tf.reduce_sum(out["mlm_logits"][..., 4]) + tf.reduce_sum(out["nsp_logits"][:, 0])
    else:
        model = keras_llm.build_bert_classifier(**TINY, num_classes=3)
        x = bert_inputs([[2, 7, 5, 9, 3]], segments=[[0, 0, 1, 1, 1]])
        loss_of = lambda out: tf.reduce_sum(out[:, 1])
    with tf.GradientTape() as tape:
        loss = loss_of(model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None and np.abs(np.asarray(tf.convert_to_tensor(grad))).max() > 0, var.path


@pytest.mark.slow
def test_pretrainer_fit_lowers_the_loss():
    rng = np.random.default_rng(0)
    model = keras_llm.build_bert_pretrainer(**TINY)
    keras_llm.compile_model(model, "bert_pretraining", learning_rate=3e-3, total_steps=100, warmup_steps=5)
    n = 256
    ids = rng.integers(4, 20, size=(n, 8)).astype("int32")
    positions = np.tile([[2, 5]], (n, 1)).astype("int32")
    labels = np.take_along_axis(ids, positions, 1)
    masked = ids.copy()
    np.put_along_axis(masked, positions, 1, 1)
    x = bert_inputs(masked, positions=positions)
    y = {"mlm_logits": labels, "nsp_logits": (ids[:, 0] > 11).astype("int32")}
    w = {"mlm_logits": np.ones((n, 2), "float32"), "nsp_logits": np.ones(n, "float32")}
    before = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    model.fit(x, y, sample_weight=w, batch_size=32, epochs=8, verbose=0)
    after = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 0.5
    assert after["nsp_logits_accuracy"] > 0.9


def _model_and_batch(builder):
    """A model of each BERT builder and a batch `(x, y, sample_weight)` for it."""
    x = bert_inputs([[2, 7, 5, 9, 3], [2, 8, 3, 0, 0]], mask=[[1] * 5, [1, 1, 1, 0, 0]],
                    segments=[[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]])
    if builder == "backbone":
        # No objective: compiled here so that the harness can take a step.
        model = keras_llm.build_bert(**TINY)
        model.compile(optimizer="adam", loss={"sequence_output": "mse", "pooled_output": "mse"})
        return model, x, {"sequence_output": np.zeros((2, 5, 16)), "pooled_output": np.ones((2, 16))}, None
    if builder == "pretrainer":
        x["mask_positions"] = np.array([[1, 3], [1, 0]], "int32")
        y = {"mlm_logits": np.array([[4, 6], [9, 0]]), "nsp_logits": np.array([0, 1])}
        w = {"mlm_logits": np.array([[1.0, 1.0], [1.0, 0.0]]), "nsp_logits": np.ones(2)}
        return keras_llm.build_bert_pretrainer(**TINY), x, y, w
    if builder == "classifier":
        return keras_llm.build_bert_classifier(**TINY, num_classes=3), x, np.array([2, 0]), None
    if builder == "tagger":
        tags, weights = np.array([[0, 1, 2, 0, 0], [0, 3, 0, 0, 0]]), np.asarray(x["padding_mask"], "float32")
        return keras_llm.build_bert_tagger(**TINY, num_classes=4), x, tags, weights
    y = {"start_logits": np.array([3, 1]), "end_logits": np.array([4, 1])}
    return keras_llm.build_bert_question_answerer(**TINY), x, y, None


# One builder in the fast tier; every one in the full run (about 10 s each).
@pytest.mark.parametrize(
    "builder",
    ["classifier"] + [pytest.param(b, marks=pytest.mark.slow) for b in ("backbone", "pretrainer", "tagger", "qa")],
)
def test_model_harness(tmp_path, builder):
    model, x, y, w = _model_and_batch(builder)
    check_model(model, x, y, sample_weight=w, tmp_path=tmp_path)


def test_tagger_logits_are_a_dense_layer_on_the_sequence_output():
    model = keras_llm.build_bert_tagger(**TINY, num_classes=4)
    x = bert_inputs([[2, 7, 5, 9, 3]])
    hidden = keras.Model(model.input, model.get_layer("transformer_layer_1").output)(x)
    kernel, bias = model.get_layer("tagger_logits").get_weights()
    np.testing.assert_allclose(model(x), np.asarray(hidden) @ kernel + bias, atol=1e-5)


def test_question_answerer_loss_is_the_mean_of_start_and_end_cross_entropies():
    model, x, y, _ = _model_and_batch("qa")
    out = model(x)

    def cross_entropy(logits, labels):  # float64, by hand
        logits = np.asarray(logits, "float64")
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -log_probs[np.arange(len(labels)), labels].mean()

    want = 0.5 * (cross_entropy(out["start_logits"], y["start_logits"])
                  + cross_entropy(out["end_logits"], y["end_logits"]))
    got = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_classifier_needs_num_classes():
    with pytest.raises(ValueError, match="num_classes=1"):
        keras_llm.build_bert_classifier(**TINY, num_classes=1)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="preset='bert_huge'.*bert_base"):
        keras_llm.build_bert("bert_huge")
