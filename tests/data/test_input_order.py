"""Unshuffled pipelines keep the input order, so `predict` lines up with the labels."""

import numpy as np
import pytest

import keras_llm
from keras_llm.data import (
    causal_lm_dataset,
    classification_dataset,
    question_answering_dataset,
    seq2seq_dataset,
    token_tagging_dataset,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(100)]
TOKENIZER = keras_llm.tokenizers.WordPieceTokenizer(SPECIALS + WORDS)


def texts(count, seed=0):
    """Text i starts with word w<i> and has 0 to 39 more words: lengths that bucketing reorders."""
    rng = np.random.default_rng(seed)
    return [" ".join([f"w{i}"] + ["w99"] * int(rng.integers(0, 40))) for i in range(count)]


def test_classifier_predict_rows_follow_the_data():
    data = texts(20)
    labels = [i % 3 for i in range(20)]
    ds = classification_dataset(
        keras_llm.data.load_texts([{"text": t, "label": y} for t, y in zip(data, labels)],
                                  label_field="label"),
        TOKENIZER, batch_size=4, sequence_length=64, num_classes=3, shuffle=False,
    )
    assert [int(y) for _, batch in ds for y in batch] == labels
    model = keras_llm.build_bert_classifier(
        "bert_tiny", vocabulary_size=len(SPECIALS + WORDS), num_classes=3, max_sequence_length=64
    )
    predicted = model.predict(ds, verbose=0)
    # The reference: each text alone, [CLS] ids [SEP], through the same model.
    for i, text in enumerate(data):
        ids = np.array([[2] + [5 + int(w[1:]) for w in text.split()] + [3]], "int32")
        alone = model({"token_ids": ids, "segment_ids": np.zeros_like(ids),
                       "padding_mask": np.ones_like(ids)})
        np.testing.assert_allclose(predicted[i], np.asarray(alone)[0], rtol=1e-4, atol=1e-5)


def test_token_tagging_rows_follow_the_data():
    data = [{"tokens": t.split(), "tags": [i % 2] * len(t.split())} for i, t in enumerate(texts(20))]
    ds = token_tagging_dataset(keras_llm.data.load_texts(data, text_field="tokens", label_field="tags"),
                               TOKENIZER, batch_size=4, sequence_length=64, num_classes=2, shuffle=False)
    first_words = [int(row[1]) - 5 for x, _, _ in ds for row in x["token_ids"].numpy()]
    assert first_words == list(range(20))


def test_seq2seq_rows_follow_the_data():
    pairs = [(t, f"w{i}") for i, t in enumerate(texts(20))]
    ds = seq2seq_dataset(pairs, TOKENIZER, batch_size=4, source_length=64, target_length=4,
                         shuffle=False, end_token_id=3, start_token_id=2)
    assert [int(row[0]) - 5 for x, _, _ in ds for row in x["encoder_token_ids"].numpy()] == list(range(20))


def test_question_answering_rows_follow_the_data():
    data = [{"question": f"w{i}", "context": t, "answers": {"text": [], "answer_start": []}}
            for i, t in enumerate(texts(20))]
    ds = question_answering_dataset(data, TOKENIZER, batch_size=4, sequence_length=64,
                                    doc_stride=16, max_question_length=8, shuffle=False)
    assert [int(row[1]) - 5 for x, _ in ds for row in x["token_ids"].numpy()] == list(range(20))


def test_explicit_bucketing_still_groups_by_length():
    data = texts(20)
    ds = classification_dataset(
        keras_llm.data.load_texts([{"text": t, "label": 0} for t in data], label_field="label"),
        TOKENIZER, batch_size=4, sequence_length=64, num_classes=1, shuffle=False, bucket=True,
    )
    widths = {x["token_ids"].shape[1] for x, _ in ds}
    assert widths <= {16, 32, 64} and len(widths) > 1


@pytest.mark.parametrize("bucket", ["yes", 1])
def test_bucket_must_be_none_or_a_bool(bucket):
    with pytest.raises(ValueError, match=f"`bucket` must be None, True or False. Received: bucket={bucket!r}"):
        classification_dataset([("w1", 0)], TOKENIZER, 2, num_classes=1, bucket=bucket)


@pytest.mark.parametrize(
    "texts, drop_remainder, total, needed",
    [(["abc"], False, 4, 9), (["abcdefgh"], True, 9, 17)],  # 3 + 1 end token; 8 + 1
)
def test_causal_lm_over_too_short_a_text_names_the_lengths(texts, drop_remainder, total, needed):
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    with pytest.raises(ValueError, match=rf"`texts` hold {total} tokens .* fewer than the {needed} .*"
                                         r"Received: sequence_length=8, batch_size=2"):
        causal_lm_dataset(texts, tokenizer, 8, batch_size=2, shuffle=False,
                          drop_remainder=drop_remainder)


def test_causal_lm_exactly_one_window_gives_it():
    tokenizer = keras_llm.tokenizers.ByteTokenizer()  # 8 bytes and the end token: one window of 8
    batches = list(causal_lm_dataset(["abcdefgh"], tokenizer, 8, batch_size=2, shuffle=False,
                                     drop_remainder=False))
    assert [len(y) for _, y, _ in batches] == [1]
