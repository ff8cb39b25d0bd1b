"""LoRA (keras_llm.training.lora): adapters that start at zero, train alone, save alone and merge.

References are independent of the code under test: the adapted output is
recomputed in float64 NumPy from the layer's own W, A, B and the LoRA
formula; parameter counts from the formula rank * (d_in + d_out) and the
builder's sizes; "what changed" from every variable's value before and
after a step.
"""

import os

import h5py
import keras
import numpy as np
import pytest

import keras_llm
from keras_llm.training import enable_lora, load_lora, lora_spec, merge_lora, save_lora

TINY = dict(vocabulary_size=60, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=16)
RANK = 4


def _classifier(**sizes):
    keras.utils.set_random_seed(0)
    return keras_llm.build_bert_classifier(num_classes=3, **{**TINY, **sizes})


def _gpt():
    keras.utils.set_random_seed(0)
    return keras_llm.build_gpt(**TINY)


def _bert_inputs(batch=6, length=7, seed=0):
    rng = np.random.default_rng(seed)
    return {"token_ids": rng.integers(5, 60, (batch, length)).astype("int32"),
            "segment_ids": np.zeros((batch, length), "int32"),
            "padding_mask": np.ones((batch, length), "int32")}


GPT_INPUTS = {"token_ids": np.array([[1, 7, 9, 30, 2]], "int32"),
              "padding_mask": np.ones((1, 5), "int32")}


def _values(model):
    """Every variable's value by path, but dropout's random-number states (they move each step)."""
    return {v.path: np.array(v.numpy()) for v in model.variables
            if "seed_generator" not in v.path}


def _layer(model, path):
    return next(layer for layer in model._flatten_layers() if layer.path == path)


@pytest.fixture(scope="module")
def trained():
    """A LoRA classifier before and after a few steps of fitting: (model, before, after, x)."""
    model = _classifier()
    x = _bert_inputs()
    base_output = np.asarray(model(x))
    enable_lora(model, RANK)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    before = _values(model)
    model.fit(x, np.arange(6) % 3, epochs=3, batch_size=6, verbose=0)
    return model, base_output, before, _values(model), x


def test_before_training_the_output_is_the_base_models():
    for model, inputs in ((_classifier(), _bert_inputs()), (_gpt(), GPT_INPUTS)):
        base = np.asarray(model(inputs))
        enable_lora(model, RANK)
        np.testing.assert_array_equal(np.asarray(model(inputs)), base)  # B starts at zero


def test_a_step_changes_only_the_adapters_and_the_head(trained):
    model, _, before, after, _ = trained
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    adapters = {f"transformer_layer_0/self_attention_{part}/lora_kernel_{ab}"
                for part in ("query", "value") for ab in "ab"}
    assert changed == adapters | {"logits/kernel", "logits/bias"}


def test_adapted_output_is_the_lora_formula_in_float64(trained):
    model, _, _, _, _ = trained
    layer = _layer(model, "transformer_layer_0/self_attention_value")
    h = np.random.default_rng(1).normal(size=(6, 16))  # tokens as rows, as the block projects them
    w, bias = layer._kernel.numpy().astype("float64"), layer.bias.numpy().astype("float64")
    a, b = layer.lora_kernel_a.numpy().astype("float64"), layer.lora_kernel_b.numpy()
    assert np.abs(b).max() > 0  # trained away from zero
    expected = h @ (w + (RANK / RANK) * a @ b.astype("float64")) + bias
    np.testing.assert_allclose(np.asarray(layer(h.astype("float32"))), expected, atol=1e-5)


def test_merged_output_equals_the_adapted_output(trained):
    model, _, _, _, x = trained
    merged = merge_lora(model)
    assert lora_spec(merged) is None and lora_spec(model) is not None
    assert not [w.path for w in merged.weights if "lora" in w.path]
    assert merged.count_params() == sum(
        int(np.prod(w.shape)) for w in model.weights if "lora" not in w.path
    )
    np.testing.assert_allclose(np.asarray(merged(x)), np.asarray(model(x)), atol=1e-5)
    assert len(merged.trainable_weights) == len(merged.weights)  # a plain model again


