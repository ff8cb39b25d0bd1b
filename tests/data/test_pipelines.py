"""The BERT pre-training and fine-tuning pipelines against Python references."""

import math
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
import tokenizers as hf

import keras_llm
from keras_llm.data import classification_dataset, masked_lm_dataset, token_tagging_dataset
from tests.tokenizers.serving_check import TRAINING_CORPUS
from tests.word_piece_reference import word_piece_pair

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(1000)]
TOKENIZER = keras_llm.tokenizers.WordPieceTokenizer(SPECIALS + WORDS)
CLS, SEP, PAD = 2, 3, 0


def word_ids(words):
    return [SPECIALS.__len__() + int(w[1:]) for w in words]


def segments(count, seed=0):
    """Segment i starts with the unique word w<i>; lengths 1 to 40 words."""
    rng = np.random.default_rng(seed)
    return [
        " ".join([f"w{i}"] + [f"w{j}" for j in rng.integers(0, 1000, rng.integers(0, 40))])
        for i in range(count)
    ]


def truncate_seq_pair(len_a, len_b, budget):
    """BERT's create_pretraining_data.truncate_seq_pair, trimming from the end."""
    while len_a + len_b > budget:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def examples(dataset):
    for x, y, w in dataset:
        x = {k: v.numpy() for k, v in x.items()}
        for row in range(len(x["token_ids"])):
            yield (
                {k: v[row] for k, v in x.items()},
                {k: v.numpy()[row] for k, v in y.items()},
                {k: v.numpy()[row] for k, v in w.items()},
            )


def test_masked_lm_pairs_truncation_masks_and_next_sentence_share():
    texts = segments(600)
    tokens = [word_ids(t.split()) for t in texts]
    length = 32
    ds = masked_lm_dataset(texts, TOKENIZER, length, batch_size=50, seed=5, drop_remainder=False)
    seen, random_count = 0, 0
    for x, y, w in examples(ds):
        seen += 1
        ids = x["token_ids"].copy()
        real = int(x["padding_mask"].sum())
        valid = w["mlm_logits"] > 0
        positions = x["mask_positions"][valid]
        ids[positions] = y["mlm_logits"][valid]  # undo the corruption
        assert x["padding_mask"].tolist() == [1] * real + [0] * (length - real)
        assert (ids[real:] == PAD).all() and ids[0] == CLS and ids[real - 1] == SEP
        first_sep = ids.tolist().index(SEP)
        a, b = ids[1:first_sep].tolist(), ids[first_sep + 1 : real - 1].tolist()
        assert x["segment_ids"].tolist() == [0] * (first_sep + 1) + [1] * (real - first_sep - 1) + [0] * (length - real)
        i, j = a[0] - len(SPECIALS), b[0] - len(SPECIALS)
        assert (len(a), len(b)) == truncate_seq_pair(len(tokens[i]), len(tokens[j]), length - 3)
        assert a == tokens[i][: len(a)] and b == tokens[j][: len(b)]
        if y["nsp_logits"] == 0:
            assert j == i + 1
        else:
            random_count += 1
        # Masks: only real, non-special tokens, BERT's exact count.
        candidates = real - 3
        assert not set(positions) & {0, first_sep, real - 1}
        assert (positions < real).all()
        assert valid.sum() == min(math.ceil(0.15 * length), max(1, round(0.15 * candidates)))
        assert w["nsp_logits"] == 1.0
    assert seen == 599  # every segment but the last has a next one
    share, sigma = random_count / seen, math.sqrt(0.25 / seen)
    assert abs(share - 0.5) < 4 * sigma, share


@pytest.mark.slow
def test_masked_lm_is_deterministic_and_dynamic_across_epochs():
    texts = segments(120, seed=1)
    def epochs(seed):
        ds = masked_lm_dataset(texts, TOKENIZER, 24, batch_size=16, seed=seed)
        return [[x["token_ids"].numpy().tolist() for x, _, _ in ds] for _ in range(2)]
    first = epochs(7)
    assert first == epochs(7)
    assert first[0] != first[1] and first != epochs(8)


@pytest.mark.slow
def test_bert_pretrainer_trains_on_the_pipeline():
    texts = segments(64, seed=2)
    model = keras_llm.build_bert_pretrainer("bert_tiny", vocabulary_size=TOKENIZER.vocabulary_size)
    ds = masked_lm_dataset(texts, TOKENIZER, 32, batch_size=8, repeat=True)
    history = model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_masked_lm_needs_bert_special_tokens():
    with pytest.raises(ValueError, match="no `mask_token_id`"):
        masked_lm_dataset(["a"], keras_llm.tokenizers.WordPieceTokenizer(SPECIALS[:4] + ["a"]), 8, 2)


def labelled(count, seed=0):
    rng = np.random.default_rng(seed)
    names = ["neg", "neutral", "pos"]
    return [
        {"text": " ".join(f"w{j}" for j in rng.integers(0, 1000, rng.integers(1, 100))),
         "label": names[k]}
        for k in rng.integers(0, 3, count)
    ], names


