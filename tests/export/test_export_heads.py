"""Tagger and question-answering exports: Hugging Face's word alignment, Python's answers, a TensorFlow-only process."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.evaluation import answer_questions, best_spans
from tests.tokenizers.serving_check import STRESS, TRAINING_CORPUS
from tests.word_piece_reference import word_piece_pair

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
QA_SETTINGS = dict(doc_stride=12, max_question_length=10, max_answer_length=8)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A random tagger and a random question answerer, exported once for the module."""
    base = tmp_path_factory.mktemp("saved_models")
    ours, reference = word_piece_pair(tmp_path_factory.mktemp("vocab"))
    keras.utils.set_random_seed(5)
    tagger = keras_llm.build_bert_tagger(
        "bert_tiny", num_classes=len(TAGS), vocabulary_size=ours.vocabulary_size,
        max_sequence_length=24, num_layers=1,
    )
    question_answerer = keras_llm.build_bert_question_answerer(
        "bert_tiny", vocabulary_size=ours.vocabulary_size, max_sequence_length=48, num_layers=1
    )
    return dict(
        ours=ours, reference=reference, tagger=tagger, question_answerer=question_answerer,
        tagger_path=keras_llm.export(tagger, str(base / "tagger"), ours, label_names=TAGS),
        qa_path=keras_llm.export(question_answerer, str(base / "qa"), ours, **QA_SETTINGS),
    )


def sentences():
    """Texts of 0-30 words with odd spacing, non-ASCII words and words of no token."""
    rng = np.random.default_rng(0)
    words = " ".join(TRAINING_CORPUS[:3]).split() + ["\u200b", "supercalifragilistic", "ǅ", "!!"]
    spaces = [" ", "  ", "\t", "\n", "\u00a0", "\u3000", " \u2028 "]
    texts = []
    for _ in range(14):
        chosen = rng.choice(words, rng.integers(0, 30))
        texts.append("".join(w + str(rng.choice(spaces)) for w in chosen))
    return texts + [s for s in STRESS if not any(0x1C <= ord(c) <= 0x1F for c in s)][:12]


def expected_tags(tagger, reference, text):
    """Per word of `text.split()`: the tag of its first piece, as Hugging Face aligns words.

    Hugging Face's BertTokenizerFast on the words (`is_split_into_words=True`,
    truncated to the model's context); `word_ids()` says which word each
    token is of; a word's first token gives its tag (float64 softmax). Words
    with no token in the window: -1 and 0.
    """
    words = text.split()
    encoding = reference(words, is_split_into_words=True, truncation=True, max_length=24)
    logits = np.asarray(tagger({
        "token_ids": np.array([encoding["input_ids"]], "int32"),
        "segment_ids": np.zeros((1, len(encoding["input_ids"])), "int32"),
        "padding_mask": np.ones((1, len(encoding["input_ids"])), "int32"),
    }), "float64")[0]
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    tag_ids, scores = [-1] * len(words), [0.0] * len(words)
    for position, word in enumerate(encoding.word_ids()):
        if word is not None and tag_ids[word] == -1:
            tag_ids[word] = int(probabilities[position].argmax())
            scores[word] = float(probabilities[position].max())
    return words, tag_ids, scores


def check_tagged(served, tagger, reference, texts):
    count = max([len(t.split()) for t in texts] + [0])
    assert np.asarray(served["words"]).shape == (len(texts), count)
    for n, text in enumerate(texts):
        words, tag_ids, scores = expected_tags(tagger, reference, text)
        k = len(words)
        assert served["num_words"][n] == k
        assert [w.decode("utf-8") if isinstance(w, bytes) else w for w in served["words"][n][:k]] == words
        assert list(served["tag_ids"][n][:k]) == tag_ids, text
        assert [t.decode() if isinstance(t, bytes) else t for t in served["tags"][n][:k]] == [
            TAGS[i] if i >= 0 else "" for i in tag_ids
        ]
        np.testing.assert_allclose(served["scores"][n][:k], scores, atol=2e-6)
        assert list(served["tag_ids"][n][k:]) == [-1] * (count - k)
        assert all(w in ("", b"") for w in served["words"][n][k:])


