"""The span decoder and answer_questions against a NumPy brute force and Hugging Face's pipeline code."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from transformers.pipelines.document_question_answering import select_starts_ends

import keras_llm
from keras_llm.evaluation import answer_questions, best_spans
from tests.tokenizers.serving_check import STRESS, TRAINING_CORPUS
from tests.word_piece_reference import word_piece_pair


def brute_force(start_logits, end_logits, context, max_answer_length):
    """Every span, in float64: the best `start_logit + end_logit`; its softmax-probability product.

    The softmaxes run over the context and position 0 ([CLS]), as Hugging
    Face's pipeline normalizes them. Ties: the first span in (start, end) order.
    """
    normalized = context | (np.arange(len(context)) == 0)
    probability = lambda x: np.where(normalized, np.exp(x - x[normalized].max()), 0) / np.exp(
        x[normalized] - x[normalized].max()).sum()
    best, best_span = -np.inf, (-1, -1)
    for i in range(len(context)):
        for j in range(i, min(len(context), i + max_answer_length)):
            if context[i] and context[j] and start_logits[i] + end_logits[j] > best:
                best, best_span = start_logits[i] + end_logits[j], (i, j)
    if best_span == (-1, -1):
        return -1, -1, 0.0
    i, j = best_span
    return i, j, probability(start_logits)[i] * probability(end_logits)[j]


@pytest.mark.parametrize("max_answer_length", [1, 3, 30])
def test_best_spans_are_a_brute_force_searchs(max_answer_length):
    rng = np.random.default_rng(max_answer_length)
    rows, length = 60, 41
    start_logits = rng.normal(0, 3, (rows, length)).astype("float32")
    end_logits = rng.normal(0, 3, (rows, length)).astype("float32")
    # Windows: [CLS] question [SEP] context [SEP] padding; also scattered masks and none.
    context = np.zeros((rows, length), bool)
    for r in range(rows):
        if r % 10 == 9:
            context[r] = rng.random(length) < 0.3
        elif r % 10 != 8:
            first = int(rng.integers(2, 12))
            context[r, first : first + int(rng.integers(1, length - first))] = True
    start, end, score = (np.asarray(x) for x in best_spans(start_logits, end_logits, context, max_answer_length))
    for r in range(rows):
        i, j, p = brute_force(start_logits[r].astype("float64"), end_logits[r].astype("float64"),
                              context[r], max_answer_length)
        assert (start[r], end[r]) == (i, j), r
        np.testing.assert_allclose(score[r], p, rtol=2e-5, atol=1e-12)
    assert (start[8::10] == -1).all() and (score[8::10] == 0).all()  # no context: no span


def test_best_spans_are_hugging_faces_select_starts_ends():
    rng = np.random.default_rng(0)
    for _ in range(40):
        length = int(rng.integers(8, 60))
        question = int(rng.integers(1, length // 3))
        context_end = int(rng.integers(question + 3, length + 1))  # padding after it
        sequence_ids = np.array([-1] + [0] * question + [-1] + [1] * (context_end - question - 3)
                                + [-1] * (length - context_end + 1))[:length]
        start_logits = rng.normal(0, 4, length)
        end_logits = rng.normal(0, 4, length)
        max_answer_length = int(rng.integers(1, 20))
        # The pipeline's p_mask: 1 off the context, [CLS] kept in; padding by the attention mask.
        p_mask = (sequence_ids != 1).astype(int)
        p_mask[0] = 0
        attention = (np.arange(length) < context_end).astype(int)
        starts, ends, scores, _ = select_starts_ends(
            start_logits[None], end_logits[None], p_mask[None], attention[None],
            max_answer_len=max_answer_length,
        )
        start, end, score = best_spans(start_logits[None].astype("float32"), end_logits[None].astype("float32"),
                                       (sequence_ids == 1)[None], max_answer_length)
        if (sequence_ids == 1).any():
            assert (int(start[0]), int(end[0])) == (starts[0], ends[0])
            np.testing.assert_allclose(float(score[0]), scores[0], rtol=2e-5)


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    """A random question answerer, our tokenizer and Hugging Face's, from one vocab.txt."""
    ours, reference = word_piece_pair(tmp_path_factory.mktemp("vocab"))
    keras.utils.set_random_seed(3)
    model = keras_llm.build_bert_question_answerer(
        "bert_tiny", vocabulary_size=ours.vocabulary_size, max_sequence_length=48, num_layers=1
    )
    return dict(model=model, ours=ours, reference=reference)


def hugging_face_answer(model, reference, question, context, sequence_length, doc_stride, max_answer_length):
    """Hugging Face's question-answering pipeline, step by step, with our model's logits.

    Windows from its tokenizer, `p_mask` as its preprocess builds it, each
    window's span from its `select_starts_ends`, the best score over all
    windows, the answer cut from the context at its character offsets.
    """
    encoding = reference(
        question, context or " ", max_length=sequence_length, truncation="only_second",
        stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
    )
    best = None
    for w, ids in enumerate(encoding["input_ids"]):
        outputs = model({
            "token_ids": np.array([ids], "int32"),
            "segment_ids": np.array([encoding["token_type_ids"][w]], "int32"),
            "padding_mask": np.ones((1, len(ids)), "int32"),
        })
        sequence_ids = encoding.sequence_ids(w)
        p_mask = np.array([s != 1 for s in sequence_ids], int)
        p_mask[0] = 0  # the pipeline keeps [CLS] unmasked
        if p_mask[1:].all():
            continue  # no context token in the window
        starts, ends, scores, _ = select_starts_ends(
            np.asarray(outputs["start_logits"], "float64"), np.asarray(outputs["end_logits"], "float64"),
            p_mask[None], np.ones((1, len(ids)), int), max_answer_len=max_answer_length,
        )
        if len(scores) and (best is None or scores[0] > best[0]):
            offsets = encoding["offset_mapping"][w]
            best = (scores[0], offsets[starts[0]][0], offsets[ends[0]][1])
    if best is None:
        return "", 0.0, 0, 0
    score, start, end = best
    return context[start:end], score, start, end