@pytest.mark.parametrize("bucket", [True, False])
def test_classification_every_example_once_padded_and_bucketed(bucket):
    records, names = labelled(300)
    data = keras_llm.data.load_texts(records, label_field="label")
    ds = classification_dataset(data, TOKENIZER, 16, sequence_length=64, label_names=names, bucket=bucket)
    expected = Counter(
        (tuple([CLS] + word_ids(r["text"].split())[:62] + [SEP]), names.index(r["label"]))
        for r in records
    )
    got = Counter()
    for x, y in ds:
        ids, mask = x["token_ids"].numpy(), x["padding_mask"].numpy()
        width = ids.shape[1]
        lengths = mask.sum(axis=1)
        if bucket:  # the smallest of 16, 32, 64 that holds the longest row
            assert width == min(b for b in (16, 32, 64) if b >= lengths.max())
        else:
            assert width == 64
        for row, n in enumerate(lengths):
            assert mask[row].tolist() == [1] * n + [0] * (width - n)
            assert (ids[row, n:] == PAD).all() and (x["segment_ids"].numpy()[row] == 0).all()
            got[(tuple(ids[row, :n].tolist()), int(y[row]))] += 1
    assert got == expected


def test_classification_determinism_and_label_errors():
    records, names = labelled(80, seed=3)
    data = keras_llm.data.load_texts(records, label_field="label")
    order = lambda seed: [
        y.numpy().tolist()
        for _, y in classification_dataset(data, TOKENIZER, 8, label_names=names, seed=seed)
    ]
    assert order(1) == order(1) and order(1) != order(2)
    with pytest.raises(ValueError, match="pass `label_names`"):
        classification_dataset(data, TOKENIZER, 8)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[label\] \[neutral\] \[; expected one of label_names=\[neg, pos\]\]"):
        list(classification_dataset(data, TOKENIZER, 8, label_names=["neg", "pos"]))
    with pytest.raises(ValueError, match=r"\(text, label\) pairs"):
        classification_dataset(["just text"], TOKENIZER, 8)


def test_token_tagging_labels_first_pieces_as_hugging_face_aligns_them():
    reference = hf.BertWordPieceTokenizer(lowercase=True)
    reference.train_from_iterator(TRAINING_CORPUS, vocab_size=600)
    reference.post_processor = hf.processors.BertProcessing(
        ("[SEP]", reference.token_to_id("[SEP]")), ("[CLS]", reference.token_to_id("[CLS]"))
    )
    reference.enable_truncation(max_length=24)
    vocabulary = [t for t, _ in sorted(reference.get_vocab().items(), key=lambda item: item[1])]
    ours = keras_llm.tokenizers.WordPieceTokenizer(vocabulary)
    rng = np.random.default_rng(0)
    pool = " ".join(TRAINING_CORPUS[:3]).split() + ["\u200b", "supercalifragilistic"]
    sentences = [list(rng.choice(pool, rng.integers(1, 14))) for _ in range(60)]
    tags = [list(map(int, rng.integers(0, 5, len(s)))) for s in sentences]
    data = keras_llm.data.load_texts(
        [{"tokens": s, "tags": t} for s, t in zip(sentences, tags)],
        text_field="tokens", label_field="tags",
    )
    ds = token_tagging_dataset(
        data, ours, 7, sequence_length=24, num_classes=5, shuffle=False, bucket=False
    )
    got = []
    for x, y, w in ds:
        got += zip(x["token_ids"].numpy(), y.numpy(), w.numpy())
    assert len(got) == len(sentences)
    for (ids, labels, weights), words, word_tags in zip(got, sentences, tags):
        encoding = reference.encode(words, is_pretokenized=True)
        n = len(encoding.ids)
        assert ids[:n].tolist() == encoding.ids and (ids[n:] == PAD).all()
        previous, expected_labels, expected_weights = None, [], []
        for word in encoding.word_ids:
            first = word is not None and word != previous
            expected_labels.append(word_tags[word] if first else 0)
            expected_weights.append(1.0 if first else 0.0)
            previous = word
        assert labels[:n].tolist() == expected_labels
        assert weights[:n].tolist() == expected_weights and not weights[n:].any()