@pytest.mark.slow
def test_a_tagger_export_tags_words_by_their_first_piece_as_hugging_face_aligns_them(exports):
    served = tf.saved_model.load(exports["tagger_path"]).signatures
    texts = sentences()
    out = {k: v.numpy().tolist() for k, v in served["serving_default"](text=tf.constant(texts)).items()}
    check_tagged(out, exports["tagger"], exports["reference"], texts)
    # A test of the test: untagged words (no piece, past the context) and split words occur.
    assert -1 in sum(out["tag_ids"], []) and any(len(exports["ours"](w)) > 1 for w in " ".join(texts).split())
    # classify_ids: per token, from the model's logits; padding gets no tag.
    ids = tf.constant([[2, 40, 41, 3, 0]])
    mask = tf.constant([[1, 1, 1, 1, 0]])
    out = served["classify_ids"](token_ids=ids, segment_ids=tf.zeros_like(ids), padding_mask=mask)
    logits = np.asarray(exports["tagger"]({"token_ids": ids, "segment_ids": tf.zeros_like(ids),
                                           "padding_mask": mask}))
    np.testing.assert_allclose(out["logits"], logits, atol=1e-5)
    assert out["tag_ids"].numpy().tolist() == [logits[0, :4].argmax(-1).tolist() + [-1]]
    assert out["tags"].numpy()[0, 4] == b"" and out["scores"].numpy()[0, 4] == 0.0
    # No texts: empty outputs.
    out = served["serving_default"](text=tf.zeros([0], tf.string))
    assert {k: (v.dtype, tuple(v.shape)) for k, v in out.items()} == {
        "words": (tf.string, (0, 0)), "num_words": (tf.int32, (0,)), "tags": (tf.string, (0, 0)),
        "tag_ids": (tf.int32, (0, 0)), "scores": (tf.float32, (0, 0))}
    # Invalid UTF-8: words are valid UTF-8 (U+FFFD for what is ill-formed).
    out = served["serving_default"](text=tf.constant([b"caf\xc3 the \xff fox"]))
    assert [w.decode("utf-8") for w in out["words"].numpy()[0]] == ["caf\ufffd", "the", "\ufffd", "fox"]
    assert out["tag_ids"].numpy()[0, 2] == -1  # U+FFFD alone is no token


