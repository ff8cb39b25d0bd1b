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


# One generator of each kind for the module: each compiles once per shape bucket and
# settings are call arguments, so tests share them rather than each paying for XLA.
@pytest.fixture(scope="module")
def compiled(model):
    return Generator(model)


@pytest.fixture(scope="module")
def graph(model):
    return Generator(model, jit_compile=False)


@pytest.fixture
def generator(request, compiled, graph):
    """`compiled` or `graph`, as the test's `jit_compile` parameter says."""
    return compiled if request.node.callspec.params["jit_compile"] else graph


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


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [True, False])
def test_greedy_with_the_cache_equals_recomputing_for_single_and_batched_prompts(
    model, generator, jit_compile
):
    expected = [greedy_by_recomputing(model, p, 12) for p in PROMPTS]
    batched = generator.generate(PROMPTS, 12)
    assert [row.tolist() for row in batched] == expected
    for prompt, want in zip(PROMPTS, expected):
        assert generator.generate(prompt, 12).tolist() == want


def test_stop_tokens_end_a_row_and_stay_in_its_ids(model, graph):
    generator = graph
    free = [greedy_by_recomputing(model, p, 10) for p in PROMPTS]
    stop = free[0][3]  # a token the first row emits at its 4th step
    out = generator.generate(PROMPTS, 10, stop_token_ids=[stop])
    for row, prompt in zip(out, PROMPTS):
        assert row.tolist() == greedy_by_recomputing(model, prompt, 10, stop=(stop,))
    assert out[0].tolist()[-1] == stop and len(out[0]) <= 4


@pytest.mark.slow
@pytest.mark.parametrize("stop", [(), (5,)])
def test_beam_search_equals_a_beam_search_that_recomputes(model, compiled, stop):
    generator = compiled
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


@pytest.mark.slow
@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.5, 0, 0.8), (2.0, 8, 0.9)])
def test_sampled_tokens_follow_the_filtered_softmax(model, graph, temperature, top_k, top_p):
    prompt, draws = [3, 1, 4], 4000
    expected = filtered_probabilities(full_log_probs(model, prompt), temperature, top_k, top_p)
    generator = graph
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


@pytest.mark.slow  # 13 s: two compiled loops per batch shape; the fast tier is at its 3 minutes
def test_a_seed_gives_the_same_sample_alone_in_a_batch_with_and_without_xla(model, compiled, graph):
    settings = dict(temperature=1.0, top_k=10, top_p=0.95, seed=11, stop_token_ids=[])
    alone = compiled.generate(PROMPTS[0], 10, **settings).tolist()
    assert graph.generate(PROMPTS[0], 10, **settings).tolist() == alone
    assert compiled.generate(PROMPTS, 10, **settings)[0].tolist() == alone
    other = compiled.generate(PROMPTS[0], 10, **{**settings, "seed": 12}).tolist()
    assert other != alone


@pytest.mark.slow
def test_compiled_once_per_shape_bucket(model):
    graph = Generator(model, jit_compile=False)
    for prompts in (PROMPTS, PROMPTS[:1], [[1, 2]] * 5):
        graph.generate(prompts, 4)
        graph.generate(prompts, 7, temperature=0.5, top_k=3, seed=1)
    assert graph.sample.experimental_get_tracing_count() == 1
    # The XLA loop is traced once too: XLA compiles it per bucket of shapes
    # (bucket_shapes, tested in tests/export/test_export_xla.py).
    compiled = Generator(model)
    for prompts in (PROMPTS, PROMPTS[:1], [[1, 2]] * 5):
        compiled.generate(prompts, 4)
        compiled.generate(prompts, 9, temperature=0.9, seed=2)
    assert compiled.compiled_sample.experimental_get_tracing_count() == 1
    assert compiled._xla_loop(1).experimental_get_tracing_count() == 1


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens(model, compiled):
    generator = compiled
    prompt = list(np.random.default_rng(0).integers(0, VOCABULARY, size=CONTEXT + 5))
    out = generator.generate(prompt, 6)
    assert out.tolist() == greedy_by_recomputing(model, prompt[-(CONTEXT - 6):], 6)


