import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from tests.harness import check_model

TINY = dict(vocabulary_size=13, num_layers=2, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=16, dropout=0.0)


def gpt2_parameter_count(vocabulary_size, num_layers, hidden_dim, intermediate_dim,
                         max_sequence_length, **_):
    """GPT-2's parameters by hand: tied embeddings, per layer 2 LayerNorms,
    Q/K/V/output projections and a 2-layer MLP, and the final LayerNorm."""
    d, f = hidden_dim, intermediate_dim
    per_layer = 2 * 2 * d + 4 * (d * d + d) + (d * f + f) + (f * d + d)
    return vocabulary_size * d + max_sequence_length * d + num_layers * per_layer + 2 * d


@pytest.mark.slow
def test_gpt2_small_has_exactly_124_439_808_parameters():
    assert keras_llm.build_gpt("gpt2_small").count_params() == 124_439_808


@pytest.mark.parametrize(
    "preset,published_millions",
    [("gpt2_small", 124), ("gpt2_medium", 355), ("gpt2_large", 774), ("gpt2_xl", 1558)],
)
def test_presets_have_gpt2_published_sizes(preset, published_millions):
    # Building the large presets takes many GB; the formula, checked against
    # built models below, stands in for them.
    count = gpt2_parameter_count(**keras_llm.GPT_PRESETS[preset])
    assert round(count / 1e6) == published_millions


@pytest.mark.parametrize("preset", ["gpt_nano"])
def test_formula_matches_built_model_and_keras_hub(preset):
    import keras_hub

    config = keras_llm.GPT_PRESETS[preset]
    ours = keras_llm.build_gpt(preset).count_params()
    theirs = keras_hub.models.GPT2Backbone(**config).count_params()
    assert ours == gpt2_parameter_count(**config) == theirs