def test_trainable_parameters_are_rank_times_in_plus_out():
    model = _classifier()
    enable_lora(model, RANK)
    d = TINY["hidden_dim"]
    per_target = RANK * (d + d)  # query and value: [d, d] each, one block
    head = d * 3 + 3
    assert model.count_params() - sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) \
        == 2 * per_target + head
    # Llama's grouped-query attention: value projects to num_key_value_heads * head_dim.
    keras.utils.set_random_seed(0)
    llama = keras_llm.build_llama("llama_tiny", num_layers=1, vocabulary_size=64)
    enable_lora(llama, 2, targets=("query", "value", "down_dense"), alpha=4)
    c = llama.builder_config
    head_dim = c["hidden_dim"] // c["num_heads"]
    expected = 2 * (c["hidden_dim"] + c["num_heads"] * head_dim) \
        + 2 * (c["hidden_dim"] + c["num_key_value_heads"] * head_dim) \
        + 2 * (c["intermediate_dim"] + c["hidden_dim"])
    assert sum(int(np.prod(w.shape)) for w in llama.trainable_weights) == expected


def test_default_targets_cover_cross_attention_and_names_can_narrow_them():
    model = keras_llm.build_seq2seq("seq2seq_tiny", num_layers=1, vocabulary_size=40,
                                    hidden_dim=16, num_heads=2, intermediate_dim=32)
    enable_lora(model, 2)
    names = [path.rsplit("/", 1)[-1] for path in lora_spec(model)["layers"]]
    assert sorted(set(names)) == ["cross_attention_query", "cross_attention_value",
                                  "self_attention_query", "self_attention_value"]
    gpt = _gpt()
    enable_lora(gpt, 2, targets="transformer_layer_0/self_attention_query")
    assert lora_spec(gpt)["layers"] == ["transformer_layer_0/self_attention_query"]


def test_adapter_file_round_trip_reproduces_outputs(trained, tmp_path):
    model, _, _, _, x = trained
    path = save_lora(model, tmp_path / "classifier.lora.h5")
    with h5py.File(path) as f:  # the adapters and the head, not the frozen weights
        sizes = []
        f.visititems(lambda _, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None)
    assert sum(sizes) == 2 * RANK * 32 + 16 * 3 + 3
    fresh = _classifier()  # the same seed: the same base weights
    load_lora(fresh, path)
    np.testing.assert_allclose(np.asarray(fresh(x)), np.asarray(model(x)), atol=1e-6)
    assert lora_spec(fresh) == lora_spec(model)


