"""`read_gguf` on small GGUF files written here with `gguf.GGUFWriter`, against the arrays written
(SmolLM2's real file: test_gguf_smollm2.py)."""

import gguf
import numpy as np
import pytest

from keras_llm.pretrained.gguf import read_gguf

HIDDEN, HEADS, KV_HEADS, FFN, VOCAB = 32, 4, 2, 64, 48


def _write(path, architecture="llama", quantization=gguf.GGMLQuantizationType.F32, layers=1, hidden=HIDDEN):
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in [("block_count", layers), ("embedding_length", hidden), ("feed_forward_length", FFN),
                       ("attention.head_count", HEADS), ("attention.head_count_kv", KV_HEADS),
                       ("context_length", 128)]:
        writer.add_uint32(f"{architecture}.{key}", value)
    writer.add_float32(f"{architecture}.attention.layer_norm_rms_epsilon", 1e-6)
    writer.add_float32(f"{architecture}.rope.freq_base", 50000.0)
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    head_dim = HIDDEN // HEADS
    arrays = {"token_embd.weight": rng.normal(size=(VOCAB, HIDDEN)),
              "output_norm.weight": rng.normal(size=HIDDEN)}
    for n in range(layers):
        arrays.update({
            f"blk.{n}.attn_q.weight": rng.normal(size=(HEADS * head_dim, HIDDEN)),
            f"blk.{n}.attn_k.weight": rng.normal(size=(KV_HEADS * head_dim, HIDDEN)),
            f"blk.{n}.ffn_gate.weight": rng.normal(size=(FFN, HIDDEN)),
        })
    for name, array in arrays.items():
        array = array.astype(np.float32)
        if array.ndim == 2 and quantization != gguf.GGMLQuantizationType.F32:
            stored = gguf.quants.quantize(array, quantization)
            writer.add_tensor(name, stored, raw_shape=stored.shape, raw_dtype=quantization)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return arrays


def _permute(weights, heads):
    """llama.cpp's convert_hf_to_gguf.py permutation (the one the reader undoes)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


@pytest.mark.parametrize("quantization", ["F32", "F16", "Q8_0"])
def test_config_and_dequantized_tensors_match_what_was_written(tmp_path, quantization):
    kind = gguf.GGMLQuantizationType[quantization]
    arrays = _write(tmp_path / "m.gguf", quantization=kind)
    config, tensors, template = read_gguf(tmp_path / "m.gguf")
    assert config["num_hidden_layers"] == 1 and config["hidden_size"] == HIDDEN
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (HEADS, KV_HEADS)
    assert (config["vocab_size"], config["intermediate_size"]) == (VOCAB, FFN)
    assert config["rope_theta"] == 50000.0 and config["tie_word_embeddings"]
    assert template == "{{ messages }}"
    # Q8_0 stores each block of 32 as int8 times a float16 scale: 1/127 of the block's largest.
    tolerance = {"F32": 0, "F16": 2e-3, "Q8_0": 2e-2}[quantization]
    np.testing.assert_allclose(tensors["model.embed_tokens.weight"], arrays["token_embd.weight"],
                               atol=tolerance * 4)
    # The reader undoes llama.cpp's permutation: applying it again gives the stored rows.
    np.testing.assert_allclose(_permute(tensors["model.layers.0.self_attn.k_proj.weight"], KV_HEADS),
                               arrays["blk.0.attn_k.weight"], atol=tolerance * 4)
    np.testing.assert_allclose(_permute(tensors["model.layers.0.self_attn.q_proj.weight"], HEADS),
                               arrays["blk.0.attn_q.weight"], atol=tolerance * 4)


def test_bad_files_are_refused_naming_the_file_and_the_problem(tmp_path):
    _write(tmp_path / "gpt.gguf", architecture="gpt2")
    with pytest.raises(ValueError, match=r"gpt\.gguf: .*`llama` architecture.*architecture='gpt2'"):
        read_gguf(tmp_path / "gpt.gguf")
    _write(tmp_path / "m.gguf")
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.gguf: not a readable GGUF file"):
        read_gguf(tmp_path / "cut.gguf")
    _write(tmp_path / "wide.gguf", hidden=HIDDEN * 2)  # metadata says 64, tensors are 32 wide
    with pytest.raises(ValueError, match=r"wide\.gguf: the metadata's config disagrees with the tensors"):
        read_gguf(tmp_path / "wide.gguf")


def test_an_unread_quantization_type_is_refused_by_name(tmp_path):
    path = tmp_path / "iq.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.embedding_length", HIDDEN)
    # IQ4_NL: blocks of 32 values in 18 bytes; keras_llm does not read the I-quants.
    kind = gguf.GGMLQuantizationType.IQ4_NL
    raw = np.zeros((VOCAB, HIDDEN // 32 * 18), np.uint8)
    writer.add_tensor("token_embd.weight", raw, raw_shape=raw.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"iq\.gguf: holds tensors of quantization types .*: IQ4_NL\."):
        read_gguf(path)
