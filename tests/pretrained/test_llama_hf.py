"""Llama, Mistral and Qwen2 checkpoints in and out of build_llama, against transformers (float32).

The references are tiny random transformers models: Llama with Llama-3 rope
scaling (tied), Mistral with a head width apart from hidden / heads and a
window (untied), Qwen2 with its q/k/v biases (untied); their norms and biases
are drawn away from 1 and 0, so that a misplaced gain or bias shows. The quick
tests at the end need no torch: they check what is refused, by name.
"""

import json
import os

import numpy as np
import pytest

import keras_llm
from keras_llm.models import registry
from keras_llm.pretrained import _llama
from tests.pretrained.checkpoints import read_config, snapshot

SIZES = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
             bos_token_id=None, eos_token_id=None)  # no end token: greedy runs its 64 tokens
LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=16)
KINDS = ["llama", "mistral", "qwen2"]
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM"}
# The config values that make the math, as transformers reads them back.
MATH = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
        "hidden_act", "rms_norm_eps",
        "rope_parameters", "tie_word_embeddings", "attention_bias", "mlp_bias", "sliding_window",
        "use_sliding_window", "layer_types")


def _ids(seed, shape):
    return np.random.default_rng(seed).integers(0, SIZES["vocab_size"], size=shape).astype("int32")


