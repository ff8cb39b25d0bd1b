"""The cached generator against references that recompute the whole sequence."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.generation import Generator

VOCABULARY = 17
CONTEXT = 32


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return keras_llm.build_gpt(vocabulary_size=VOCABULARY, num_layers=2, num_heads=2,
                               hidden_dim=16, intermediate_dim=32, max_sequence_length=CONTEXT)


def full_log_probs(model, ids):
    """float64 log-probabilities of the next token after `ids`, from one full pass."""
    x = np.asarray([ids], "int32")
    logits = np.asarray(model({"token_ids": x, "padding_mask": np.ones_like(x)}))[0, -1]
    logits = logits.astype("float64")
    return logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()


def greedy_by_recomputing(model, prompt, new, stop=()):
    ids = list(prompt)
    for _ in range(new):
        ids.append(int(np.argmax(full_log_probs(model, ids))))
        if ids[-1] in stop:
            break
    return ids[len(prompt):]


def beam_search_by_recomputing(model, prompt, new, beams, stop=()):
    """Beam search as documented: sum of log-probabilities, finished beams keep theirs."""
    live = [(0.0, list(prompt), False)]
    for _ in range(new):
        candidates = []
        for score, ids, done in live:
            if done:
                candidates.append((score, ids, True))
                continue
            log_probs = full_log_probs(model, ids)
            for token in np.argsort(-log_probs)[:beams]:
                candidates.append((score + log_probs[token], ids + [int(token)], int(token) in stop))
        live = sorted(candidates, key=lambda c: -c[0])[:beams]
    return max(live, key=lambda c: c[0])[1][len(prompt):]


PROMPTS = [[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2]]


@pytest.mark.parametrize("jit_compile", [True, False])
def test_greedy_with_the_cache_equals_recomputing_for_single_and_batched_prompts(model, jit_compile):
    generator = Generator(model, jit_compile=jit_compile)
    expected = [greedy_by_recomputing(model, p, 12) for p in PROMPTS]
    batched = generator.generate(PROMPTS, 12)
    assert [row.tolist() for row in batched] == expected
    for prompt, want in zip(PROMPTS, expected):
        assert generator.generate(prompt, 12).tolist() == want


def test_stop_tokens_end_a_row_and_stay_in_its_ids(model):
    generator = Generator(model, jit_compile=False)
    free = [greedy_by_recomputing(model, p, 10) for p in PROMPTS]
    stop = free[0][3]  # a token the first row emits at its 4th step
    out = generator.generate(PROMPTS, 10, stop_token_ids=[stop])
    for row, prompt in zip(out, PROMPTS):
        assert row.tolist() == greedy_by_recomputing(model, prompt, 10, stop=(stop,))
    assert out[0].tolist()[-1] == stop and len(out[0]) <= 4


@pytest.mark.parametrize("stop", [(), (5,)])
def test_beam_search_equals_a_beam_search_that_recomputes(model, stop):
    generator = Generator(model)
    for prompt in PROMPTS[:2]:
        expected = beam_search_by_recomputing(model, prompt, 6, beams=3, stop=stop)
        got = generator.generate(prompt, 6, num_beams=3, stop_token_ids=list(stop))
        assert got.tolist() == expected
    batched = generator.generate(PROMPTS[:2], 6, num_beams=3, stop_token_ids=list(stop))
    assert [r.tolist() for r in batched] == [
        beam_search_by_recomputing(model, p, 6, beams=3, stop=stop) for p in PROMPTS[:2]
    ]
    # One beam is greedy search.
    assert generator.generate(PROMPTS[0], 6, num_beams=1).tolist() == greedy_by_recomputing(
        model, PROMPTS[0], 6
    )


def filtered_probabilities(log_probs, temperature, top_k, top_p):
    """NumPy float64: softmax(logits / T) restricted to top-k, then to the top-p nucleus."""
    logits = log_probs / temperature
    order = np.argsort(-logits)
    keep = np.zeros(len(logits), bool)
    keep[order[:top_k] if top_k else order] = True
    p = np.where(keep, np.exp(logits - logits.max()), 0.0)
    p /= p.sum()
    ranked = p[order]
    before = np.cumsum(ranked) - ranked
    nucleus = np.zeros(len(logits), bool)
    nucleus[order[before < top_p]] = True
    p = np.where(keep & nucleus, p, 0.0)
    return p / p.sum()


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.5, 0, 0.8), (2.0, 8, 0.9)])
def test_sampled_tokens_follow_the_filtered_softmax(model, temperature, top_k, top_p):
    prompt, draws = [3, 1, 4], 4000
    expected = filtered_probabilities(full_log_probs(model, prompt), temperature, top_k, top_p)
    generator = Generator(model, jit_compile=False)
    column = lambda value, dtype: tf.fill([draws], tf.constant(value, dtype))
    out = generator.sample(
        np.tile(np.asarray([prompt], "int32"), [draws, 1]), np.ones((draws, 3), "int32"),
        column(1, tf.int32), column(temperature, tf.float32), column(top_k, tf.int32),
        column(top_p, tf.float32), tf.range(draws, dtype=tf.int32), tf.zeros([0], tf.int32),
    )
    first = out["generated_ids"].numpy()[:, 0]
    observed = np.bincount(first, minlength=VOCABULARY) / draws
    assert np.all(observed[expected == 0] == 0), "a filtered-out token was sampled"
    # 4000 draws: the standard error of a frequency is at most 0.008.
    np.testing.assert_allclose(observed, expected, atol=0.035)


def test_a_seed_gives_the_same_sample_alone_in_a_batch_with_and_without_xla(model):
    settings = dict(temperature=1.0, top_k=10, top_p=0.95, seed=11, stop_token_ids=[])
    compiled, graph = Generator(model), Generator(model, jit_compile=False)
    alone = compiled.generate(PROMPTS[0], 10, **settings).tolist()
    assert graph.generate(PROMPTS[0], 10, **settings).tolist() == alone
    assert compiled.generate(PROMPTS, 10, **settings)[0].tolist() == alone
    other = compiled.generate(PROMPTS[0], 10, **{**settings, "seed": 12}).tolist()
    assert other != alone


def test_compiled_once_per_shape_bucket(model):
    graph = Generator(model, jit_compile=False)
    for prompts in (PROMPTS, PROMPTS[:1], [[1, 2]] * 5):
        graph.generate(prompts, 4)
        graph.generate(prompts, 7, temperature=0.5, top_k=3, seed=1)
    assert graph.sample.experimental_get_tracing_count() == 1
    compiled = Generator(model)
    compiled.generate([[1, 2, 3]], 4)
    compiled.generate([[1, 2, 3, 4, 5, 6, 7]], 9, temperature=0.9, seed=2)  # same bucket
    assert compiled._compiled(1).experimental_get_tracing_count() == 1


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens(model):
    generator = Generator(model)
    prompt = list(np.random.default_rng(0).integers(0, VOCABULARY, size=CONTEXT + 5))
    out = generator.generate(prompt, 6)
    assert out.tolist() == greedy_by_recomputing(model, prompt[-(CONTEXT - 6):], 6)


def test_strings_in_and_out_with_a_tokenizer():
    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    generator = Generator(model, tokenizer)
    ids = generator.generate([list(tokenizer.encode_numpy("Hi"))], 5, stop_token_ids=[])[0]
    text = generator.generate("Hi", 5, stop_token_ids=[])
    assert text == tokenizer.detokenize(ids).numpy().decode("utf-8", "replace")
    # An empty prompt starts a new document from <|endoftext|>.
    from_end = generator.generate([tokenizer.end_token_id], 3, stop_token_ids=[])
    empty = generator.generate([""], 3, stop_token_ids=[])[0]
    assert empty == tokenizer.detokenize(from_end).numpy().decode("utf-8", "replace")
    assert keras_llm.generate(model, "Hi", 5, tokenizer=tokenizer, stop_token_ids=[]) == text


def test_bad_arguments_name_themselves(model):
    generator = Generator(model)
    for kwargs, match in [
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=CONTEXT), "max_new_tokens"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=1.5), "top_p"),
        (dict(num_beams=0), "num_beams"),
        (dict(num_beams=2, temperature=1.0), "deterministic"),
    ]:
        with pytest.raises(ValueError, match=match):
            generator.generate([1, 2], **{"max_new_tokens": 4, **kwargs})
    with pytest.raises(ValueError, match="tokenizer"):
        generator.generate("text")
    with pytest.raises(ValueError, match="Prompt 1 is empty"):
        generator.generate([[1], []])
    with pytest.raises(ValueError, match="build_gpt"):
        Generator(keras_llm.build_bert_classifier("bert_tiny", num_classes=2, vocabulary_size=50))
