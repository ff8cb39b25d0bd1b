"""One vocab.txt, two tokenizers: ours and Hugging Face's BertTokenizerFast (the reference)."""

import tokenizers as hf
import transformers

import keras_llm
from tests.tokenizers.serving_check import TRAINING_CORPUS


def word_piece_pair(directory, vocab_size=600):
    """Trains a lower-casing WordPiece vocabulary on the stress corpus, writes `directory/vocab.txt`.

    Returns our `WordPieceTokenizer` and transformers' `BertTokenizerFast`
    loaded from that file (`from_pretrained(directory)`, as a checkpoint's
    tokenizer is loaded).
    """
    trainer = hf.BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(TRAINING_CORPUS, vocab_size=vocab_size)
    vocabulary = [t for t, _ in sorted(trainer.get_vocab().items(), key=lambda item: item[1])]
    (directory / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    ours = keras_llm.tokenizers.WordPieceTokenizer(str(directory / "vocab.txt"))
    return ours, transformers.BertTokenizerFast.from_pretrained(str(directory))