def test_strings_in_and_out_with_a_tokenizer():
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, tokenizer=tokenizer)
    generator = Generator(model, tokenizer, jit_compile=False)  # strings, not XLA, tested here
    ids = generator.generate([list(tokenizer.encode_numpy("Hi"))], 5, stop_token_ids=[])[0]
    text = generator.generate("Hi", 5, stop_token_ids=[])
    assert text == tokenizer.detokenize(ids).numpy().decode("utf-8", "replace")
    # An empty prompt starts a new document from <|endoftext|>.
    from_end = generator.generate([tokenizer.end_token_id], 3, stop_token_ids=[])
    empty = generator.generate([""], 3, stop_token_ids=[])[0]
    assert empty == tokenizer.detokenize(from_end).numpy().decode("utf-8", "replace")
    assert keras_llm.generate(model, "Hi", 5, tokenizer=tokenizer, stop_token_ids=[]) == text
    # Without a tokenizer: the one the model carries (the same Generator, kept).
    assert keras_llm.generate(model, "Hi", 5, stop_token_ids=[]) == text


def test_bad_arguments_name_themselves(model, compiled):
    generator = compiled
    for kwargs, match in [
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=CONTEXT), "max_new_tokens"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=-1), "top_k"),
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
    with pytest.raises(ValueError, match="build_gpt.*Received: a classifier model"):
        Generator(keras_llm.build_bert_classifier("bert_tiny", num_classes=2, vocabulary_size=50))
    # A plain functional copy of the GPT (what a .keras file of an earlier
    # keras_llm loads as) has its layers but not the decoding interface.
    plain = keras.Model(model.inputs, model.outputs, name="old_gpt")
    with pytest.raises(ValueError, match="'old_gpt'.*no decoding interface.*set_weights"):
        Generator(plain)


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("bad", [999, -7, VOCABULARY])
def test_prompt_ids_outside_the_vocabulary_are_an_error_on_every_path(
    model, generator, jit_compile, bad
):
    with pytest.raises(ValueError, match=rf"`prompts` must be token ids in \[0, {VOCABULARY}\).*: {bad}$"):
        generator.generate([[1, 2], [3, bad]], 4)
    with pytest.raises(ValueError, match=rf"`prompts` must be token ids in \[0, {VOCABULARY}\)"):
        generator.generate([bad], 4, num_beams=2)
    with pytest.raises(ValueError, match=rf"`stop_token_ids` must be token ids in \[0, {VOCABULARY}\)"):
        generator.generate([1, 2], 4, stop_token_ids=[bad])


