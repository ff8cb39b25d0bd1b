"""build_llama's numerics against transformers (torch CPU, float32), weights copied by hand.

`from_pretrained` of Llama-family directories is not written yet: these tests
place the weights themselves, so they check the model's math, not an importer.
"""

import numpy as np
import pytest

import keras_llm

pytestmark = pytest.mark.slow

SIZES = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=16)


def _reference(kind):
    import torch
    import transformers

    torch.manual_seed(0)
    if kind == "llama":
        config = transformers.LlamaConfig(**SIZES, rope_scaling=LLAMA3, rope_theta=500000.0,
                                          tie_word_embeddings=True)
    elif kind == "mistral":
        config = transformers.MistralConfig(**SIZES, head_dim=12, sliding_window=None,
                                            tie_word_embeddings=False)
    else:
        config = transformers.Qwen2Config(**SIZES, rope_theta=1e6, tie_word_embeddings=False)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random norms, so a wrong gain shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    return config, model


def _ours(kind, config, reference):
    weights = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    model = keras_llm.build_llama(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, num_key_value_heads=config.num_key_value_heads,
        hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size,
        max_sequence_length=config.max_position_embeddings,
        head_dim=getattr(config, "head_dim", None) if kind == "mistral" else None,
        attention_bias=kind == "qwen2", tie_word_embeddings=config.tie_word_embeddings,
        rope_theta=config.rope_parameters["rope_theta"],
        rope_scaling=LLAMA3 if kind == "llama" else None, layer_norm_epsilon=config.rms_norm_eps,
    )
    values = {"token_embedding/embeddings": weights["model.embed_tokens.weight"],
              "final_norm/scale": weights["model.norm.weight"]}
    if not config.tie_word_embeddings:
        values["token_embedding/reverse_embeddings"] = weights["lm_head.weight"].T
    for i in range(config.num_hidden_layers):
        hf, ours = f"model.layers.{i}.", f"llama_block_{i}/"
        for a, b in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output")):
            values[f"{ours}self_attention/{b}/kernel"] = weights[f"{hf}self_attn.{a}_proj.weight"].T
            if f"{hf}self_attn.{a}_proj.bias" in weights:
                values[f"{ours}self_attention/{b}/bias"] = weights[f"{hf}self_attn.{a}_proj.bias"]
        for a in ("gate", "up", "down"):
            values[f"{ours}feedforward/{a}_dense/kernel"] = weights[f"{hf}mlp.{a}_proj.weight"].T
        values[f"{ours}self_attention_layer_norm/scale"] = weights[f"{hf}input_layernorm.weight"]
        values[f"{ours}feedforward_layer_norm/scale"] = weights[
            f"{hf}post_attention_layernorm.weight"]
    assert sorted(values) == sorted(v.path for v in model.weights)
    for variable in model.weights:
        variable.assign(values[variable.path])
    return model


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_logits_and_greedy_ids_match_transformers(kind):
    import torch

    config, reference = _reference(kind)
    model = _ours(kind, config, reference)
    ids = np.random.default_rng(0).integers(0, SIZES["vocab_size"], size=(2, 40)).astype("int32")
    with torch.no_grad():
        want = reference(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    got = np.asarray(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    np.testing.assert_allclose(got, want, atol=1e-4)
    with torch.no_grad():
        theirs = reference.generate(torch.tensor(ids[:1, :5], dtype=torch.long), do_sample=False,
                                    max_new_tokens=16, min_new_tokens=16)[0, 5:].tolist()
    ours = keras_llm.generation.Generator(model).generate([ids[0, :5].tolist()],
                                                           max_new_tokens=16)[0]
    assert [int(i) for i in ours][-16:] == theirs


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_model_from_hf_gives_transformers_logits(kind):
    import torch

    from keras_llm.pretrained._llama import model_from_hf

    config, reference = _reference(kind)
    tensors = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    model = model_from_hf(config.to_dict(), tensors, "tiny")
    ids = np.random.default_rng(1).integers(0, SIZES["vocab_size"], size=(1, 20)).astype("int32")
    with torch.no_grad():
        want = reference(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    got = np.asarray(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_model_from_hf_refuses_a_config_that_disagrees_with_the_tensors():
    from keras_llm.pretrained._llama import model_from_hf

    config, reference = _reference("llama")
    tensors = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    with pytest.raises(ValueError, match="tiny: model.layers.0.self_attn.k_proj.weight has shape"):
        model_from_hf({**config.to_dict(), "num_key_value_heads": 4}, tensors, "tiny")
    with pytest.raises(ValueError, match="hidden_act='gelu' is not supported"):
        model_from_hf({**config.to_dict(), "hidden_act": "gelu"}, tensors, "tiny")


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_from_pretrained_reads_a_transformers_directory(kind, tmp_path):
    import torch

    config, reference = _reference(kind)
    reference.save_pretrained(tmp_path / kind, max_shard_size="20KB")  # sharded, with an index
    assert (tmp_path / kind / "model.safetensors.index.json").exists()
    model = keras_llm.from_pretrained(tmp_path / kind)
    ids = np.random.default_rng(2).integers(0, SIZES["vocab_size"], size=(1, 12)).astype("int32")
    with torch.no_grad():
        want = reference(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    got = np.asarray(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    np.testing.assert_allclose(got, want, atol=1e-4)
