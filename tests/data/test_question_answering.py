"""Question-answering windows and labels against Hugging Face's tokenizer and run_qa.py."""

import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.data import question_answering_dataset, question_answering_windows
from tests.tokenizers.serving_check import STRESS, TRAINING_CORPUS
from tests.word_piece_reference import word_piece_pair


@pytest.fixture(scope="module")
def vocabularies(tmp_path_factory):
    """Our WordPiece tokenizer and Hugging Face's BertTokenizerFast, from one vocab.txt."""
    return word_piece_pair(tmp_path_factory.mktemp("vocab"))


def contexts(seed, count):
    """Contexts of 0 to ~120 words: the training corpus's words (non-ASCII too) and stress strings."""
    rng = np.random.default_rng(seed)
    words = " ".join(TRAINING_CORPUS[:3]).split() + ["supercalifragilistic", "\u200b", "x\u00a0y"]
    texts = [" ".join(rng.choice(words, rng.integers(0, 120))) for _ in range(count)]
    return texts + [s for s in STRESS if s.strip()][: count // 2] + ["", "   "]


def hugging_face_windows(reference, question, context, sequence_length, doc_stride):
    # transformers takes an empty second text for no second text at all
    # (`[CLS] q [SEP]`); " " is the same context, tokens and offsets, as a pair.
    return reference(
        question, context or " ", max_length=sequence_length, truncation="only_second", stride=doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True,
    )


@pytest.mark.parametrize("sequence_length, doc_stride", [(24, 4), (32, 10), (40, 0), (64, 16)])
def test_windows_are_hugging_faces_overflowing_tokens(vocabularies, sequence_length, doc_stride):
    ours, reference = vocabularies
    texts = contexts(sequence_length, 16)
    questions = ["Who jumps over the dog?", "", "café?", "Numbers and émails"]
    questions = [questions[i % len(questions)] for i in range(len(texts))]
    windows = question_answering_windows(
        questions, texts, ours, sequence_length=sequence_length, doc_stride=doc_stride,
        max_question_length=8,
    )
    windows = {k: v.numpy() for k, v in windows.items()}
    row = 0
    for n, (question, context) in enumerate(zip(questions, texts)):
        encoding = hugging_face_windows(reference, question, context, sequence_length, doc_stride)
        assert len(reference(question)["input_ids"]) - 2 <= 8  # not truncated: comparable
        assert windows["example_index"].tolist().count(n) == len(encoding["input_ids"]), context
        context_bytes = context.encode("utf-8")
        for w, ids in enumerate(encoding["input_ids"]):
            length = len(ids)
            got = windows["token_ids"][row]
            assert got[:length].tolist() == ids, (context, w)
            assert (got[length:] == ours.pad_token_id).all()
            assert windows["segment_ids"][row, :length].tolist() == encoding["token_type_ids"][w]
            assert windows["padding_mask"][row].tolist() == [1] * length + [0] * (len(got) - length)
            # Byte offsets here, character offsets there: the same places.
            sequence_ids = encoding.sequence_ids(w)
            for position, (start, end) in enumerate(encoding["offset_mapping"][w]):
                byte_start = windows["token_starts"][row, position]
                byte_end = windows["token_ends"][row, position]
                if sequence_ids[position] != 1:
                    assert byte_start == byte_end == -1
                    continue
                assert context_bytes[byte_start:byte_end].decode("utf-8") == context[start:end]
                assert len(context_bytes[:byte_start].decode("utf-8")) == start
            row += 1
    assert row == len(windows["token_ids"])


def test_questions_keep_their_first_max_question_length_tokens(vocabularies):
    ours, _ = vocabularies
    question = "the quick brown fox " * 20
    windows = question_answering_windows(
        [question], ["the lazy dog"], ours, sequence_length=32, doc_stride=4, max_question_length=8
    )
    ids = ours(question).numpy().tolist()
    assert windows["token_ids"].numpy()[0, 1:10].tolist() == ids[:8] + [ours.sep_token_id]
    with pytest.raises(ValueError, match=r"`doc_stride` must be less than sequence_length - 3 - "
                                         r"max_question_length = 21 .*Received: doc_stride=21"):
        question_answering_windows([question], ["x"], ours, sequence_length=32, doc_stride=21,
                                   max_question_length=8)
    with pytest.raises(ValueError, match=r"tokenize_with_offsets.*Received: tokenizer=ByteTokenizer"):
        question_answering_windows(["q"], ["c"], keras_llm.tokenizers.ByteTokenizer())
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`questions` and `contexts` must have one string each per example. "
                             r"Received: 2 questions and 1 contexts"):
        question_answering_windows(["q", "r"], ["c"], ours)