def inputs(ids, mask=None):
    ids = np.asarray(ids, "int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids) if mask is None else np.asarray(mask, "int32")}


def test_causal_and_padding_invariant():
    model = keras_llm.build_gpt(**TINY)
    ids = np.array([[3, 1, 4, 1, 5, 9]])
    changed = ids.copy()
    changed[0, 4] = 7
    a, b = np.asarray(model(inputs(ids))), np.asarray(model(inputs(changed)))
    np.testing.assert_allclose(a[0, :4], b[0, :4], atol=1e-5)
    assert np.abs(a[0, 4:] - b[0, 4:]).max() > 1e-4
    padded = np.concatenate([ids, [[2, 2, 2]]], axis=1)
    mask = np.array([[1] * 6 + [0] * 3])
    c = np.asarray(model(inputs(padded, mask)))
    np.testing.assert_allclose(c[0, :6], a[0], atol=1e-5)


def test_output_embedding_is_the_input_embedding():
    model = keras_llm.build_gpt(**TINY)
    ids = np.array([[1, 2, 3]])
    final = keras.Model(model.input, model.get_layer("final_layer_norm").output)
    hidden = np.asarray(final(inputs(ids)))
    table = model.get_layer("embeddings").token_embedding.embeddings.numpy()
    np.testing.assert_allclose(model(inputs(ids)), hidden @ table.T, atol=1e-5)


def test_every_weight_gets_a_gradient():
    model = keras_llm.build_gpt(**TINY)
    ids = tf.constant(np.random.default_rng(0).integers(0, 13, (2, 8)), tf.int32)
    with tf.GradientTape() as tape:
        logits = model(inputs(ids), training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(ids, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None and np.abs(np.asarray(tf.convert_to_tensor(grad))).max() > 0, var.path


def copy_task(rng, n, length=6, vocab=10):
    """[a b c d e f SEP a b c d e f]: the second half copies the first."""
    first = rng.integers(0, vocab, size=(n, length))
    seq = np.concatenate([first, np.full((n, 1), vocab), first], axis=1)
    x, y = seq[:, :-1], seq[:, 1:]
    weight = np.zeros_like(y, dtype="float32")
    weight[:, length:] = 1.0  # only the copied half is predictable
    return inputs(x), y.astype("int32"), weight


@pytest.mark.slow
def test_tiny_gpt_learns_to_copy_through_fit():
    rng = np.random.default_rng(0)
    model = keras_llm.build_gpt(vocabulary_size=11, num_layers=2, num_heads=2, hidden_dim=64,
                                intermediate_dim=128, max_sequence_length=16)
    # 400 steps: it copies perfectly from 300 on (measured at 300 and 600: accuracy 1.0).
    keras_llm.compile_model(model, "causal_lm", learning_rate=3e-3, total_steps=400, warmup_steps=50)
    x, y, w = copy_task(rng, 4096)
    dataset = tf.data.Dataset.from_tensor_slices((x, y, w)).shuffle(4096, seed=0).batch(64).repeat()
    model.fit(dataset, steps_per_epoch=400, epochs=1, verbose=0)
    tx, ty, tw = copy_task(np.random.default_rng(1), 512)
    predicted = np.argmax(model.predict(tx, verbose=0), axis=-1)
    accuracy = (predicted == ty)[tw > 0].mean()
    assert accuracy >= 0.95, accuracy
    # The compiled accuracy metric, weighted by the same sample weights, agrees.
    metrics = model.evaluate(tx, ty, sample_weight=tw, verbose=0, return_dict=True)
    assert abs(metrics["accuracy"] - accuracy) < 1e-3


@pytest.mark.slow
def test_save_and_load_after_training(tmp_path):
    model = keras_llm.build_gpt(**TINY)
    x, y, w = copy_task(np.random.default_rng(0), 32, vocab=10)
    model.fit(x, y, sample_weight=w, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "gpt.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects, safe_mode on
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.count_params() == model.count_params()  # still one tied table
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a, b)
    # It loads as what it was: a GPT with its decoding interface, whose
    # cached steps give the full pass's logits.
    assert isinstance(loaded, keras_llm.models.GPT) and loaded.task == "causal_lm"
    assert (loaded.vocabulary_size, loaded.max_sequence_length) == (13, 16)
    ids = x["token_ids"][:2, :6]
    full = model({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    cache = loaded.empty_cache(2, 8)
    logits, cache = loaded.call_with_cache(ids[:, :3], cache, 0)
    steps = [logits]
    for i in range(3, 6):
        logits, cache = loaded.call_with_cache(ids[:, i : i + 1], cache, i)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_precision_survives_saving(tmp_path):
    model = keras_llm.build_gpt(**TINY, precision="mixed_bfloat16")
    model.save(tmp_path / "gpt.keras")
    loaded = keras.saving.load_model(tmp_path / "gpt.keras")
    assert loaded.get_layer("transformer_layer_0").dtype_policy.name == "mixed_bfloat16"


@pytest.mark.slow  # 10 s; the BERT classifier's harness run stays in the fast tier
def test_model_harness(tmp_path):
    x, y, w = copy_task(np.random.default_rng(0), 4, vocab=10)
    check_model(keras_llm.build_gpt(**TINY), x, y, sample_weight=w, tmp_path=tmp_path)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="preset='gpt3'.*gpt2_small, gpt2_xl, gpt_nano"):
        keras_llm.build_gpt("gpt3")


@pytest.mark.parametrize(
    "override,message",
    [
        (dict(hidden_dim=15), "hidden_dim=15, num_heads=2"),
        (dict(num_layers=0), "num_layers=0"),
        (dict(vocabulary_size=-5), "vocabulary_size=-5"),
        (dict(dropout=1.0), "dropout=1.0"),
    ],
)
def test_bad_sizes_name_the_argument(override, message):
    with pytest.raises(ValueError, match=message):
        keras_llm.build_gpt(**{**TINY, **override})


def test_missing_sizes_are_named():
    with pytest.raises(ValueError, match="missing vocabulary_size"):
        keras_llm.build_gpt(num_layers=1)