def test_keras_file_keeps_the_adapters_apart(trained, tmp_path):
    model, _, _, _, x = trained
    model.save(tmp_path / "lora.keras")
    loaded = keras.saving.load_model(tmp_path / "lora.keras")  # no custom objects
    assert lora_spec(loaded) == lora_spec(model)
    saved = _values(model)
    assert {p: v for p, v in _values(loaded).items()}.keys() == saved.keys()
    for path, value in _values(loaded).items():  # base kernels and adapters, exactly
        np.testing.assert_array_equal(value, saved[path], err_msg=path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    assert {w.path for w in loaded.trainable_weights} == {w.path for w in model.trainable_weights}


def test_alpha_survives_a_keras_file_for_a_plain_dense_target(tmp_path):
    # Keras rebuilds a Dense from its config's lora_rank with alpha = rank.
    model = _classifier()
    enable_lora(model, 2, targets=("pooled_dense",), alpha=8, trainable_layers=())
    b = _layer(model, "pooled_dense").lora_kernel_b
    b.assign(np.random.default_rng(0).normal(size=b.shape))
    x = _bert_inputs()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert _layer(loaded, "pooled_dense").lora_alpha == 8
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_qlora_on_an_int8_model_trains_saves_reloads_and_merges_requantized(tmp_path):
    model = _gpt()
    model.quantize("int8")
    enable_lora(model, RANK)
    layer = _layer(model, "transformer_layer_0/self_attention_query")
    assert layer.quantization_mode == "int8" and layer.lora_enabled
    layer.lora_kernel_b.assign(np.random.default_rng(0).normal(0, 0.05, layer.lora_kernel_b.shape))
    out = np.asarray(model(GPT_INPUTS))
    model.save(tmp_path / "qlora.keras")
    loaded = keras.saving.load_model(tmp_path / "qlora.keras")
    np.testing.assert_allclose(np.asarray(loaded(GPT_INPUTS)), out, atol=1e-6)
    merged = merge_lora(model)
    merged_layer = _layer(merged, "transformer_layer_0/self_attention_query")
    assert merged_layer.quantization_mode == "int8" and not merged_layer.lora_enabled
    # The requantized kernel is the float64 sum W + A B, to within one int8 step per column.
    w = layer._kernel.numpy().astype("float64") / layer.kernel_scale.numpy()
    expected = w + layer.lora_kernel_a.numpy().astype("float64") @ layer.lora_kernel_b.numpy()
    got = merged_layer._kernel.numpy() / merged_layer.kernel_scale.numpy()
    step = np.abs(expected).max(axis=tuple(range(expected.ndim - 1))) / 127
    assert np.all(np.abs(got - expected) <= 0.51 * step + 1e-7)


def test_bad_arguments_are_named_and_change_nothing():
    model = _gpt()
    before = _values(model)
    for rank in (0, -2, 2.0, True, "8"):
        with pytest.raises(ValueError, match=f"`rank` must be a positive int. Received: rank={rank!r}"):
            enable_lora(model, rank)
    with pytest.raises(ValueError, match=r"`targets` entry 'qeury' matches no"):
        enable_lora(model, 2, targets=("query", "qeury"))
    with pytest.raises(ValueError, match="`alpha`"):
        enable_lora(model, 2, alpha=0)
    with pytest.raises(ValueError, match="`targets` must be"):
        enable_lora(model, 2, targets=[])
    assert lora_spec(model) is None and len(model.trainable_weights) == len(model.weights)
    assert _values(model).keys() == before.keys()
    with pytest.raises(ValueError, match="has no LoRA adapters"):
        merge_lora(model)
    enable_lora(model, 2)
    with pytest.raises(ValueError, match="has LoRA adapters already"):
        enable_lora(model, 4)
    assert lora_spec(model)["rank"] == 2


@pytest.mark.parametrize("other", [
    dict(rank=8), dict(targets=("query", "value", "key")), dict(hidden_dim=32, num_heads=2),
])
def test_adapters_of_another_shape_are_refused_naming_the_file(tmp_path, other):
    source = _classifier(**{k: v for k, v in other.items() if k in TINY})
    enable_lora(source, other.get("rank", RANK), targets=other.get("targets", ("query", "value")))
    path = save_lora(source, tmp_path / "other.lora.h5")
    target = _classifier()
    if "hidden_dim" in other:  # a model without adapters takes the file's rank and targets
        plain = _values(target)
        with pytest.raises(ValueError, match=f"load_lora: {path} does not fit"):
            load_lora(target, path)  # not enabled halfway
        assert lora_spec(target) is None and _values(target).keys() == plain.keys()
    enable_lora(target, RANK)
    adapted = _values(target)
    with pytest.raises(ValueError, match=f"{path} does not fit"):
        load_lora(target, path)
    for key, value in _values(target).items():
        np.testing.assert_array_equal(value, adapted[key])
    (tmp_path / "not.h5").write_bytes(b"nothing")
    with pytest.raises(ValueError, match="is not a LoRA file written by save_lora"):
        load_lora(target, tmp_path / "not.h5")


@pytest.mark.slow
def test_export_serves_the_merged_model(tmp_path):
    import tensorflow as tf

    model = keras_llm.build_gpt(**{**TINY, "vocabulary_size": 258},
                                tokenizer=keras_llm.tokenizers.ByteTokenizer())
    enable_lora(model, RANK)
    b = _layer(model, "transformer_layer_0/self_attention_value").lora_kernel_b
    b.assign(np.random.default_rng(0).normal(0, 0.3, b.shape))
    version = keras_llm.export(model, tmp_path / "served", max_new_tokens=2)
    names = [name for name, _ in tf.train.list_variables(os.path.join(version, "variables", "variables"))]
    assert not [n for n in names if "lora" in n]
    ids = np.array([[72, 105, 33]], "int32")
    served = tf.saved_model.load(version).signatures["logits"]
    logits = list(served(token_ids=tf.constant(ids), padding_mask=tf.ones_like(ids)).values())[0]
    expected = model({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    np.testing.assert_allclose(logits.numpy(), np.asarray(expected), atol=1e-5)
    assert lora_spec(model) is not None  # the model keeps its adapters
