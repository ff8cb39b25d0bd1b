"""`from_pretrained(gguf, keep_quantized=True)`: a file's Q4_0/Q4_1 projections kept as 4-bit blocks.

The reference is the same file dequantized by the `gguf` package (`read_gguf`, what
`from_pretrained` loads by default and test_gguf_smollm2.py compares with `transformers`).
SmolLM2's real file: test_gguf_smollm2.py; a kept model served from a TensorFlow-only process:
tests/compression/test_quantized_export.py."""

import logging

import gguf
import keras
import numpy as np
import pytest

import keras_llm
from keras_llm.pretrained.gguf import _config_and_tensors, _open, kept_blocks

# Every input width a whole number of GGUF's blocks of 32: the down projection reads FFN = 96,
# three blocks a row.
HIDDEN, HEADS, KV_HEADS, FFN, VOCAB, LAYERS = 64, 4, 2, 96, 258, 2
Q4 = (gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q4_0)  # layer 0, layer 1


def _write(path, projections=Q4):
    """A whole Llama of `LAYERS` blocks: projections of block n in `projections[n]`, a Q8_0 table."""
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in [("block_count", LAYERS), ("embedding_length", HIDDEN),
                       ("feed_forward_length", FFN), ("attention.head_count", HEADS),
                       ("attention.head_count_kv", KV_HEADS), ("context_length", 64)]:
        writer.add_uint32(f"llama.{key}", value)
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    head_dim = HIDDEN // HEADS

    def add(name, array, kind=gguf.GGMLQuantizationType.F32):
        array = array.astype(np.float32)
        if kind == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, array)
        else:
            stored = gguf.quants.quantize(array, kind)
            writer.add_tensor(name, stored, raw_shape=stored.shape, raw_dtype=kind)

    add("token_embd.weight", rng.normal(size=(VOCAB, HIDDEN)), gguf.GGMLQuantizationType.Q8_0)
    add("output_norm.weight", 1 + 0.1 * rng.normal(size=HIDDEN))
    for n in range(LAYERS):
        for name, shape in [("attn_q", (HEADS * head_dim, HIDDEN)), ("attn_k", (KV_HEADS * head_dim, HIDDEN)),
                            ("attn_v", (KV_HEADS * head_dim, HIDDEN)), ("attn_output", (HIDDEN, HIDDEN)),
                            ("ffn_gate", (FFN, HIDDEN)), ("ffn_up", (FFN, HIDDEN)),
                            ("ffn_down", (HIDDEN, FFN))]:
            add(f"blk.{n}.{name}.weight", rng.normal(size=shape) / np.sqrt(shape[1]), projections[n])
        add(f"blk.{n}.attn_norm.weight", 1 + 0.1 * rng.normal(size=HIDDEN))
        add(f"blk.{n}.ffn_norm.weight", 1 + 0.1 * rng.normal(size=HIDDEN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


@pytest.fixture(scope="module")
def file(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("gguf") / "q4.gguf")


def _inputs(length=9):
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(2, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


@pytest.mark.parametrize("name", ["model.layers.0.self_attn.q_proj.weight",  # Q4_1, rows permuted
                                  "model.layers.0.mlp.down_proj.weight",  # Q4_1, 3 blocks a row
                                  "model.layers.1.self_attn.k_proj.weight"])  # Q4_0
def test_kept_blocks_are_the_values_the_gguf_package_dequantizes(file, name):
    _, tensors = _config_and_tensors(_open(file), file)
    values, scale, offset = kept_blocks(tensors[name])
    assert values.dtype == np.int8 and values.min() >= -8 and values.max() <= 7
    block = np.arange(values.shape[0]) // 32
    kept = values * scale[block].astype(np.float64) + offset[block]  # [in, out]
    np.testing.assert_allclose(kept, np.asarray(tensors[name], np.float64).T, rtol=0, atol=1e-6)


def test_a_model_keeping_the_blocks_computes_the_dequantized_models_logits(file, tmp_path):
    dequantized = keras_llm.from_pretrained(file)
    kept = keras_llm.from_pretrained(file, keep_quantized=True)
    int4 = [layer for layer in kept._flatten_layers() if layer.quantization_mode == "int4"]
    assert len(int4) == 7 * LAYERS and all(isinstance(x, keras_llm.layers.OffsetDense) for x in int4)
    assert kept.get_layer("token_embedding").quantization_mode is None  # Q8_0: read as float32
    expected = np.asarray(dequantized(_inputs()))
    np.testing.assert_allclose(np.asarray(kept(_inputs())), expected, rtol=0,
                               atol=2e-5 * np.abs(expected).max())
    # 4 bits a weight plus a scale and an offset per 32: about a sixth of float32's bytes.
    stored = sum(v.numpy().nbytes for layer in int4 for v in layer.weights if "g_idx" not in v.path)
    floats = sum(layer._orig_input_dim * layer.units * 4 for layer in int4)
    assert stored < floats / 5

    path = str(tmp_path / "kept.keras")
    kept.save(path)
    loaded = keras.saving.load_model(path)  # no custom objects
    np.testing.assert_array_equal(np.asarray(loaded(_inputs())), np.asarray(kept(_inputs())))
    # Decoding with the cache (the Generator's graph loop) equals recomputing the whole sequence.
    prompt = _inputs(4)["token_ids"][:1]
    generator = keras_llm.generation.Generator(
        loaded, keras_llm.tokenizers.ByteTokenizer(), jit_compile=False)
    generated = generator.generate(
        [prompt[0].tolist()], max_new_tokens=5, stop_token_ids=[])[0].tolist()
    ids = prompt[0].tolist()
    for _ in range(5):
        x = np.array([ids], "int32")
        ids.append(int(np.argmax(np.asarray(loaded({"token_ids": x, "padding_mask": np.ones_like(x)}))[0, -1])))
    assert generated == ids[4:]


def test_keep_quantized_is_refused_where_it_means_nothing_and_lora_on_kept_blocks(file, tmp_path, caplog):
    with pytest.raises(ValueError, match=r"`keep_quantized` must be a bool. Received: keep_quantized='yes'"):
        keras_llm.from_pretrained(file, keep_quantized="yes")
    with pytest.raises(ValueError, match=r"keep_quantized=True` keeps a GGUF file's .*Received: path="):
        keras_llm.from_pretrained(str(tmp_path), keep_quantized=True)
    kept = keras_llm.from_pretrained(file, keep_quantized=True)
    with pytest.raises(ValueError, match=r"query'? holds a GGUF file's 4-bit blocks with offsets"):
        keras_llm.training.enable_lora(kept, rank=2)
    assert not any(getattr(layer, "lora_enabled", False) for layer in kept._flatten_layers())
    float_file = _write(tmp_path / "f32.gguf", projections=(gguf.GGMLQuantizationType.F32,) * LAYERS)
    with caplog.at_level(logging.WARNING, logger="keras_llm"):
        model = keras_llm.from_pretrained(float_file, keep_quantized=True)
    assert "holds no Q4_0/Q4_1 projections" in caplog.text
    assert not any(layer.quantization_mode for layer in model._flatten_layers())
