"""Seq2seq decoding through the Generator against references that recompute the whole target."""

import itertools

import keras
import numpy as np
import pytest

import keras_llm
from keras_llm.generation import Generator

VOCABULARY = 6  # ids 0..5; 1 starts the decoder, 2 ends sources and targets
START, END = 1, 2
CONTEXT = 16


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(5)
    model = keras_llm.build_seq2seq(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=CONTEXT, dropout=0.0, normalize_first=True,
        tie_embeddings=False,
    )
    # Large random weights: a fresh model repeats one token whatever the
    # source; these give targets that differ by source, by step and, for
    # beam search, by length penalty (checked below), so the tests can fail.
    rng = np.random.default_rng(1)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def compiled(model):
    return Generator(model, start_token_id=START)


@pytest.fixture(scope="module")
def graph(model):
    return Generator(model, jit_compile=False, start_token_id=START)


def target_log_probs(model, source, targets):
    """log p(target_t | source, target_<t) of each target row, recomputed whole (float64)."""
    targets = np.asarray(targets, "int32")
    decoder = np.concatenate([np.full((len(targets), 1), START, "int32"), targets[:, :-1]], 1)
    sources = np.repeat(np.asarray([source], "int32"), len(targets), 0)
    logits = np.asarray(model({
        "encoder_token_ids": sources, "encoder_padding_mask": np.ones_like(sources),
        "decoder_token_ids": decoder, "decoder_padding_mask": np.ones_like(decoder),
    })).astype("float64")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]  # [N, T]


def greedy_by_recomputing(model, source, steps):
    """Greedy decoding that runs the whole model on the whole target at every step."""
    target = []
    for _ in range(steps):
        decoder = np.array([[START] + target], "int32")
        logits = model({
            "encoder_token_ids": np.array([source], "int32"),
            "encoder_padding_mask": np.ones((1, len(source)), "int32"),
            "decoder_token_ids": decoder, "decoder_padding_mask": np.ones_like(decoder),
        })
        token = int(np.argmax(np.asarray(logits)[0, -1]))
        target.append(token)
        if token == END:
            break
    return target


SOURCES = [[3, 4, 5, 2], [5, 2], [4, 4, 3, 5, 3, 2]]


@pytest.mark.slow  # XLA-compiles the loop per bucket
def test_cached_greedy_decoding_equals_recomputing_the_whole_target(model, compiled):
    # The XLA loop; the export tests compare the graph loop (served) with it.
    generator = compiled
    got = generator.generate(SOURCES, max_new_tokens=6, stop_token_ids=[END])
    for source, ids in zip(SOURCES, got):
        assert ids.tolist() == greedy_by_recomputing(model, source, 6)
    assert len({tuple(ids.tolist()) for ids in got}) > 1  # the source matters


@pytest.mark.slow  # traces a 36-beam loop (5-20 s)
def test_beam_search_equals_exhaustive_search(model, graph):
    # The graph loop (6 s less than compiling the XLA one for 36 beams; the code is shared).
    generator = graph
    # With as many beams as there are prefixes (6^2 = 36 after two steps),
    # beam search keeps every candidate and must find the best of all
    # 6^3 targets (ending at the end token or after 3 tokens) by the
    # length-penalised score.
    source = SOURCES[0]
    candidates = []
    for target in itertools.product(range(VOCABULARY), repeat=3):
        target = list(target)
        length = target.index(END) + 1 if END in target else 3
        if target[:length] not in candidates:
            candidates.append(target[:length])
    padded = [c + [0] * (3 - len(c)) for c in candidates]
    log_probs = target_log_probs(model, source, padded)
    best = set()
    for alpha in (0.0, 0.6, 2.0):
        scores = [
            log_probs[n, : len(c)].sum() / ((5 + len(c)) / 6) ** alpha
            for n, c in enumerate(candidates)
        ]
        order = np.argsort(scores)[::-1]
        assert scores[order[0]] - scores[order[1]] > 1e-4  # no tie to break
        got = generator.generate([source], max_new_tokens=3, num_beams=36, length_penalty=alpha,
                                 stop_token_ids=[END])[0]
        assert got.tolist() == candidates[order[0]], alpha
        best.add(tuple(got.tolist()))
    assert len(best) > 1  # the length penalty changed the winner


