"""Every tokenizer names what is wrong with its input: not text, ids outside its vocabulary."""

import re

import pytest
import sentencepiece
import tensorflow as tf
import tokenizers as hf

import keras_llm
from keras_llm.tokenizers import (
    BytePairTokenizer,
    ByteTokenizer,
    CoreOpsBytePairTokenizer,
    CoreOpsWordPieceTokenizer,
    SentencePieceTokenizer,
    WordPieceTokenizer,
)
from tests.tokenizers.serving_check import TRAINING_CORPUS


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Vocabulary files trained by Hugging Face and SentencePiece, and their sizes as they report them."""
    directory = tmp_path_factory.mktemp("vocabularies")
    word_piece = hf.BertWordPieceTokenizer()
    word_piece.train_from_iterator(TRAINING_CORPUS, vocab_size=300)
    word_piece.save_model(str(directory))
    byte_pair = hf.ByteLevelBPETokenizer()
    byte_pair.train_from_iterator(TRAINING_CORPUS, vocab_size=400, special_tokens=["<|endoftext|>"])
    byte_pair.save_model(str(directory))
    model = keras_llm.tokenizers.train_sentence_piece(TRAINING_CORPUS, 100, directory / "spm")
    return {
        "word_piece": (str(directory / "vocab.txt"), word_piece.get_vocab_size()),
        "byte_pair": ((str(directory / "vocab.json"), str(directory / "merges.txt")),
                      byte_pair.get_vocab_size()),
        "sentence_piece": (model, sentencepiece.SentencePieceProcessor(model_file=model).get_piece_size()),
    }


OURS = ["ByteTokenizer", "CoreOpsWordPieceTokenizer", "WordPieceTokenizer",
        "CoreOpsBytePairTokenizer", "BytePairTokenizer"]


def build(name, references):
    """Our tokenizer `name` and the vocabulary size its reference reports."""
    if name == "ByteTokenizer":
        return ByteTokenizer(), 256 + 2  # the bytes, <|endoftext|>, <pad>
    if "WordPiece" in name:
        path, size = references["word_piece"]
        return {"CoreOpsWordPieceTokenizer": CoreOpsWordPieceTokenizer,
                "WordPieceTokenizer": WordPieceTokenizer}[name](path), size
    if "BytePair" in name:
        paths, size = references["byte_pair"]
        return {"CoreOpsBytePairTokenizer": CoreOpsBytePairTokenizer,
                "BytePairTokenizer": BytePairTokenizer}[name](*paths), size
    path, size = references["sentence_piece"]
    return SentencePieceTokenizer(path), size


@pytest.mark.parametrize("name", OURS)
def test_inputs_that_are_not_text_are_named(name, references):
    tokenizer, _ = build(name, references)
    for bad in (None, ["fine", None], 5, [b"ok", 3]):
        with pytest.raises(TypeError, match=r"`inputs` must be a string or a 1-D batch of strings.*"
                                            f"Received: inputs={re.escape(repr(bad))}$"):
            tokenizer(bad)
    with pytest.raises(TypeError, match="Received: inputs of dtype int32"):
        tokenizer(tf.constant([1, 2]))


def test_sentence_piece_names_non_text_inputs_itself(references):
    """keras-hub's layer already says what it got: kept as it is."""
    tokenizer, _ = build("SentencePieceTokenizer", references)
    with pytest.raises(ValueError, match="Input should be a string or a list of strings. Received: None"):
        tokenizer(None)


@pytest.mark.parametrize("name", OURS + ["SentencePieceTokenizer"])
def test_detokenize_of_ids_outside_the_vocabulary_is_one_clear_error(name, references):
    tokenizer, size = build(name, references)
    in_range = f"`ids` must be token ids in \\[0, {size}\\) \\(the vocabulary\\)"
    for ids, listed in [([size], f"{size}"), ([[1, 2], [-1, 3, size + 7]], f"-1, {size + 7}"),
                        ([999_999], "999999")]:
        with pytest.raises(ValueError, match=f"{in_range}. Received: ids holding .* outside it: {listed}$"):
            tokenizer.detokenize(ids)
    # In a graph (tf.data, a SavedModel): the same message from an assertion.
    graph = tf.function(tokenizer.detokenize, input_signature=[tf.TensorSpec([None], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{in_range}. Received: .*: {size}\\]"):
        graph(tf.constant([1, size]))
    for bad, error, match in [(None, TypeError, "`ids` must be integer token ids"),
                              ([1.5], TypeError, "Received: ids=\\[1.5\\]"),
                              (3, ValueError, "`ids` must have a length")]:
        with pytest.raises(error, match=match):
            tokenizer.detokenize(bad)
    # The last id is still fine, in Python and in a graph.
    tokenizer.detokenize([size - 1])
    graph(tf.constant([size - 1]))


def test_byte_tokenizer_still_drops_its_special_ids():
    tokenizer = ByteTokenizer()
    ids = [[104, tokenizer.end_token_id, 105, tokenizer.pad_token_id], []]
    assert tokenizer.detokenize(ids).numpy().tolist() == [b"hi", b""]
