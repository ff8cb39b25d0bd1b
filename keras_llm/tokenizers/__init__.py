"""Tokenizers: Keras layers that turn strings into token ids and back."""

from keras_llm.tokenizers.byte_tokenizer import ByteTokenizer

__all__ = ["ByteTokenizer"]
