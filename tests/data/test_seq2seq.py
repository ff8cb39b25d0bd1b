"""seq2seq_dataset against the teacher-forcing layout computed in Python."""

import numpy as np
import pytest
import tensorflow as tf

import keras_llm

BYTES = keras_llm.tokenizers.ByteTokenizer()  # end 256, padding 257
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "a", "dog"]
WORDS = keras_llm.tokenizers.WordPieceTokenizer(VOCAB)


def pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    words = VOCAB[4:] + ["zebra"]
    return [
        ("".join(rng.choice(list("abcdé xyz"), rng.integers(0, 40))),
         " ".join(rng.choice(words, rng.integers(0, 12))))
        for _ in range(n)
    ]


def expected(source, target, source_length, target_length):
    """The documented layout, from the tokenizers' own ids."""
    source_ids = list(source.encode("utf-8"))[: source_length - 1] + [256]
    target_ids = [VOCAB.index(w) if w in VOCAB else 1 for w in target.split()][: target_length - 1]
    return source_ids, [2] + target_ids, target_ids + [3]


def examples(ds):
    """(source ids, decoder ids, labels, weights) of every row, padding removed and checked."""
    rows = []
    for x, labels, weights in ds:
        for i in range(len(labels)):
            source_mask = x["encoder_padding_mask"][i].numpy().astype(bool)
            target_mask = x["decoder_padding_mask"][i].numpy().astype(bool)
            source = x["encoder_token_ids"][i].numpy()
            assert set(source[~source_mask]) <= {257}, "source padding is the pad id"
            assert np.array_equal(weights[i].numpy(), target_mask.astype("float32"))
            rows.append((source[source_mask].tolist(),
                         x["decoder_token_ids"][i].numpy()[target_mask].tolist(),
                         labels[i].numpy()[target_mask].tolist()))
    return rows


@pytest.mark.parametrize("bucket", [False, True])
def test_teacher_forcing_layout_truncation_and_padding(bucket):
    data = pairs(50)
    ds = keras_llm.data.seq2seq_dataset(data, BYTES, WORDS, 8, source_length=24, target_length=6,
                                        shuffle=False, bucket=bucket)
    got = examples(ds)
    want = [expected(s, t, 24, 6) for s, t in data]
    if bucket:  # batches group lengths: every pair once, in some order
        assert sorted(map(str, got)) == sorted(map(str, want))
    else:
        assert got == want
        x, labels, _ = next(iter(ds))
        assert x["encoder_token_ids"].shape == (8, 24) and labels.shape == (8, 6)


def test_order_is_fixed_by_the_seed_and_pairs_come_from_files(tmp_path):
    path = tmp_path / "pairs.tsv"
    data = pairs(40, seed=1)
    path.write_text("de\ten\n" + "".join(f"{s}\t{t}\n" for s, t in data), encoding="utf-8")
    loaded = keras_llm.data.load_texts(str(path), text_field="de", label_field="en")
    order = lambda seed: [row[0] for row in examples(keras_llm.data.seq2seq_dataset(
        loaded, BYTES, WORDS, 4, seed=seed, bucket=False, source_length=48, target_length=16))]
    first = order(3)
    assert first == order(3) and first != order(4)
    assert sorted(first) == sorted(expected(s, t, 48, 16)[0] for s, t in data)


def test_shared_vocabulary_and_explicit_specials():
    ds = keras_llm.data.seq2seq_dataset([("ab", "c")], BYTES, batch_size=1, shuffle=False)
    x, labels, _ = next(iter(ds))
    # Unshuffled batches are padded to target_length (no bucketing): the first two columns.
    assert x["decoder_token_ids"].numpy()[:, :2].tolist() == [[256, 99]]  # starts from the end token
    ds = keras_llm.data.seq2seq_dataset([("ab", "c")], BYTES, batch_size=1, shuffle=False,
                                        start_token_id=7, end_token_id=8)
    x, labels, _ = next(iter(ds))
    assert x["decoder_token_ids"].numpy()[:, :2].tolist() == [[7, 99]]
    assert labels.numpy()[:, :2].tolist() == [[99, 8]]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`target_length` must be a positive int"):
        keras_llm.data.seq2seq_dataset([("a", "b")], BYTES, batch_size=1, target_length=0)
    with pytest.raises(ValueError, match=r"\(source, target\) pairs of strings"):
        keras_llm.data.seq2seq_dataset(["just text"], BYTES, batch_size=1)
    no_specials = keras_llm.tokenizers.WordPieceTokenizer(["[UNK]", "a"])
    with pytest.raises(ValueError, match="pass `start_token_id=`"):
        keras_llm.data.seq2seq_dataset([("a", "a")], no_specials, batch_size=1)


@pytest.mark.slow  # 6 s of TFDS mock data: the fast tier is at its 3 minutes
@pytest.mark.parametrize("name,source,target", [
    ("ted_hrlr_translate/pt_to_en", "pt", "en"),
    ("wmt14_translate/de-en", "de", "en"),
    ("cnn_dailymail", "article", "highlights"),
    ("xsum", "document", "summary"),
])
def test_tfds_translation_and_summarization_sets_by_their_feature_names(name, source, target):
    import tensorflow_datasets as tfds

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    with tfds.testing.mock_data(num_examples=6):
        pairs = keras_llm.data.load_texts(f"tfds:{name}", text_field=source, label_field=target)
        expected = [(s.numpy(), t.numpy()) for s, t in pairs]
        batch = next(iter(keras_llm.data.seq2seq_dataset(
            pairs, tokenizer, batch_size=6, shuffle=False, bucket=False, source_length=16,
            target_length=8,
        )))
    x, labels, weights = batch
    assert len(expected) == 6
    for n, (s, t) in enumerate(expected):
        encoder = list(s)[:15] + [256]  # bytes, cut, then the end token
        assert x["encoder_token_ids"].numpy()[n, : len(encoder)].tolist() == encoder
        assert labels.numpy()[n, : min(len(t), 7)].tolist() == list(t)[:7]
    assert x["encoder_token_ids"].shape == (6, 16) and labels.shape == (6, 8)