def test_answers_are_hugging_faces_pipelines_over_doc_stride_windows(qa):
    rng = np.random.default_rng(1)
    words = " ".join(TRAINING_CORPUS[:3]).split()
    contexts = [" ".join(rng.choice(words, rng.integers(1, 90))) for _ in range(10)]
    contexts += ["Café  DÉJÀ vu,\tnaïve   résumé!", "漢字 日本語 한국어 🙂 emoji", "x" * 300, "", "   ", "\u200b"]
    contexts += [s for s in STRESS if s.strip()][:6]
    questions = ["Who jumps?", "café?", "", "the quick brown fox jumps over"] * 10
    questions = questions[: len(contexts)]
    settings = dict(sequence_length=48, doc_stride=12, max_question_length=10, max_answer_length=8)
    out = answer_questions(qa["model"], qa["ours"], questions, contexts, **settings)
    out = {k: v.numpy() for k, v in out.items()}
    several = 0  # contexts of more than one window
    for n, (question, context) in enumerate(zip(questions, contexts)):
        answer, score, start, end = hugging_face_answer(
            qa["model"], qa["reference"], question, context, 48, 12, 8
        )
        several += len(qa["reference"](question, context or " ", max_length=48, truncation="only_second",
                                       stride=12, return_overflowing_tokens=True)["input_ids"]) > 1
        assert out["answer"][n].decode("utf-8") == answer, (n, context)
        assert (out["start"][n], out["end"][n]) == (start, end), (n, context)
        assert context[out["start"][n] : out["end"][n]] == answer  # character offsets
        np.testing.assert_allclose(out["score"][n], score, rtol=1e-4, atol=1e-9)
    assert several >= 8  # a test of the test


def test_hostile_inputs_give_documented_answers(qa):
    model, ours = qa["model"], qa["ours"]
    settings = dict(doc_stride=8, max_question_length=10)
    # No questions: empty outputs of the documented dtypes.
    out = answer_questions(model, ours, [], [], **settings)
    assert {k: (v.dtype, v.shape) for k, v in out.items()} == {
        "answer": (tf.string, (0,)), "score": (tf.float32, (0,)), "start": (tf.int32, (0,)),
        "end": (tf.int32, (0,))}
    # An empty context, or one of no tokens: "" with score 0 at 0.
    out = answer_questions(model, ours, ["who?", "who?", "who?"], ["", " \t ", "\u200b\x00"], **settings)
    assert out["answer"].numpy().tolist() == [b""] * 3 and out["score"].numpy().tolist() == [0.0] * 3
    assert out["start"].numpy().tolist() == out["end"].numpy().tolist() == [0, 0, 0]
    # A 5,000-character context: an answer from its text, in any of its windows.
    long = " ".join(np.random.default_rng(0).choice(" ".join(TRAINING_CORPUS[:3]).split(), 900))[:5000]
    out = answer_questions(model, ours, ["what?"], [long], **settings)
    start, end = int(out["start"][0]), int(out["end"][0])
    assert 0 < end - start and long[start:end] == out["answer"].numpy()[0].decode()
    # A question longer than the window keeps its first max_question_length tokens.
    question = "the quick brown fox " * 30
    kept = "the quick brown fox the quick brown fox the quick"  # its first 10 tokens
    assert ours(question).numpy()[:10].tolist() == ours(kept).numpy().tolist()
    out, truncated = (answer_questions(model, ours, [q], [long[:400]], **settings) for q in (question, kept))
    assert out["answer"].numpy().tolist() == truncated["answer"].numpy().tolist()
    np.testing.assert_allclose(out["score"], truncated["score"])
    # Invalid UTF-8: read with U+FFFD; answers are valid UTF-8 and offsets count its characters.
    context = b"caf\xc3 the \xff quick brown fox"
    out = answer_questions(model, ours, ["what?"], [context], **settings)
    repaired = context.decode("utf-8", errors="replace")
    answer = out["answer"].numpy()[0].decode("utf-8")
    assert repaired[int(out["start"][0]) : int(out["end"][0])] == answer
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`question` and `context` must have one string each per example. "
                             r"Received: 1 questions and 2 contexts"):
        answer_questions(model, ours, ["a"], ["b", "c"], **settings)
    with pytest.raises(ValueError, match=r"`max_answer_length` must be a positive int \(tokens\). "
                                         r"Received: max_answer_length=0"):
        answer_questions(model, ours, ["a"], ["b"], max_answer_length=0, **settings)
    with pytest.raises(ValueError, match=r"`doc_stride` must be less than sequence_length - 3 - "
                                         r"max_question_length = 35"):
        answer_questions(model, ours, ["a"], ["b"], doc_stride=35, max_question_length=10)
