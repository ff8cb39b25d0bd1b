"""Tokenizers: Keras layers that turn strings into token ids and back."""

from keras_llm.tokenizers.byte_tokenizer import ByteTokenizer
from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import CoreOpsBytePairTokenizer
from keras_llm.tokenizers.core_ops_word_piece_tokenizer import CoreOpsWordPieceTokenizer
from keras_llm.tokenizers.word_piece_tokenizer import WordPieceTokenizer

__all__ = ["ByteTokenizer", "CoreOpsBytePairTokenizer", "CoreOpsWordPieceTokenizer", "WordPieceTokenizer"]