def test_bad_prompts_and_settings_are_named_and_no_prompts_give_no_completions(model, compiled):
    generator = compiled
    for prompts, error, match in [
        (None, TypeError, "`prompts` must be a string.*Received: prompts=None"),
        ([[1.5, 2.0]], TypeError, r"token ids \(lists of ints\). Received: prompt 0=\[1.5, 2.0\]"),
        ([[1], "text"], TypeError, "Received: prompt 1='text'"),
    ]:
        with pytest.raises(error, match=match):
            generator.generate(prompts, 4)
    for kwargs, match in [
        (dict(seed=2**31), r"`seed` must be an int in \[-2\*\*31, 2\*\*31\). Received: seed=2147483648"),
        (dict(seed="1"), "Received: seed='1'"),
        (dict(max_new_tokens=True), "Received: max_new_tokens=True"),
        (dict(stop_token_ids=5), "`stop_token_ids` must have a length"),
        (dict(stop_token_ids=[[1], [2, 3]]), "`stop_token_ids` must be a flat list"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            generator.generate([1, 2], **{"max_new_tokens": 4, **kwargs})
    assert generator.generate([], 4) == []
    # top_k=0 is "no top-k", as in Hugging Face: the same draw as top_k=None.
    sampled = dict(temperature=1.0, seed=5, stop_token_ids=[])
    assert generator.generate([3, 1, 4], 6, top_k=0, **sampled).tolist() == generator.generate(
        [3, 1, 4], 6, top_k=None, **sampled
    ).tolist()


def _settings(n, max_new_tokens=4):
    """Greedy settings `[n]` for `Generator.sample` (n = 1: one value for every prompt)."""
    return (tf.fill([n], max_new_tokens), tf.zeros([n]), tf.zeros([n], tf.int32), tf.ones([n]),
            tf.zeros([n], tf.int32))


def _padded(prompts):
    width = max(map(len, prompts))
    ids = np.array([p + [0] * (width - len(p)) for p in prompts], "int32")
    mask = np.array([[1] * len(p) + [0] * (width - len(p)) for p in prompts], "int32")
    return ids, mask


def test_sample_takes_one_value_per_prompt_or_one_for_all_and_nothing_else(model, graph):
    generator = graph
    ids, mask = _padded(PROMPTS)
    expected = [greedy_by_recomputing(model, p, 4) for p in PROMPTS]
    stops = tf.zeros([0], tf.int32)
    for n in (1, len(PROMPTS)):
        out = generator.sample(ids, mask, *_settings(n), stops)
        counts = out["generated_length"].numpy()
        assert [row[:c].tolist() for row, c in zip(out["generated_ids"].numpy(), counts)] == expected
    settings = list(_settings(len(PROMPTS)))
    for index, name in enumerate(["max_new_tokens", "temperature", "top_k", "top_p", "seed"]):
        wrong = settings[:index] + [tf.concat([settings[index]] * 2, 0)] + settings[index + 1:]
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=rf"`{name}` must have one value per prompt \(3 prompts\) or one value for all. "
            rf"Received: 6 values of {name}",
        ):
            generator.sample(ids, mask, *wrong, stops)
    search = generator.beam_search(2)
    out = search(ids[:2], mask[:2], tf.constant([4]), stops, 0.0)
    assert out["generated_ids"].shape == (2, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`max_new_tokens` must have one value"):
        search(ids, mask, tf.constant([4, 4]), stops, 0.0)


def test_no_prompts_give_empty_outputs_and_bad_ids_are_named_in_the_graph(model, graph):
    generator = graph
    empty = np.zeros((0, 3), "int32")
    stops = tf.zeros([0], tf.int32)
    for out in (generator.sample(empty, empty, *_settings(0), stops),
                generator.sample(empty, empty, *_settings(1), stops),
                generator.beam_search(2)(empty, empty, tf.constant([4]), stops, 0.0)):
        assert out["generated_ids"].dtype == tf.int32 and out["generated_ids"].shape == (0, 0)
        assert out["generated_length"].dtype == tf.int32 and out["generated_length"].shape == (0,)
    ids, mask = _padded([[1, 2], [3, VOCABULARY + 5]])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"`token_ids` must be token ids in \[0, {VOCABULARY}\).*: {VOCABULARY + 5}\]"):
        generator.sample(ids, mask, *_settings(2), stops)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`padding_mask` must have the shape of `token_ids` \(2, 2\). "
                             r"Received: padding_mask of shape 2, 1"):
        generator.sample(ids, mask[:, :1], *_settings(2), stops)


def test_one_seed_per_prompt_gives_each_row_its_own_sample(model, compiled):
    """A list of seeds: each row samples as it does alone with its seed (a scalar seed is shared)."""
    generator = compiled
    prompts = [[5, 6, 7], [9, 10]]
    alone = [generator.generate(p, 6, temperature=1.0, seed=s)
             for p, s in zip(prompts, (11, 12))]
    batched = generator.generate(prompts, 6, temperature=1.0, seed=[11, 12])
    for a, b in zip(alone, batched):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"`seed` must be one int, or one per prompt \(2\). Received: 3 seed values"):
        generator.generate(prompts, 6, temperature=1.0, seed=[1, 2, 3])
    with pytest.raises(ValueError, match=r"Received: seed=2147483648"):
        generator.generate(prompts, 6, temperature=1.0, seed=[1, 2**31])


def test_the_generator_uses_the_tokenizer_the_model_carries():
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_gpt(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                                max_sequence_length=32, tokenizer=tokenizer)
    carried = Generator(model, jit_compile=False)
    assert carried.tokenizer is tokenizer and carried.end_token_id == tokenizer.end_token_id
    # As with the tokenizer given, and as recomputing: an empty prompt starts from the end token.
    ids = greedy_by_recomputing(model, [tokenizer.end_token_id], 3)
    assert carried.generate([""], 3, stop_token_ids=[]) == [
        tokenizer.detokenize(ids).numpy().decode("utf-8", "replace")]
    # An explicit tokenizer overrides the carried one, checked against the model.
    with pytest.raises(ValueError, match=r"`tokenizer` must have the model's 258 token ids, or fewer padded"):
        Generator(model, keras_llm.tokenizers.WordPieceTokenizer(["[PAD]", "[UNK]", "a"]))
    bare = keras_llm.build_gpt(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                               vocabulary_size=258, max_sequence_length=32)
    with pytest.raises(ValueError, match=r"String prompts need a tokenizer: pass `tokenizer=`.*"
                                         r"build the model with one"):
        Generator(bare).generate("Hi", 3)
