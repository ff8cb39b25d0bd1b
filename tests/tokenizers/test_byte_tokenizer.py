import numpy as np
import pytest
import tensorflow as tf

from keras_llm.tokenizers import ByteTokenizer

TEXTS = ["", "plain ascii", "accents: éàü", "CJK 漢字", "emoji 🙂", "zero\u200bwidth", "tab\tnew\nline"]


def test_ids_are_the_utf8_bytes():
    ids = ByteTokenizer()(TEXTS)
    assert ids.to_list() == [list(t.encode("utf-8")) for t in TEXTS]


def test_round_trip_and_specials_dropped():
    tokenizer = ByteTokenizer()
    ids = tokenizer(TEXTS)
    assert [s.decode("utf-8") for s in tokenizer.detokenize(ids).numpy()] == TEXTS
    with_specials = [[104, tokenizer.end_token_id, 105, tokenizer.pad_token_id]]
    assert tokenizer.detokenize(with_specials).numpy().tolist() == [b"hi"]


def test_works_in_tf_data():
    tokenizer = ByteTokenizer()
    ds = tf.data.Dataset.from_tensor_slices(["ab", "ç"]).map(tokenizer)
    assert [x.numpy().tolist() for x in ds] == [[97, 98], [195, 167]]


def test_numpy_encoding_matches():
    tokenizer = ByteTokenizer()
    np.testing.assert_array_equal(tokenizer.encode_numpy("día"), list("día".encode()))


def test_vocabulary_lookups():
    tokenizer = ByteTokenizer()
    assert tokenizer.id_to_token(65) == b"A"
    assert tokenizer.token_to_id("<pad>") == 257
    with pytest.raises(ValueError, match="token_id=258"):
        tokenizer.id_to_token(258)
    with pytest.raises(ValueError, match="token='ab'"):
        tokenizer.token_to_id("ab")
