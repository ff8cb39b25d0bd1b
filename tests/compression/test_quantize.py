"""`keras_llm.quantize`: the quantized layers against the quantization formula in float64 NumPy,
every model family quantized and round-tripped through `.keras`, and bad input refused."""

import keras
import numpy as np
import pytest

import keras_llm

TINY = dict(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
            vocabulary_size=64, max_sequence_length=16)


def _abs_max(x, axis, top=127):
    """Keras's `AbsMaxQuantizer` in float64: `q = clip(round(x * s)), s = top / max|x|` along `axis`."""
    x = np.asarray(x, "float64")
    scale = top / np.maximum(np.abs(x).max(axis=axis, keepdims=True), keras.config.epsilon())
    return np.clip(np.round(x * scale), -top - (top == 7), top), scale


def _gpt(**overrides):
    keras.utils.set_random_seed(0)
    return keras_llm.build_gpt(**{**TINY, **overrides})


def _inputs(batch=2, length=6, high=64):
    ids = np.random.default_rng(1).integers(1, high, size=(batch, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def test_int8_projections_and_the_tied_embedding_compute_the_w8a8_formula():
    model = _gpt()
    block = model.get_layer("transformer_layer_0")
    embedding = model.get_layer("embeddings").token_embedding
    dense = block._feedforward_intermediate_dense  # [16] -> [32], with a bias
    kernel = np.asarray(dense.kernel, "float64")
    bias = np.asarray(dense.bias, "float64")
    table = np.asarray(embedding.embeddings, "float64")
    keras_llm.quantize(model, "int8")
    x = np.random.default_rng(2).normal(size=(2, 3, 16)).astype("float32")

    # W8A8: weights per output channel, activations per token, int32 products, then de-scaled.
    qw, sw = _abs_max(kernel, axis=0)
    qx, sx = _abs_max(x, axis=-1)
    expected = (qx @ qw) / (sx * sw) + bias
    # The block's projections read tokens as rows: [B * T, 16].
    np.testing.assert_allclose(np.asarray(dense(x.reshape(-1, 16))), expected.reshape(-1, 32),
                               rtol=1e-5, atol=1e-6)

    # The token table: int8 rows, one scale per token; the tied projection uses the same table.
    qe, se = _abs_max(table, axis=-1)
    ids = np.array([[3, 7, 63]], "int32")
    np.testing.assert_allclose(np.asarray(embedding(ids)), (qe / se)[ids], rtol=1e-6, atol=1e-7)
    expected_logits = (qx @ qe.T) / (sx * se.T)
    np.testing.assert_allclose(
        np.asarray(embedding(x, reverse=True)), expected_logits, rtol=1e-5, atol=1e-6
    )
    assert embedding._embeddings.dtype == "int8" and dense._kernel.dtype == "int8"


def test_int4_per_channel_is_weight_only():
    keras.utils.set_random_seed(0)
    model = keras_llm.build_llama("llama_tiny", **{**TINY, "num_key_value_heads": 1})
    dense = model.get_layer("llama_block_0")._feedforward._gate_dense
    kernel = np.asarray(dense.kernel, "float64")
    keras_llm.quantize(model, "int4", block_size=-1)
    x = np.random.default_rng(2).normal(size=(2, 3, 16)).astype("float32")
    # Symmetric 4-bit: s = 7 / max|w[:, j]|, values in [-8, 7]; the activations stay float.
    qw, sw = _abs_max(kernel, axis=0, top=7)
    np.testing.assert_allclose(np.asarray(dense(x)), x @ (qw / sw), rtol=1e-5, atol=1e-6)


def test_int8_weights_only_keeps_the_activations_float():
    keras.utils.set_random_seed(0)
    model = keras_llm.build_llama("llama_tiny", **{**TINY, "num_key_value_heads": 1})
    dense = model.get_layer("llama_block_0")._feedforward._gate_dense
    embedding = model._embedding
    kernel = np.asarray(dense.kernel, "float64")
    table = np.asarray(embedding.embeddings, "float64")
    keras_llm.quantize(model, "int8", weights_only=True)
    x = np.random.default_rng(2).normal(size=(2, 3, 16)).astype("float32")
    # int8 weights per output channel (the table per token), float inputs: x @ (q / s).
    qw, sw = _abs_max(kernel, axis=0)
    np.testing.assert_allclose(np.asarray(dense(x)), x @ (qw / sw), rtol=1e-5, atol=1e-6)
    qe, se = _abs_max(table, axis=-1)
    np.testing.assert_allclose(np.asarray(embedding(x, reverse=True)), x @ (qe / se).T,
                               rtol=1e-5, atol=1e-6)
    assert dense._kernel.dtype == "int8" and embedding._embeddings.dtype == "int8"


def test_int8_logits_stay_within_the_rounding_bound_of_the_float_model():
    model = _gpt()
    x = _inputs()
    float_logits = np.asarray(model(x), "float64")
    final = keras.Model(model.input, model.get_layer("final_layer_norm").output)
    hidden = np.asarray(final(x), "float64")  # [B, T, D]: what the tied projection reads
    table = np.asarray(model.get_layer("embeddings").token_embedding.embeddings, "float64")
    keras_llm.quantize(model, "int8")
    quantized_logits = np.asarray(model(x), "float64")
    # Rounding to the nearest of 127 steps errs by at most half a step, max|v| / 254, on each
    # operand: a product of a quantized row and column errs by at most (1/254 + 1/254) of
    # max|h| * sum|e|, about 1/127 of the magnitudes summed. Each quantized matmul on the
    # way to the logits (q, k, v, attention output, two feed-forward, the tied projection:
    # 7) adds at most that relative error to what it feeds, bounded here by the final
    # projection's own magnitudes.
    magnitude = np.abs(hidden).max(-1, keepdims=True) * np.abs(table).sum(-1)  # [B, T, V]
    bound = 7 * magnitude / 127
    assert (np.abs(quantized_logits - float_logits) <= bound).all()
    assert not np.allclose(quantized_logits, float_logits, atol=1e-6)  # it did quantize


def _family(name):
    keras.utils.set_random_seed(0)
    ids = np.random.default_rng(1).integers(1, 64, size=(2, 5)).astype("int32")
    ones = np.ones_like(ids)
    if name == "gpt":
        return keras_llm.build_gpt(**TINY), {"token_ids": ids, "padding_mask": ones}
    if name == "llama_untied":
        model = keras_llm.build_llama(
            "llama_tiny", **{**TINY, "num_key_value_heads": 1}, tie_word_embeddings=False
        )
        return model, {"token_ids": ids, "padding_mask": ones}
    if name == "bert_classifier":
        model = keras_llm.build_bert_classifier(**TINY, num_classes=3)
        return model, {"token_ids": ids, "segment_ids": 0 * ids, "padding_mask": ones}
    model = keras_llm.build_seq2seq(**TINY)
    return model, {"encoder_token_ids": ids, "encoder_padding_mask": ones,
                   "decoder_token_ids": ids, "decoder_padding_mask": ones}


@pytest.mark.parametrize(
    "name, mode",
    [
        ("gpt", "int8"),
        ("llama_untied", "int4"),
        ("gpt", "int8 weights_only"),
        pytest.param("bert_classifier", "int8 weights_only", marks=pytest.mark.slow),
        # The others in the slow tier: the fast tier's budget (about 5 s each).
        pytest.param("llama_untied", "int8", marks=pytest.mark.slow),
        pytest.param("bert_classifier", "int8", marks=pytest.mark.slow),
        pytest.param("seq2seq", "int8", marks=pytest.mark.slow),
        pytest.param("gpt", "int4", marks=pytest.mark.slow),
    ],
)
def test_every_family_quantizes_and_loads_back_from_keras_with_identical_outputs(
    name, mode, tmp_path
):
    model, x = _family(name)
    mode, *options = mode.split()
    keras_llm.quantize(model, mode, **{option: True for option in options})
    quantized = {layer.path for layer in model._flatten_layers() if layer.quantization_mode}
    tables = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.ReversibleEmbedding)]
    assert tables and all(t.quantization_mode == mode for t in tables)
    denses = [layer for layer in model._flatten_layers()
              if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))]
    assert all(d.quantization_mode == mode for d in denses)
    path = str(tmp_path / "quantized.keras")
    model.save(path)
    restored = keras.saving.load_model(path)  # no custom objects
    assert {layer.path for layer in restored._flatten_layers() if layer.quantization_mode} == quantized
    for got, want in zip(keras.tree.flatten(restored(x)), keras.tree.flatten(model(x))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # Weights-only int8 stays weights-only in the loaded model (no input quantizer).
    quantizers = {type(layer.inputs_quantizer) for layer in restored._flatten_layers()
                  if layer.quantization_mode == "int8"}
    assert quantizers == ({type(None)} if options else {keras.quantizers.AbsMaxQuantizer}
                          if mode == "int8" else set())


def test_quantizing_twice_is_an_error_that_changes_nothing():
    model = _gpt()
    keras_llm.quantize(model, "int8")
    before = [np.asarray(v).copy() for v in model.weights]
    with pytest.raises(ValueError, match=r"Model 'gpt' is already quantized.*mode='int4'"):
        keras_llm.quantize(model, "int4")
    after = [np.asarray(v) for v in model.weights]
    assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize(
    "mode, kwargs, message",
    [
        ("int16", {}, r"`mode` must be one of 'int8', 'int4', 'gptq', 'awq'. Received: mode='int16'"),
        ("float8", {}, r"float8 is refused"),
        ("int8", {"block_size": 64}, r"`block_size` is an option of modes 'int4', 'gptq' and 'awq'"),
        ("int4", {"block_size": 0}, r"positive int or -1.*block_size=0"),
        ("int4", {"weights_only": True}, r"`weights_only` is an option of mode='int8'"),
        ("int8", {"weights_only": "yes"}, r"`weights_only` must be a bool.*weights_only='yes'"),
    ],
)
def test_bad_arguments_are_refused_by_name_and_leave_the_model_float(mode, kwargs, message):
    model = _gpt(num_layers=1)
    with pytest.raises(ValueError, match=message):
        keras_llm.quantize(model, mode, **kwargs)
    assert not any(layer.quantization_mode for layer in model._flatten_layers())


def test_a_model_is_required():
    with pytest.raises(TypeError, match="`model` must be a keras_llm model"):
        keras_llm.quantize("model.keras", "int8")


def test_the_collections_keras_runs_per_dropped_kernel_skip_the_objects_made_before():
    # Keras's `Layer.__delattr__` runs a full `gc.collect()` per dropped float
    # kernel, whose cost grows with the whole process (seconds for a small
    # GPT, about a minute for SmolLM2-135M). `keras_llm.quantize` freezes the
    # objects made before it, then collects once at the end.
    import gc
    import weakref

    model = _gpt(num_layers=2)
    old_kernel = weakref.ref(model.get_layer("transformer_layer_0")._feedforward_intermediate_dense._kernel)
    frozen_at_collections = []

    def record(phase, info):
        if phase == "start" and info["generation"] == 2:
            frozen_at_collections.append(gc.get_freeze_count())

    before = len(gc.get_objects())
    gc.callbacks.append(record)
    try:
        keras_llm.quantize(model, "int8")
    finally:
        gc.callbacks.remove(record)
    # Keras collected once per dropped kernel (10 projections and the table),
    # each with what was alive before the call left out (the frozen count only
    # falls as frozen objects die); then the final collection, of everything.
    assert len(frozen_at_collections) >= 11, frozen_at_collections
    assert all(count > 0.9 * before for count in frozen_at_collections[:-1]), frozen_at_collections
    assert frozen_at_collections[-1] == 0 and gc.get_freeze_count() == 0
    assert old_kernel() is None  # the float kernels are released
    assert model.get_layer("transformer_layer_0")._feedforward_intermediate_dense.quantization_mode == "int8"


def test_a_process_that_froze_objects_itself_keeps_them_frozen():
    import gc

    model = _gpt()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        keras_llm.quantize(model, "int8")
        assert gc.get_freeze_count() > 0.9 * frozen  # not unfrozen (frozen objects may die)
    finally:
        gc.unfreeze()