def run_qa_labels(encoding, window, answer_start, answer_text, cls_index=0):
    """Hugging Face's run_qa.py `prepare_train_features`, on character offsets.

    One change: run_qa.py's forward scan for the start runs past the
    window's last context token into [SEP] and padding (offsets (0, 0))
    when the answer starts in that token; here it stops at the context's end.
    """
    if answer_start < 0:
        return cls_index, cls_index
    offsets = encoding["offset_mapping"][window]
    sequence_ids = encoding.sequence_ids(window)
    start_char, end_char = answer_start, answer_start + len(answer_text)
    token_start = 0
    while sequence_ids[token_start] != 1:
        token_start += 1
    token_end = len(encoding["input_ids"][window]) - 1
    while sequence_ids[token_end] != 1:
        token_end -= 1
    if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
        return cls_index, cls_index
    last = token_end
    while token_start <= last and offsets[token_start][0] <= start_char:
        token_start += 1
    start = token_start - 1
    while offsets[token_end][1] >= end_char:
        token_end -= 1
    return start, token_end + 1


def squad_examples(seed, count):
    """Answers of 1-4 words (character offsets), in contexts with non-ASCII text; some unanswerable."""
    rng = np.random.default_rng(seed)
    examples = []
    for n, context in enumerate(contexts(seed, count)):
        spans = [(m.start(), m.end()) for m in __import__("re").finditer(r"\S+", context)]
        if not spans or n % 7 == 3:
            examples.append({"question": "what?", "context": context,
                             "answers": {"text": [], "answer_start": []}})
            continue
        first = int(rng.integers(len(spans)))
        last = min(len(spans) - 1, first + int(rng.integers(0, 4)))
        start, end = spans[first][0], spans[last][1]
        if n % 5 == 1 and end - start > 2:  # an answer that starts and ends inside words
            start, end = start + 1, end - 1
        examples.append({"question": "Who jumps over the dog?", "context": context,
                         "answers": {"text": [context[start:end]], "answer_start": [start]}})
    return examples


@pytest.mark.slow
@pytest.mark.parametrize("sequence_length, doc_stride", [(24, 4), (48, 12)])
def test_labels_are_run_qa_pys_on_hugging_faces_offsets(vocabularies, sequence_length, doc_stride):
    ours, reference = vocabularies
    examples = squad_examples(sequence_length, 24)
    ds = question_answering_dataset(
        examples, ours, 5, sequence_length=sequence_length, doc_stride=doc_stride,
        max_question_length=10, shuffle=False, bucket=False,
    )
    got = [
        (ids.tolist(), int(s), int(e))
        for x, y in ds
        for ids, s, e in zip(x["token_ids"].numpy(), y["start_logits"].numpy(), y["end_logits"].numpy())
    ]
    expected = []
    for example in examples:
        encoding = hugging_face_windows(reference, example["question"], example["context"],
                                        sequence_length, doc_stride)
        answers = example["answers"]
        start, text = (answers["answer_start"][0], answers["text"][0]) if answers["text"] else (-1, "")
        for w, ids in enumerate(encoding["input_ids"]):
            ids = ids + [ours.pad_token_id] * (sequence_length - len(ids))
            expected.append((ids, *run_qa_labels(encoding, w, start, text)))
    assert got == expected
    # A test of the test: answers inside windows, outside them, and none.
    assert 0 < sum(s > 0 for _, s, _ in expected) < len(expected)


@pytest.mark.slow
def test_squad_formats_and_answers_in_the_wrong_place_are_named(vocabularies):
    ours, _ = vocabularies
    context = "Café déjà vu: the quick brown fox."
    nested = {"question": "what?", "context": context,
              "answers": {"text": ["quick brown", "fox"], "answer_start": [18, 30]}}
    flat = {"question": "what?", "context": context, "answer_text": "quick brown", "answer_start": 18}
    settings = dict(sequence_length=32, doc_stride=4, max_question_length=4, shuffle=False)
    (x, y), = question_answering_dataset([nested, flat], ours, 2, **settings)
    (start, end), same = zip(y["start_logits"].numpy(), y["end_logits"].numpy())
    assert same == (start, end)
    assert ours.detokenize(x["token_ids"][0, start : end + 1]).numpy() == b"quick brown"
    # TFDS's squad: the same dicts, as tensors; an answer_start in bytes (21) is named.
    for starts in ([18], [18, 21]):
        tfds_like = tf.data.Dataset.from_tensor_slices(
            {"question": ["what?"] * len(starts), "context": [context] * len(starts),
             "id": ["x"] * len(starts),
             "answers": {"text": [["quick brown"]] * len(starts), "answer_start": [[n] for n in starts]}}
        )
        batches = question_answering_dataset(tfds_like, ours, 1, **settings)
        if len(starts) == 1:
            (_, y), = batches
            assert (int(y["start_logits"][0]), int(y["end_logits"][0])) == (start, end)
            continue
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"example\] \[1\] \[of `data` \(counting from 0\) has answer_start\] \[21\]"):
            list(batches)
    with pytest.raises(ValueError, match=r"data\[1\]: `answer_start` must be the answer's offset in the "
                                         r"context, counted in characters.*answer_start=21"):
        question_answering_dataset([flat, {**flat, "answer_start": 21}], ours, 4)
    with pytest.raises(ValueError, match=r"data\[0\]: no answer"):
        question_answering_dataset([{"question": "q", "context": "c"}], ours, 4)
    with pytest.raises(ValueError, match=r"must give dicts with `question`, `context`"):
        question_answering_dataset(tf.data.Dataset.from_tensors({"text": "x"}), ours, 4)