@pytest.mark.slow
def test_a_question_answering_export_serves_answer_questions(exports):
    served = tf.saved_model.load(exports["qa_path"]).signatures
    rng = np.random.default_rng(2)
    words = " ".join(TRAINING_CORPUS[:3]).split()
    contexts = [" ".join(rng.choice(words, rng.integers(1, 80))) for _ in range(6)]
    contexts += ["", "Café  DÉJÀ vu", "x" * 5000, "the quick " * 500]
    questions = ["who?", "the quick brown fox " * 20, "", "café?", "", "a", "b", "c", "d", "e"]
    out = served["serving_default"](question=tf.constant(questions), context=tf.constant(contexts))
    expected = answer_questions(exports["question_answerer"], exports["ours"], questions, contexts,
                                **QA_SETTINGS)
    for name in ("answer", "start", "end"):
        assert out[name].numpy().tolist() == expected[name].numpy().tolist(), name
    np.testing.assert_allclose(out["score"], expected["score"], rtol=1e-5)
    for context, answer, start, end in zip(contexts, out["answer"].numpy(), out["start"].numpy(),
                                           out["end"].numpy()):
        assert context[start:end] == answer.decode("utf-8")
    assert out["answer"].numpy()[6] == b""
    # answer_ids: the model's logits and best_spans over segment 1 but [SEP].
    ids = tf.constant([[2, 40, 3, 41, 42, 43, 3, 0]])
    segments = tf.constant([[0, 0, 0, 1, 1, 1, 1, 0]])
    mask = tf.constant([[1, 1, 1, 1, 1, 1, 1, 0]])
    out = served["answer_ids"](token_ids=ids, segment_ids=segments, padding_mask=mask)
    logits = exports["question_answerer"]({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
    start, end, score = best_spans(logits["start_logits"], logits["end_logits"],
                                   [[0, 0, 0, 1, 1, 1, 0, 0]], QA_SETTINGS["max_answer_length"])
    assert (out["start_index"].numpy().tolist(), out["end_index"].numpy().tolist()) == (
        start.numpy().tolist(), end.numpy().tolist())
    np.testing.assert_allclose(out["score"], score, rtol=1e-5)
    np.testing.assert_allclose(out["start_logits"], logits["start_logits"], atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Received: 1 questions and 2 contexts"):
        served["serving_default"](question=tf.constant(["a"]), context=tf.constant(["b", "c"]))
    out = served["serving_default"](question=tf.zeros([0], tf.string), context=tf.zeros([0], tf.string))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"answer": (0,), "score": (0,), "start": (0,), "end": (0,)}


# Slow tier with the module's other tests: alone in the fast tier it paid for the 13-16 s
# `exports` fixture by itself.
@pytest.mark.slow
def test_export_takes_each_heads_settings_and_refuses_the_others(exports, tmp_path):
    ours, tagger, question_answerer = exports["ours"], exports["tagger"], exports["question_answerer"]
    for model, settings, match in [
        (tagger, dict(doc_stride=4), r"doc_stride is for other models \(doc_stride: question "
                                     r"answerers\); this model is a tagger. Received: doc_stride=4"),
        (question_answerer, dict(QA_SETTINGS, label_names=["a"], top_k=3),
         r"label_names and top_k are for other models \(label_names: classifiers and taggers; "
         r"top_k: causal LMs, seq2seq models and masked LMs\); this model is a question answerer. Received: "
         r"label_names=\['a'\], top_k=3"),
        (tagger, dict(label_names=["O"]), r"`label_names` must have one name per tag \(5\). "
                                          r"Received: label_names=\['O'\]"),
        (question_answerer, dict(QA_SETTINGS, doc_stride=40, max_question_length=16), r"export: `doc_stride` must be less than "
                                                 r"sequence_length - 3 - max_question_length = 29"),
        (question_answerer, dict(QA_SETTINGS, max_answer_length=0), r"`max_answer_length` must be a positive int"),
        (question_answerer, dict(QA_SETTINGS, max_question_length=-1), r"`max_question_length` must be a positive int"),
    ]:
        with pytest.raises(ValueError, match=match):
            keras_llm.export(model, str(tmp_path / "m"), ours, **settings)
    # A tokenizer the model's size but without what the export needs: models of the byte
    # vocabulary's size (another size is refused by `check_tokenizer` first, test_export.py).
    byte_tokenizer = keras_llm.tokenizers.ByteTokenizer()
    size = dict(vocabulary_size=byte_tokenizer.vocabulary_size, num_layers=1)
    for model, settings, match in [
        (keras_llm.build_bert_tagger("bert_tiny", num_classes=2, **size), {}, "`cls_token_id`"),
        (keras_llm.build_bert_question_answerer("bert_tiny", max_sequence_length=48, **size),
         QA_SETTINGS, "`tokenize_with_offsets`"),
    ]:
        with pytest.raises(ValueError, match=match + ".*Received: tokenizer=ByteTokenizer"):
            keras_llm.export(model, str(tmp_path / "m"), byte_tokenizer, **settings)
    # 301 ids: no multiple of 8 to 128 pads the byte vocabulary's 258 to it. (The fixture's
    # vocabulary size depends on the WordPiece trainer; 272 is 258 padded to 16 and passes.)
    other_size = keras_llm.build_bert_tagger("bert_tiny", num_classes=2, vocabulary_size=301, num_layers=1)
    with pytest.raises(ValueError, match=r"model's 301 token ids.*Received: tokenizer=ByteTokenizer with 258"):
        keras_llm.export(other_size, str(tmp_path / "m"), byte_tokenizer)
    assert not (tmp_path / "m").exists() or os.listdir(tmp_path / "m") == []


TENSORFLOW_ONLY = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry
    before = set(sys.modules)  # `import tensorflow` itself imports parts of keras
    request = json.loads(sys.stdin.read())
    strings = lambda texts: tf.constant([t.encode("utf-8") for t in texts], tf.string, shape=[len(texts)])
    numpy = lambda outputs: {k: v.numpy().tolist() for k, v in outputs.items()}
    result = {"ops": set()}
    for name in ("tagger", "qa"):
        loaded = tf.saved_model.load(request[name])
        for signature in loaded.signatures.values():
            graph = signature.graph.as_graph_def()
            ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
            result["ops"] |= ops - {f.signature.name for f in graph.library.function}
        serve = loaded.signatures["serving_default"]
        if name == "tagger":
            result["tagged"] = numpy(serve(text=strings(request["texts"])))
            result["no_texts"] = numpy(serve(text=strings([])))
        else:
            result["answers"] = numpy(serve(question=strings(request["questions"]),
                                            context=strings(request["contexts"])))
            result["no_questions"] = numpy(serve(question=strings([]), context=strings([])))
            try:
                serve(question=strings(["a"]), context=strings(["b", "c"]))
            except tf.errors.InvalidArgumentError as error:
                result["mismatch"] = error.message
    result["unregistered"] = sorted(op for op in result["ops"] if op_def_registry.get(op) is None)
    result["xla"] = sorted(op for op in result.pop("ops") if op.startswith("Xla"))
    result["imported"] = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                                & {"tensorflow_text", "keras", "keras_llm", "keras_hub"})
    print(json.dumps(result, default=lambda b: b.decode("utf-8")))
    """
)


@pytest.mark.slow
def test_a_tensorflow_only_process_serves_tags_and_answers_with_core_ops(exports):
    texts = sentences()
    contexts = ["", "Café  DÉJÀ vu, naïve résumé!", "x" * 5000,
                " ".join(" ".join(TRAINING_CORPUS).split()[:900])[:5000]]
    questions = ["who?", "the quick brown fox " * 30, "", "What is déjà vu?"]
    request = dict(tagger=exports["tagger_path"], qa=exports["qa_path"], texts=texts,
                   questions=questions, contexts=contexts)
    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY], input=json.dumps(request), capture_output=True,
        text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["imported"] == [] and served["unregistered"] == [] and served["xla"] == []
    check_tagged(served["tagged"], exports["tagger"], exports["reference"], texts)
    assert served["no_texts"] == {"words": [], "num_words": [], "tags": [], "tag_ids": [], "scores": []}
    expected = answer_questions(exports["question_answerer"], exports["ours"], questions, contexts,
                                **QA_SETTINGS)
    assert served["answers"]["answer"] == [a.decode("utf-8") for a in expected["answer"].numpy()]
    assert served["answers"]["start"] == expected["start"].numpy().tolist()
    assert served["answers"]["end"] == expected["end"].numpy().tolist()
    np.testing.assert_allclose(served["answers"]["score"], expected["score"], rtol=1e-5)
    assert served["answers"]["answer"][0] == "" and served["answers"]["score"][0] == 0.0
    for context, answer, start, end in zip(contexts, *(served["answers"][k] for k in ("answer", "start", "end"))):
        assert context[start:end] == answer
    assert served["no_questions"] == {"answer": [], "score": [], "start": [], "end": []}
    assert "`question` and `context` must have one string each per example" in served["mismatch"]


def test_question_answering_window_defaults_follow_the_context():
    from keras_llm.data.question_answering import check_window_settings
    from keras_llm.export.question_answering import window_settings

    # Hugging Face's pipeline: windows of 384 with stride 128 and questions of 64 tokens.
    for context in (384, 512):
        assert window_settings(context) == dict(
            sequence_length=384, doc_stride=128, max_question_length=64, max_answer_length=30)
    for context in range(5, 384):
        settings = window_settings(context)
        # A third and a sixth of the window (a question of at least one token), and a stride
        # that moves each window on.
        assert settings["max_question_length"] == max(1, context // 6)
        assert settings["doc_stride"] == max(0, min(context // 3, context - 4 - max(1, context // 6)))
        check_window_settings("test", context, settings["doc_stride"], settings["max_question_length"])


@pytest.mark.slow  # an export of a few seconds
def test_a_question_answerer_of_a_64_token_context_exports_with_its_defaults(exports, tmp_path):
    # Hugging Face's doc_stride 128 and max_question_length 64 do not fit windows of 64 tokens
    # (the export failed); the defaults are a third and a sixth of the window: 21 and 10.
    ours = exports["ours"]
    keras.utils.set_random_seed(2)
    model = keras_llm.build_bert_question_answerer(
        "bert_tiny", vocabulary_size=ours.vocabulary_size, max_sequence_length=64, num_layers=1
    )
    path = keras_llm.export(model, str(tmp_path / "qa"), ours)
    served = tf.saved_model.load(path).signatures["serving_default"]
    question = ["what is a word of the context?"] * 2
    context = [" ".join(TRAINING_CORPUS[:4]), "a short one"]
    out = served(question=tf.constant(question), context=tf.constant(context))
    expected = answer_questions(model, ours, question, context, doc_stride=64 // 3,
                                max_question_length=64 // 6)
    assert out["answer"].numpy().tolist() == expected["answer"].numpy().tolist()
    np.testing.assert_allclose(out["score"], expected["score"], atol=1e-5)
