"""Learning tokenizer vocabularies from a corpus, with the libraries that do it well."""

import os
import shutil
import tempfile

import tensorflow as tf

from keras_llm._atomic import atomic_output
from keras_llm._checks import check_int

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _texts(corpus):
    """Yields the strings of a corpus: a file path, a list of strings or a dataset."""
    if isinstance(corpus, (str, os.PathLike)):
        path = os.fspath(corpus)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Corpus file not found: {path!r}")

        def read():
            with open(path, "rb") as f:
                for line_number, raw in enumerate(f, start=1):
                    try:
                        yield raw.decode("utf-8").rstrip("\r\n")
                    except UnicodeDecodeError:
                        raise ValueError(
                            f"{path}:{line_number}: not valid UTF-8; expected UTF-8 text."
                        ) from None

        return read()
    if isinstance(corpus, tf.data.Dataset):
        return (t.decode("utf-8", errors="replace") for t in corpus.as_numpy_iterator())
    if isinstance(corpus, (list, tuple)) and all(isinstance(t, str) for t in corpus):
        return iter(corpus)
    raise TypeError(
        "`corpus` must be a file path, a list of strings or a tf.data.Dataset of "
        f"strings. Received: {type(corpus).__name__}"
    )


def _publish(build, output_dir):
    """Runs `build(scratch_dir)`, then writes each file it made into `output_dir`.

    The trainers write files of fixed names into a directory: they get a
    scratch one of the system's, and each file goes to `output_dir` through
    keras_llm's one atomic writer (whole or not at all, the modes of the
    user's umask, and what a killed run left there removed).
    """
    output_dir = os.fspath(output_dir)
    with tempfile.TemporaryDirectory(prefix="keras_llm-vocabulary-") as scratch:
        build(scratch)
        written = []
        for name in sorted(os.listdir(scratch)):
            path = os.path.join(output_dir, name)
            with atomic_output(path) as temporary:
                shutil.move(os.path.join(scratch, name), temporary)
            written.append(path)
        return written


def train_word_piece(corpus, vocabulary_size, output_dir, lowercase=True,
                     special_tokens=None):
    """Learns a BERT WordPiece vocabulary and writes `output_dir/vocab.txt`.

    Uses Hugging Face `tokenizers`' WordPiece trainer with BERT's
    normalization, so the file loads in `WordPieceTokenizer` and
    `CoreOpsWordPieceTokenizer` with the same `lowercase`.

    Args:
        corpus: A UTF-8 text file (one document or sentence per line), a
            list of strings, or a `tf.data.Dataset` of strings.
        vocabulary_size: The size of the vocabulary, special tokens included.
        output_dir: Where to write `vocab.txt` (created if needed).
        lowercase: Uncased (True) or cased (False) BERT normalization.
        special_tokens: Tokens given the first ids; default
            `["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]`.

    Returns:
        The path of `vocab.txt`.

    Example:

    ```python
    import tempfile
    import keras_llm

    path = keras_llm.tokenizers.train_word_piece(
        ["the cat sat on the mat", "the dog sat"] * 10, 60, tempfile.mkdtemp()
    )
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(path)
    assert tokenizer.id_to_token(0) == "[PAD]"
    assert tokenizer.detokenize(tokenizer("The cat")).numpy() == b"the cat"
    ```
    """
    import tokenizers

    special_tokens = list(special_tokens or BERT_SPECIAL_TOKENS)
    check_int("vocabulary_size", vocabulary_size, len(special_tokens) + 1)
    texts = _texts(corpus)

    def build(directory):
        trainer = tokenizers.BertWordPieceTokenizer(lowercase=lowercase)
        trainer.train_from_iterator(  # (no progress bars: blank lines on a pipe)
            texts, vocab_size=vocabulary_size, special_tokens=special_tokens, show_progress=False
        )
        trainer.save_model(directory)

    return _publish(build, output_dir)[0]


def train_byte_pair(corpus, vocabulary_size, output_dir, special_tokens=("<|endoftext|>",)):
    """Learns a GPT-2 byte-level BPE; writes `vocab.json` and `merges.txt`.

    Uses Hugging Face `tokenizers`' byte-level BPE trainer; the files load in
    `CoreOpsBytePairTokenizer`.

    Args:
        corpus: A UTF-8 text file, a list of strings, or a `tf.data.Dataset`
            of strings.
        vocabulary_size: The size of the vocabulary, the 256 byte symbols and
            special tokens included.
        output_dir: Where to write the two files.
        special_tokens: Tokens added to the vocabulary.

    Returns:
        The paths of `vocab.json` and `merges.txt`.

    Example:

    ```python
    import tempfile
    import keras_llm

    vocab, merges = keras_llm.tokenizers.train_byte_pair(
        ["the cat sat on the mat"] * 20, 300, tempfile.mkdtemp()
    )
    tokenizer = keras_llm.tokenizers.CoreOpsBytePairTokenizer(vocab, merges)
    assert tokenizer.detokenize(tokenizer("the cat")).numpy() == b"the cat"
    ```
    """
    import tokenizers

    check_int("vocabulary_size", vocabulary_size, 256 + len(special_tokens) + 1)
    texts = _texts(corpus)

    def build(directory):
        trainer = tokenizers.ByteLevelBPETokenizer()
        trainer.train_from_iterator(  # (no progress bars: blank lines on a pipe)
            texts, vocab_size=vocabulary_size, special_tokens=list(special_tokens),
            show_progress=False,
        )
        trainer.save_model(directory)

    written = _publish(build, output_dir)
    return (
        next(p for p in written if p.endswith("vocab.json")),
        next(p for p in written if p.endswith("merges.txt")),
    )


def train_sentence_piece(corpus, vocabulary_size, output_dir, model_type="unigram", **options):
    """Trains a SentencePiece model; writes `output_dir/sentencepiece.model`.

    Uses Google's `sentencepiece` trainer with its defaults (ids 0-3: `<unk>`
    ... as `sentencepiece` assigns them) unless `options` say otherwise.

    Args:
        corpus: A UTF-8 text file, a list of strings, or a `tf.data.Dataset`
            of strings.
        vocabulary_size: The number of pieces.
        output_dir: Where to write `sentencepiece.model`.
        model_type: `"unigram"` or `"bpe"` (also `"char"`, `"word"`).
        **options: More `sentencepiece.SentencePieceTrainer` options.

    Returns:
        The path of `sentencepiece.model`.

    Example:

    ```python
    import tempfile
    import keras_llm

    path = keras_llm.tokenizers.train_sentence_piece(
        ["the cat sat on the mat", "a dog ran"] * 50, 18, tempfile.mkdtemp()
    )
    tokenizer = keras_llm.tokenizers.SentencePieceTokenizer(path)
    assert tokenizer.detokenize(tokenizer("the cat")) == "the cat"
    ```
    """
    import sentencepiece

    check_int("vocabulary_size", vocabulary_size, 4)
    texts = _texts(corpus)

    def build(directory):
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=texts,
            model_prefix=os.path.join(directory, "sentencepiece"),
            vocab_size=vocabulary_size,
            model_type=model_type,
            minloglevel=2,
            **options,
        )
        os.remove(os.path.join(directory, "sentencepiece.vocab"))

    return _publish(build, output_dir)[0]