def _logits(model, ids):
    return np.asarray(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """kind -> (transformers model, the directory it saved, sharded with an index)."""
    import torch
    import transformers

    found = {}
    for kind in KINDS:
        torch.manual_seed(0)
        if kind == "llama":
            config = transformers.LlamaConfig(**SIZES, rope_scaling=LLAMA3, rope_theta=500000.0,
                                              tie_word_embeddings=True)
        elif kind == "mistral":
            config = transformers.MistralConfig(**SIZES, head_dim=12, tie_word_embeddings=False,
                                                sliding_window=SIZES["max_position_embeddings"])
        else:
            config = transformers.Qwen2Config(**SIZES, rope_theta=1e6, tie_word_embeddings=False)
        model = transformers.AutoModelForCausalLM.from_config(config).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or name.endswith("bias"):
                    p.normal_(1.0 if "norm" in name else 0.0, 0.3)
        path = tmp_path_factory.mktemp("references") / kind
        model.save_pretrained(path, max_shard_size="20KB")
        assert (path / "model.safetensors.index.json").exists()
        found[kind] = model, str(path)
    return found


def _their_logits(reference, ids):
    import torch

    with torch.no_grad():
        return reference(torch.tensor(ids, dtype=torch.long)).logits.numpy()


@pytest.mark.slow  # transformers, and a decoding loop traced per kind
@pytest.mark.parametrize("kind", KINDS)
def test_from_pretrained_gives_transformers_logits_and_64_greedy_ids(kind, references):
    import torch

    reference, path = references[kind]
    model = keras_llm.from_pretrained(path)
    assert registry.get_builder(model).name == "build_llama"
    ids = _ids(0, (2, 40))
    np.testing.assert_allclose(_logits(model, ids), _their_logits(reference, ids), atol=1e-4)
    with torch.no_grad():
        theirs = reference.generate(torch.tensor(ids[:1, :5], dtype=torch.long), do_sample=False,
                                    max_new_tokens=64)[0, 5:].tolist()
    assert len(theirs) == 64
    ours = keras_llm.generation.Generator(model).generate([ids[0, :5].tolist()], max_new_tokens=64)
    assert [int(i) for i in ours[0]][-64:] == theirs


@pytest.mark.slow  # transformers
@pytest.mark.parametrize("kind", KINDS)
def test_save_pretrained_writes_what_transformers_reads_and_round_trips(kind, references, tmp_path):
    import transformers

    reference, path = references[kind]
    model = keras_llm.from_pretrained(path)
    out = keras_llm.save_pretrained(model, tmp_path / "out")
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    written = read_config(out)
    assert written["architectures"] == [ARCHITECTURES[kind]]
    # transformers reads back the config it wrote itself, key for key.
    theirs = transformers.AutoConfig.from_pretrained(out)
    for key in MATH:
        assert getattr(theirs, key, None) == getattr(reference.config, key, None), key
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = _ids(1, (2, 24))
    want = _their_logits(reference, ids)
    np.testing.assert_allclose(_their_logits(loaded, ids), want, atol=1e-4)
    # from_pretrained(save_pretrained(model)) is the same model.
    again = keras_llm.from_pretrained(out)
    assert again.builder_config == model.builder_config
    np.testing.assert_allclose(_logits(again, ids), _logits(model, ids), atol=1e-6)
    np.testing.assert_allclose(_logits(again, ids), want, atol=1e-4)


@pytest.fixture(scope="module")
def byte_pair(tmp_path_factory):
    """A small byte-level BPE (GPT-2's layout, 300 ids), trained here."""
    corpus = ["The cat sat on the mat.", "def f(x):\n    return x + 1",
              "caf\u00e9 \u4e2d\u6587 \U0001F642"]
    files = keras_llm.tokenizers.train_byte_pair(corpus * 20, 300, tmp_path_factory.mktemp("bpe"))
    return keras_llm.tokenizers.CoreOpsBytePairTokenizer(*files)


@pytest.mark.slow  # transformers' AutoTokenizer
def test_save_pretrained_writes_the_tokenizer_that_from_pretrained_attaches(byte_pair, tmp_path):
    import transformers

    model = keras_llm.build_llama("llama_tiny", num_layers=1, tokenizer=byte_pair,
                                  tie_word_embeddings=False)
    path = keras_llm.save_pretrained(model, tmp_path / "tiny")
    assert {"vocab.json", "merges.txt"} <= set(os.listdir(path))
    assert read_config(path)["eos_token_id"] == byte_pair.end_token_id
    texts = ["The cat sat", "caf\u00e9 \U0001F642  x", "def g(y):\n\treturn y"]
    reference = transformers.AutoTokenizer.from_pretrained(path)
    want = [reference(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert byte_pair(texts).to_list() == want
    loaded = keras_llm.from_pretrained(path)
    assert loaded.tokenizer(texts).to_list() == want
    ids = np.array([[5, 17, 42, 9]], "int32")
    np.testing.assert_allclose(_logits(loaded, ids), _logits(model, ids), atol=1e-6)


# -- quick: no torch ----------------------------------------------------------

TINY = dict(vocabulary_size=64, num_layers=1, num_heads=2, num_key_value_heads=1, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=32)


def test_the_registry_declares_the_architectures_the_llama_family_maps():
    builder = registry.get_builder(keras_llm.build_llama(**TINY))
    assert set(builder.hugging_face) == set(_llama.FILE_PARTS) == set(ARCHITECTURES.values())
    for architecture in builder.hugging_face:
        task, found = registry.checkpoint_builder(architecture)
        assert (task.name, found) == ("causal_lm", builder)


def test_save_pretrained_picks_the_architecture_from_the_configuration(tmp_path):
    for n, (overrides, architecture) in enumerate([
        (dict(), "LlamaForCausalLM"),
        (dict(attention_bias=True), "Qwen2ForCausalLM"),
        (dict(sliding_window=32), "MistralForCausalLM"),
        (dict(head_dim=12, num_heads=3, num_key_value_heads=1), "MistralForCausalLM"),
    ]):
        path = keras_llm.save_pretrained(keras_llm.build_llama(**{**TINY, **overrides}),
                                         tmp_path / f"model_{n}")
        assert read_config(path)["architectures"] == [architecture]
        assert keras_llm.pretrained.checkpoint_task(path) == "causal_lm"


def test_a_table_padded_past_its_tokenizer_keeps_the_tokenizer_and_decodes_only_its_ids(
        tmp_path, byte_pair):
    # Qwen2.5's layout in small: 384 rows (a multiple of 128) for the 300 tokens. Before,
    # a causal LM refused any tokenizer smaller than its table, and from_pretrained left the
    # checkpoint's tokenizer out with a warning.
    model = keras_llm.build_llama(**{**TINY, "vocabulary_size": 384}, attention_bias=True,
                                  tie_word_embeddings=False, tokenizer=byte_pair)
    head = model.get_layer("token_embedding").reverse_embeddings  # [D, V]
    # Spare columns 100 times the tokens' scale: unmasked, one of the 84 would win.
    head.assign(np.where(np.arange(384) >= 300, 10.0, 0.1) * np.asarray(head))
    path = keras_llm.save_pretrained(model, tmp_path / "qwen_like")
    assert read_config(path)["architectures"] == ["Qwen2ForCausalLM"]
    loaded = keras_llm.from_pretrained(path)
    assert loaded.tokenizer is not None and loaded.tokenizer.vocabulary_size == 300
    ids = np.array([byte_pair("The cat").numpy()], "int32")
    assert int(np.argmax(_logits(loaded, ids)[0, -1])) >= 300
    new = keras_llm.generation.Generator(loaded, jit_compile=False).generate(
        [ids[0].tolist()], max_new_tokens=5, stop_token_ids=[])[0]
    assert len(new) == 5 and max(new) < 300

def test_what_no_checkpoint_architecture_writes_is_refused_by_name(tmp_path, byte_pair):
    before = snapshot(tmp_path)
    windowed = keras_llm.build_llama(**TINY, attention_bias=True, sliding_window=32)
    with pytest.raises(ValueError, match=r"attention_bias=True, sliding_window=32"):
        keras_llm.save_pretrained(windowed, tmp_path / "out")
    # A tokenizer of another vocabulary: the model's ids would not be its.
    with pytest.raises(ValueError, match=r"at most the model's 64 token ids.*vocabulary_size=300"):
        keras_llm.save_pretrained(keras_llm.build_llama(**TINY), tmp_path / "out",
                                  tokenizer=byte_pair)
    with pytest.raises(ValueError, match=r"must have the model's 64 token ids, or fewer.*with 300 token ids"):
        keras_llm.build_llama(**TINY).tokenizer = byte_pair
    assert snapshot(tmp_path) == before


def test_from_pretrained_refuses_what_build_llama_does_not_compute(tmp_path):
    path = keras_llm.save_pretrained(keras_llm.build_llama(**TINY), tmp_path / "tiny")
    config = read_config(path)

    def write(config):
        with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)

    for changes, match in [
        (dict(architectures=["LlamaForSequenceClassification"]),
         r"architectures=\['LlamaForSequenceClassification'\] is not supported.*LlamaForCausalLM, "
         r"MistralForCausalLM, Qwen2ForCausalLM"),
        (dict(hidden_act="gelu"), r"hidden_act='gelu' is not supported"),
        (dict(attention_bias=True), r"attention_bias=True is not supported.*no output bias"),
        (dict(rope_scaling=dict(rope_type="yarn", factor=4.0)),
         r"rope_type='yarn' is not supported"),
        (dict(partial_rotary_factor=0.5), r"partial_rotary_factor=0.5 is not supported"),
        (dict(num_key_value_heads=2),
         r"model.layers.0.self_attn.k_proj.weight has shape \[8, 16\], "
         r"but the config needs \[16, 16\]"),
    ]:
        write({**config, **changes})
        with pytest.raises(ValueError, match=match):
            keras_llm.from_pretrained(path)
    write(config)
    assert keras_llm.from_pretrained(path).builder_config["num_key_value_heads"] == 1
