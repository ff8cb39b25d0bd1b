"""GGUF files with llama.cpp's tokenizer metadata (written here by `gguf.GGUFWriter`): the tokenizer
against the `tokenizers` pipeline it was written from, and `from_pretrained` on a tiny Llama against
`transformers`."""

import json
import logging

import gguf
import numpy as np
import pytest
import torch
import transformers

import keras_llm
from keras_llm.generation.chat import chat_prompt, end_of_turn_ids
from keras_llm.pretrained.gguf import read_gguf_tokenizer
from tests.tokenizers.byte_level_reference import CHATML, KINDS, TEXTS, train

# llama.cpp's names of the pre-tokenizers.
PRE = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2", "smollm": "smollm"}
HIDDEN, HEADS, KV_HEADS, FFN = 32, 4, 2, 64


@pytest.fixture(scope="module")
def references():
    return {kind: train(kind) for kind in KINDS}


def _add_tokenizer(writer, reference, pre, model="gpt2"):
    """llama.cpp's tokenizer keys, from a `tokenizers.Tokenizer` (as convert_hf_to_gguf.py writes them)."""
    vocabulary = reference.get_vocab(with_added_tokens=True)
    tokens = sorted(vocabulary, key=vocabulary.get)
    added = {t.content: t.special for t in reference.get_added_tokens_decoder().values()}
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([(3 if added[t] else 4) if t in added else 1 for t in tokens])
    writer.add_token_merges([" ".join(m) for m in json.loads(reference.to_str())["model"]["merges"]])
    writer.add_bos_token_id(vocabulary["<|endoftext|>"])
    writer.add_eos_token_id(vocabulary["<|im_end|>"])
    writer.add_add_bos_token(pre == "llama-bpe")
    writer.add_chat_template(CHATML)


def _write(path, reference=None, pre="gpt-2", model="gpt2", tensors=None, vocabulary_size=None):
    writer = gguf.GGUFWriter(str(path), "llama")
    if reference is not None:
        _add_tokenizer(writer, reference, pre, model)
    if tensors is not None:
        for key, value in [("block_count", 1), ("embedding_length", HIDDEN), ("feed_forward_length", FFN),
                           ("attention.head_count", HEADS), ("attention.head_count_kv", KV_HEADS),
                           ("context_length", 128), ("vocab_size", vocabulary_size)]:
            writer.add_uint32(f"llama.{key}", value)
        writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-6)
        writer.add_float32("llama.rope.freq_base", 50000.0)
        for name, array in tensors.items():
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    if tensors is not None:
        writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("kind", KINDS)
def test_tokenizer_metadata_reads_back_to_the_same_ids(references, kind, tmp_path):
    reference = references[kind]
    _write(tmp_path / "t.gguf", reference, PRE[kind])
    ours = read_gguf_tokenizer(tmp_path / "t.gguf")
    assert ours(TEXTS).to_list() == [e.ids for e in reference.encode_batch(TEXTS, add_special_tokens=False)]
    assert (ours.pre_tokenizer, ours.chat_template, ours.bos_token, ours.eos_token) == (
        kind, CHATML, "<|endoftext|>", "<|im_end|>")
    assert ours.end_token_id == reference.token_to_id("<|im_end|>")
    assert ours.add_bos_token == (kind == "llama3")
    assert ours.added_tokens == {"<|endoftext|>": True, "<|im_start|>": True, "<|im_end|>": True,
                                 "<|eot_id|>": True, "<think>": False, "</think>": False}


def test_other_tokenizers_are_refused_naming_the_file(references, tmp_path):
    _write(tmp_path / "sp.gguf", references["gpt2"], "default", model="llama")
    with pytest.raises(ValueError, match=r"sp\.gguf: keras_llm reads byte-level BPE tokenizers.*"
                                         r"Received: tokenizer.ggml.model='llama'"):
        read_gguf_tokenizer(tmp_path / "sp.gguf")
    _write(tmp_path / "ds.gguf", references["gpt2"], "deepseek-llm")
    with pytest.raises(ValueError, match=r"ds\.gguf: keras_llm reads the byte-level BPE pre-tokenizers "
                                         r"gpt-2, llama-bpe, qwen2, smollm. Received: tokenizer.ggml.pre='deepseek-llm'"):
        read_gguf_tokenizer(tmp_path / "ds.gguf")
    _write(tmp_path / "none.gguf")
    assert read_gguf_tokenizer(tmp_path / "none.gguf") is None


