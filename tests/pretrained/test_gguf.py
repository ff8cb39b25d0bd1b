"""`read_gguf` on small GGUF files written here with `gguf.GGUFWriter`, against the arrays written."""

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


@pytest.mark.slow  # reads SmolLM2-135M-Instruct (98 MB) twice, ~30 s
def test_smollm2_reads_as_transformers_reads_it(smollm2_gguf):
    import os

    from transformers import AutoModelForCausalLM

    directory, name = os.path.split(smollm2_gguf)
    config, tensors, template = read_gguf(smollm2_gguf)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
    expected = model.config.to_dict()
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                "rms_norm_eps", "tie_word_embeddings", "head_dim"):
        assert config[key] == pytest.approx(expected[key]), key
    assert config["rope_theta"] == pytest.approx(model.config.rope_parameters["rope_theta"])
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    assert set(tensors) == set(state) - {"lm_head.weight"}  # tied: lm_head is the embedding
    for key, value in state.items():
        np.testing.assert_array_equal(tensors.get(key, tensors["model.embed_tokens.weight"]), value,
                                      err_msg=key)
    assert template.startswith("{% for message in messages %}") and "<|im_start|>" in template


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


@pytest.mark.slow  # transformers reads SmolLM2's tokenizer from the GGUF, ~15 s
def test_smollm2_chat_template_renders_as_transformers_renders_it(smollm2_gguf):
    import os

    from transformers import AutoTokenizer

    from keras_llm.generation.chat import chat_prompt

    directory, name = os.path.split(smollm2_gguf)
    _, _, template = read_gguf(smollm2_gguf)
    reference = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "2 + 2?\n  Think."}],
    ]
    for messages in conversations:
        for generation_prompt in (True, False):
            expected = reference.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=generation_prompt)
            assert chat_prompt(messages, chat_template=template,
                               add_generation_prompt=generation_prompt) == expected
