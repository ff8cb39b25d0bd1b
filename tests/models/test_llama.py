"""build_llama: parameter counts of the published configs, decoding through the cache."""

import numpy as np
import pytest

import keras_llm
from keras_llm.models import LLAMA_PRESETS
from tests.harness import check_model

# The counts the model cards publish.
PUBLISHED = {
    "smollm2_135m": 134_515_008,
    "smollm2_360m": 361_821_120,
    "llama3_2_1b": 1_235_814_400,
    "llama3_8b": 8_030_261_248,
    "qwen2_5_0_5b": 494_032_768,
    "mistral_7b": 7_241_732_096,
}


def closed_form(p):
    """The parameter count of a Llama-layout config, written out from its shapes."""
    d, v = p["hidden_dim"], p["vocabulary_size"]
    h = p.get("head_dim") or d // p["num_heads"]
    q, kv = p["num_heads"] * h, p["num_key_value_heads"] * h
    attention = d * q + 2 * d * kv + q * d + (q + 2 * kv if p.get("attention_bias") else 0)
    block = attention + 3 * d * p["intermediate_dim"] + 2 * d
    embeddings = v * d * (1 if p.get("tie_word_embeddings", True) else 2)
    return embeddings + p["num_layers"] * block + d


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_presets_have_the_published_parameter_counts(preset):
    assert closed_form(LLAMA_PRESETS[preset]) == PUBLISHED[preset]


@pytest.mark.parametrize("overrides", [
    {}, dict(attention_bias=True, tie_word_embeddings=False, head_dim=8),
])
def test_built_model_has_the_closed_form_count(overrides):
    model = keras_llm.build_llama("llama_tiny", **overrides)
    assert model.count_params() == closed_form({**LLAMA_PRESETS["llama_tiny"], **overrides})


@pytest.mark.slow
def test_smollm2_135m_builds_with_its_published_count():
    assert keras_llm.build_llama("smollm2_135m").count_params() == PUBLISHED["smollm2_135m"]


def test_decoding_with_the_cache_equals_recomputing():
    model = keras_llm.build_llama("llama_tiny", attention_bias=True, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16))
    ids = np.random.default_rng(0).integers(0, 512, size=(2, 7)).astype("int32")
    full = np.asarray(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    cache = model.empty_cache(2, 10)
    assert tuple(cache[0][0].shape) == (2, 2, 10, 16)  # key/value heads only
    logits, cache = model.call_with_cache(ids[:, :4], cache, 0)
    steps = [logits]
    for i in range(4, 7):
        logits, cache = model.call_with_cache(ids[:, i:i + 1], cache, i)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-4)


@pytest.mark.slow  # tracing the decoding loop: 5-15 s on 2 cores
def test_generator_greedy_equals_argmax_of_recomputed_logits():
    model = keras_llm.build_llama("llama_tiny", num_layers=1)
    ids = [3, 9, 27]
    out = keras_llm.generation.Generator(model).generate([list(ids)], max_new_tokens=4)
    for _ in range(4):
        x = np.array([ids], "int32")
        ids.append(int(np.argmax(model({"token_ids": x, "padding_mask": np.ones_like(x)})[0, -1])))
    assert [int(i) for i in out[0]] in (ids, ids[3:])


def test_messages_about_decoders_name_build_llama_and_a_llama_says_its_builder():
    from keras_llm.models import registry

    classifier = keras_llm.build_bert_classifier("bert_tiny", num_classes=2, vocabulary_size=50)
    with pytest.raises(ValueError, match=r"must be a causal LM \(keras_llm.build_gpt or "
                                         r"keras_llm.build_llama\)"):
        keras_llm.generation.Generator(classifier)
    model = keras_llm.build_llama("llama_tiny", num_layers=1)
    assert (model.task, registry.get_builder(model).name) == ("causal_lm", "build_llama")


def test_sliding_window_that_matters_is_refused_by_name():
    with pytest.raises(ValueError, match="sliding_window=64"):
        keras_llm.build_llama("llama_tiny", sliding_window=64)


@pytest.mark.slow  # training steps, from_config and .keras round trips: 10-30 s, as GPT's harness
def test_model_round_trips(tmp_path):
    model = keras_llm.build_llama("llama_tiny", num_layers=1, tie_word_embeddings=False)
    ids = np.random.default_rng(1).integers(0, 512, size=(2, 8)).astype("int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    check_model(model, x, np.roll(ids, -1, 1), tmp_path=tmp_path, atol=1e-5)