def _permute(weights, heads):
    """llama.cpp's convert_hf_to_gguf.py permutation of the query and key rows."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tiny_llama(vocabulary_size):
    """({Hugging Face name: array}, {GGUF name: array}) of a random one-layer Llama."""
    rng = np.random.default_rng(0)
    head_dim = HIDDEN // HEADS

    def normal(*shape):
        return (rng.normal(size=shape) * 0.2).astype(np.float32)

    hf = {"model.embed_tokens.weight": normal(vocabulary_size, HIDDEN),
          "model.norm.weight": 1 + normal(HIDDEN),
          "model.layers.0.input_layernorm.weight": 1 + normal(HIDDEN),
          "model.layers.0.post_attention_layernorm.weight": 1 + normal(HIDDEN),
          "model.layers.0.self_attn.q_proj.weight": normal(HEADS * head_dim, HIDDEN),
          "model.layers.0.self_attn.k_proj.weight": normal(KV_HEADS * head_dim, HIDDEN),
          "model.layers.0.self_attn.v_proj.weight": normal(KV_HEADS * head_dim, HIDDEN),
          "model.layers.0.self_attn.o_proj.weight": normal(HIDDEN, HEADS * head_dim),
          "model.layers.0.mlp.gate_proj.weight": normal(FFN, HIDDEN),
          "model.layers.0.mlp.up_proj.weight": normal(FFN, HIDDEN),
          "model.layers.0.mlp.down_proj.weight": normal(HIDDEN, FFN)}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    for hf_part, gguf_part in [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
                               ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                               ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                               ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                               ("mlp.down_proj", "ffn_down")]:
        names[f"model.layers.0.{hf_part}.weight"] = f"blk.0.{gguf_part}.weight"
    stored = {names[n]: a for n, a in hf.items()}
    stored["blk.0.attn_q.weight"] = _permute(stored["blk.0.attn_q.weight"], HEADS)
    stored["blk.0.attn_k.weight"] = _permute(stored["blk.0.attn_k.weight"], KV_HEADS)
    return hf, stored


def test_from_pretrained_gguf_gives_transformers_logits_and_carries_the_tokenizer(references, tmp_path):
    reference = references["smollm"]
    size = reference.get_vocab_size(with_added_tokens=True)
    hf_tensors, stored = _tiny_llama(size)
    _write(tmp_path / "tiny.gguf", reference, "smollm", tensors=stored, vocabulary_size=size)
    model = keras_llm.from_pretrained(str(tmp_path / "tiny.gguf"))
    assert keras_llm.pretrained.checkpoint_task(str(tmp_path / "tiny.gguf")) == "causal_lm"

    config = transformers.LlamaConfig(
        vocab_size=size, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=1,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
        rms_norm_eps=1e-6, rope_theta=50000.0, tie_word_embeddings=True)
    torch_model = transformers.LlamaForCausalLM(config).eval()
    torch_model.load_state_dict({n: torch.from_numpy(a) for n, a in hf_tensors.items()}, strict=False)
    prompt = chat_prompt([{"role": "user", "content": "What is 2+2?"}], model.tokenizer)
    ids = model.tokenizer(prompt).numpy()
    assert ids.tolist() == reference.encode(prompt, add_special_tokens=False).ids
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(ids[None].astype(np.int64))).logits.numpy()
    logits = model({"token_ids": ids[None], "padding_mask": np.ones_like(ids[None])})
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4)
    assert end_of_turn_ids(model.tokenizer) == [reference.token_to_id("<|im_end|>")]


@pytest.mark.slow  # writes a GGUF file and loads a model from it
def test_from_pretrained_gguf_dequantizes_each_tensor_once_and_holds_one_at_a_time(tmp_path, monkeypatch):
    """A load keeps the model's variables and one float32 tensor, not every tensor dequantized."""
    import gc
    import weakref

    hf_tensors, stored = _tiny_llama(48)
    _write(tmp_path / "tiny.gguf", tensors=stored, vocabulary_size=48)
    real, results, alive = gguf.quants.dequantize, [], []

    def dequantize(data, kind):
        gc.collect()
        alive.append(sum(r() is not None for r in results))  # earlier tensors still held
        array = np.array(real(data, kind))
        results.append(weakref.ref(array))
        return array

    monkeypatch.setattr(gguf.quants, "dequantize", dequantize)
    model = keras_llm.from_pretrained(str(tmp_path / "tiny.gguf"))
    assert len(alive) == len(stored)  # each tensor read once
    assert max(alive) <= 1, alive
    np.testing.assert_array_equal(np.asarray(model._embedding.embeddings),
                                  hf_tensors["model.embed_tokens.weight"])


def test_from_pretrained_gguf_bad_input(references, tmp_path, caplog):
    reference = references["gpt2"]
    size = reference.get_vocab_size(with_added_tokens=True)
    _, stored = _tiny_llama(size + 8)  # an embedding table wider than the tokenizer
    _write(tmp_path / "wide.gguf", reference, "gpt-2", tensors=stored, vocabulary_size=size + 8)
    with caplog.at_level(logging.WARNING, logger="keras_llm"):
        model = keras_llm.from_pretrained(str(tmp_path / "wide.gguf"))
    assert model.tokenizer is None
    assert "wide.gguf: the file's tokenizer is not attached to the model" in caplog.text
    with pytest.raises(ValueError, match=r"wide\.gguf: a GGUF checkpoint loads as task 'causal_lm' only"):
        keras_llm.from_pretrained(str(tmp_path / "wide.gguf"), task="classify", num_classes=2)
    with pytest.raises(FileNotFoundError, match=r"`path` must be a GGUF file. Received: .*missing\.gguf"):
        keras_llm.from_pretrained(str(tmp_path / "missing.gguf"))