@pytest.mark.parametrize("settings", [
    dict(),
    dict(num_beams=3),
    dict(temperature=1.0, top_k=4, seed=[7, 8, 9]),
])
def test_a_batch_of_unequal_sources_gives_each_row_what_it_gives_alone(compiled, graph, settings):
    # Greedy and sampling on the XLA loop, beam search on the graph loop (XLA
    # compiles a beam loop per shape for 9 s; the two loops are the same code).
    generator = graph if "num_beams" in settings else compiled
    together = generator.generate(SOURCES, max_new_tokens=[5, 7, 3], stop_token_ids=[END],
                                  **settings)
    for n, source in enumerate(SOURCES):
        alone = {**settings, "seed": settings["seed"][n]} if "seed" in settings else settings
        ids = generator.generate([source], max_new_tokens=[5, 7, 3][n], stop_token_ids=[END],
                                 **alone)[0]
        assert together[n].tolist() == ids.tolist()
        assert len(ids) <= [5, 7, 3][n]


@pytest.mark.parametrize("settings", [
    dict(),
    pytest.param(dict(num_beams=2), marks=pytest.mark.slow),  # traces the beam loop: 5 s
])
def test_the_decoder_runs_once_per_new_token(model, monkeypatch, settings):
    # A seq2seq decoder's prompt is its start token alone, which the loop's
    # first step reads: a pass over it before the loop (as a GPT's prompt
    # gets) would cost a whole decoder step per call. The traced graph must
    # call the decoder once, in the loop's step; and the result stays right.
    calls = []
    call_with_cache = model.call_with_cache

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return call_with_cache(*args, **kwargs)

    monkeypatch.setattr(model, "call_with_cache", counted)
    generator = Generator(model, jit_compile=False, start_token_id=START)
    got = generator.generate(SOURCES[:1], max_new_tokens=4, stop_token_ids=[END], **settings)
    assert len(calls) == 1
    if not settings:
        assert got[0].tolist() == greedy_by_recomputing(model, SOURCES[0], 4)


def test_text_in_text_out_with_the_training_layout():
    # A byte-level tokenizer: sources end with 256, the decoder starts from
    # 256 (seq2seq_dataset's defaults), generation stops at 256.
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_seq2seq(
        vocabulary_size=tokenizer.vocabulary_size, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64, dropout=0.0,
    )
    generator = Generator(model, tokenizer, jit_compile=False)
    assert (generator.start_token_id, generator.source_end_token_id, generator.end_token_id) == (
        256, 256, 256
    )
    ids = generator.generate([[104, 105, 256]], max_new_tokens=5, stop_token_ids=[])[0]
    text = generator.generate("hi", max_new_tokens=5, stop_token_ids=[])
    assert text == bytes(ids.tolist()).decode("utf-8", errors="replace")
    assert generator.generate(["", "x" * 500], max_new_tokens=2) is not None  # cut to the context


def test_bad_arguments_name_themselves(model, compiled):
    with pytest.raises(ValueError, match="`start_token_id=`"):
        Generator(model)  # no tokenizer to take the start token from
    with pytest.raises(ValueError, match=r"Source 0 has 17 tokens; the model reads at most 16"):
        compiled.generate([[3] * 17], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"`max_new_tokens` must be one int, or one per prompt \(1\)"):
        compiled.generate([[3, 2]], max_new_tokens=[2, 3])
    with pytest.raises(ValueError, match=r"`length_penalty` must be a number >= 0"):
        compiled.generate([[3, 2]], num_beams=2, length_penalty=-1.0)
    with pytest.raises(ValueError, match="deterministic: leave seed unset"):
        compiled.generate([[3, 2]], num_beams=2, seed=3)
    with pytest.raises(ValueError, match=r"`prompts` must be token ids in \[0, 6\)"):
        compiled.generate([[3, 6]])


def test_sources_have_the_layout_seq2seq_dataset_trains_with():
    # One "cut the source and add the end token" (keras_llm.generation.prompts), the
    # layout of keras_llm.data.seq2seq_dataset, which the generator and the export use.
    import tensorflow as tf

    from keras_llm.generation.prompts import source_ids

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    texts = ["Hallo", "", "x" * 20]
    data = keras_llm.data.seq2seq_dataset(
        [(t, "y") for t in texts], tokenizer, batch_size=1, shuffle=False, bucket=False,
        source_length=8,
    )
    trained = [x["encoder_token_ids"].numpy()[0][x["encoder_padding_mask"].numpy()[0] > 0].tolist()
               for x, _, _ in data]
    assert source_ids(tokenizer(tf.constant(texts)), 8, tokenizer.end_token_id).to_list() == trained
    assert trained[1] == [256] and len(trained[2]) == 8  # a test of the test
