"""Tokenizers: Keras layers that turn strings into token ids and back.

| tokenizer | vocabulary | ops |
|---|---|---|
| `ByteTokenizer` | none (UTF-8 bytes + 2 specials) | core TensorFlow |
| `WordPieceTokenizer` | BERT `vocab.txt` | core + tensorflow-text (fast) |
| `CoreOpsWordPieceTokenizer` | BERT `vocab.txt` | core TensorFlow only (for serving) |
| `BytePairTokenizer` | GPT-2 `vocab.json` + `merges.txt` | core TensorFlow + a word cache (fast) |
| `CoreOpsBytePairTokenizer` | byte-level BPE of GPT-2, Llama 3, Qwen2, SmolLM2 (`tokenizer.json`, GGUF) | core TensorFlow only, stateless (for serving) |
| `SentencePieceTokenizer` | SentencePiece `.model` | tensorflow-text (keras-hub's layer) |

`train_word_piece`, `train_byte_pair` and `train_sentence_piece` learn the
files these load. `from_pretrained(path)` loads the tokenizer of a Hugging
Face model directory (BERT family: `CoreOpsWordPieceTokenizer`; GPT-2, Llama 3,
Qwen2, SmolLM2: `CoreOpsBytePairTokenizer`, with the chat template and
begin/end tokens) with transformers' ids, and
`save_pretrained(tokenizer, path)` writes one back for transformers.
`CoreOpsWordPieceTokenizer.tokenize_with_offsets` also gives each token's
byte span in the input.
"""

from keras_llm.tokenizers.byte_pair_tokenizer import BytePairTokenizer
from keras_llm.tokenizers.byte_tokenizer import ByteTokenizer
from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import CoreOpsBytePairTokenizer
from keras_llm.tokenizers.core_ops_word_piece_tokenizer import CoreOpsWordPieceTokenizer
from keras_llm.tokenizers.pretrained import from_pretrained, save_pretrained
from keras_llm.tokenizers.sentence_piece_tokenizer import SentencePieceTokenizer
from keras_llm.tokenizers.vocabulary_training import (
    train_byte_pair,
    train_sentence_piece,
    train_word_piece,
)
from keras_llm.tokenizers.word_piece_tokenizer import WordPieceTokenizer

__all__ = [
    "BytePairTokenizer",
    "ByteTokenizer",
    "CoreOpsBytePairTokenizer",
    "CoreOpsWordPieceTokenizer",
    "SentencePieceTokenizer",
    "WordPieceTokenizer",
    "from_pretrained",
    "save_pretrained",
    "train_byte_pair",
    "train_sentence_piece",
    "train_word_piece",
]
