"""SentencePiece tokenizer: keras-hub's layer, registered under keras_llm."""

import os

import keras
import keras_hub

from keras_llm.tokenizers.string_tokenizer import check_token_ids


@keras.saving.register_keras_serializable(package="keras_llm")
class SentencePieceTokenizer(keras_hub.tokenizers.SentencePieceTokenizer):
    """Tokenizes with a SentencePiece model (T5, ALBERT, Llama-style vocabularies).

    keras-hub's `SentencePieceTokenizer`, which runs Google's SentencePiece
    library through tensorflow-text and gives exactly the ids of the
    `sentencepiece` Python package (tested), so keras_llm does not rewrite
    it. Everything it offers applies (`sequence_length`, `add_bos`,
    `add_eos`, `detokenize`, `id_to_token`, `token_to_id`); note that its
    `vocabulary_size()` is a method, and that called eagerly it returns
    Python or NumPy values. Its model file is saved as an asset with the
    layer's config, as keras-hub's preprocessors save it; as a node of a
    functional `keras.Model` keras-hub's layer gives wrong outputs (seen with
    keras-hub 0.32), so use it in `tf.data` or a preprocessor. It needs tensorflow-text's ops: a SavedModel holding it
    loads only in a TF Serving build that has them.

    Args:
        proto: The path of a SentencePiece `.model` file, or its bytes.
        **kwargs: Passed to keras-hub's `SentencePieceTokenizer`.

    Example:

    ```python
    import tempfile
    import keras_llm

    path = keras_llm.tokenizers.train_sentence_piece(
        ["the cat sat on the mat", "a dog ran"] * 50, 18, tempfile.mkdtemp()
    )
    tokenizer = keras_llm.tokenizers.SentencePieceTokenizer(path)
    assert tokenizer.detokenize(tokenizer("a cat")) == "a cat"  # Python values when eager
    ```
    """

    def __init__(self, proto=None, **kwargs):
        if isinstance(proto, str) and not _exists(proto):
            raise FileNotFoundError(f"SentencePiece model file not found: {proto!r}")
        super().__init__(proto=proto, **kwargs)

    def detokenize(self, inputs):
        """keras-hub's `detokenize`, after the check every keras_llm tokenizer makes.

        Ids outside `[0, vocabulary_size())` are an error that lists them
        (`ValueError`; in a graph, `InvalidArgumentError`), where
        SentencePiece itself says only "piece id is out of range".
        """
        return super().detokenize(check_token_ids(inputs, self.vocabulary_size()))


def _exists(path):
    return os.path.isfile(path)