def test_token_tagging_labels_first_pieces_as_transformers_word_ids_say(tmp_path):
    # transformers' BertTokenizerFast from the same vocab.txt, on words
    # (is_split_into_words=True): word_ids() names each token's word; a
    # word's first token carries its tag. Words of no token (U+200B), words
    # split into pieces, and words past the truncation occur.
    ours, reference = word_piece_pair(tmp_path)
    rng = np.random.default_rng(1)
    pool = " ".join(TRAINING_CORPUS[:3]).split() + ["\u200b", "supercalifragilistic", "ǅ!"]
    sentences = [list(rng.choice(pool, rng.integers(1, 20))) for _ in range(40)]
    tags = [list(map(int, rng.integers(0, 5, len(s)))) for s in sentences]
    data = keras_llm.data.load_texts(
        [{"tokens": s, "tags": t} for s, t in zip(sentences, tags)],
        text_field="tokens", label_field="tags",
    )
    ds = token_tagging_dataset(data, ours, 8, sequence_length=20, num_classes=5, shuffle=False,
                               bucket=False)
    got = [row for x, y, w in ds for row in zip(x["token_ids"].numpy(), y.numpy(), w.numpy())]
    untagged = 0
    for (ids, labels, weights), words, word_tags in zip(got, sentences, tags):
        encoding = reference(words, is_split_into_words=True, truncation=True, max_length=20)
        n = len(encoding["input_ids"])
        assert ids[:n].tolist() == encoding["input_ids"] and (ids[n:] == PAD).all()
        word_ids = encoding.word_ids()
        first = [w is not None and w not in word_ids[:i] for i, w in enumerate(word_ids)]
        assert labels[:n].tolist() == [word_tags[w] if f else 0 for w, f in zip(word_ids, first)]
        assert weights.tolist() == [float(f) for f in first] + [0.0] * (len(weights) - n)
        untagged += len({w for w in word_ids if w is not None}) < len(words)
    assert untagged > 5  # a test of the test: words of no token, or truncated


def first_error(dataset):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        for _ in dataset:
            pass
    return str(error.value)


@pytest.mark.parametrize("shuffle", [False, True])
def test_classification_labels_outside_num_classes_are_named_with_their_example(shuffle):
    # Example 37 (counted from 0, in the order given) is the only bad one;
    # 2**32 + 1 would be 1 after a cast to int32.
    for bad in (2, -1, 2**32 + 1):
        labels = [i % 2 for i in range(60)]
        labels[37] = bad
        data = keras_llm.data.load_texts(
            [{"text": f"w{i}", "label": y} for i, y in enumerate(labels)], label_field="label"
        )
        message = first_error(
            classification_dataset(data, TOKENIZER, 8, num_classes=2, shuffle=shuffle)
        )
        assert f"[classification_dataset: example] [37] [of `data` (counting from 0)] [has] [label] [{bad}]" in message
        assert "expected an int in [0, 2) (num_classes=2)" in message
    # The same labels, all in range, go through unchanged.
    data = keras_llm.data.load_texts(
        [{"text": f"w{i}", "label": i % 3} for i in range(20)], label_field="label"
    )
    got = [y for _, batch in classification_dataset(data, TOKENIZER, 8, num_classes=3, shuffle=False)
           for y in batch.numpy().tolist()]
    assert sorted(got) == sorted(i % 3 for i in range(20))


def test_classification_needs_the_label_range_at_build_time():
    ints = keras_llm.data.load_texts([{"text": "w1", "label": 1}], label_field="label")
    with pytest.raises(ValueError, match=r"pass `num_classes` .* Received: num_classes=None"):
        classification_dataset(ints, TOKENIZER, 8)
    with pytest.raises(ValueError, match=r"`num_classes` must be a positive int. Received: num_classes=0"):
        classification_dataset(ints, TOKENIZER, 8, num_classes=0)
    names = keras_llm.data.load_texts([{"text": "w1", "label": "pos"}], label_field="label")
    with pytest.raises(ValueError, match=r"must be len\(label_names\)=2 when both are given. Received: num_classes=3"):
        classification_dataset(names, TOKENIZER, 8, num_classes=3, label_names=["neg", "pos"])
    floats = keras_llm.data.load_texts([{"text": "w1", "label": 0.5}], label_field="label")
    with pytest.raises(ValueError, match=r"labels must be ints .* Received: labels of dtype float32"):
        classification_dataset(floats, TOKENIZER, 8, num_classes=2)


def test_token_tags_outside_num_classes_and_missing_tags_are_named():
    records = [{"tokens": ["w1", "w2", "w3"], "tags": [0, 1, 2]} for _ in range(12)]
    records[9] = {"tokens": ["w1", "w2", "w3"], "tags": [0, 1, 7]}
    data = keras_llm.data.load_texts(records, text_field="tokens", label_field="tags")
    message = first_error(token_tagging_dataset(data, TOKENIZER, 4, num_classes=3))
    assert "[token_tagging_dataset: example] [9] [of `data` (counting from 0)] [has] [tag] [7] [at word] [2]" in message
    assert "expected an int in [0, 3) (num_classes=3)" in message
    with pytest.raises(ValueError, match=r"pass `num_classes` .* Received: num_classes=None"):
        token_tagging_dataset(data, TOKENIZER, 4)
    records[9] = {"tokens": ["w1", "w2", "w3"], "tags": [0, 1]}
    data = keras_llm.data.load_texts(records, text_field="tokens", label_field="tags")
    message = first_error(token_tagging_dataset(data, TOKENIZER, 4, num_classes=3))
    assert "[token_tagging_dataset: example] [9] [of `data` (counting from 0) has] [3] [words and] [2] [tags; expected one tag per word]" in message
