"""BERT's WordPiece tokenizer with tensorflow-text's fast WordPiece kernel."""

import keras
import tensorflow as tf

from keras_llm.tokenizers.core_ops_word_piece_tokenizer import (
    CoreOpsWordPieceTokenizer,
    select_rows,
)


@keras.saving.register_keras_serializable(package="keras_llm")
class WordPieceTokenizer(CoreOpsWordPieceTokenizer):
    """BERT's WordPiece tokenizer for training pipelines (tensorflow-text).

    The same tokenizer as `CoreOpsWordPieceTokenizer`, id for id, and the
    same arguments: BERT's normalization and splitting run in core ops, and
    the greedy longest-match-first segmentation runs in tensorflow-text's
    `FastWordpieceTokenizer` (linear-time MaxMatch, Song et al. 2021)
    instead of a `tf.while_loop`. Use it in `tf.data`; export the core-ops
    variant in SavedModels that TF Serving must load without
    tensorflow-text's ops. (keras-hub's `WordPieceTokenizer` is not used:
    its tf-text normalization differs from BERT's on control, zero-width,
    no-break-space and compatibility characters.)

    Example:

    ```python
    import keras_llm

    vocab = ["[UNK]", "the", "cat", "##s"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    assert tokenizer(["The cats"]).to_list() == [[1, 2, 3]]
    ```
    """

    def __init__(self, vocabulary, **kwargs):
        super().__init__(vocabulary, **kwargs)
        import tensorflow_text as tf_text

        self._fast_word_piece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary,
            suffix_indicator=self.suffix_indicator,
            unknown_token=self.unknown_token,
            no_pretokenization=True,  # words come from BERT's own splitting
            support_detokenization=False,
            # Words longer than max_input_chars_per_word are handled below by
            # characters, as BERT counts them; the byte limit only must not bite.
            max_bytes_per_word=4 * self.max_input_chars_per_word,
        )

    def _word_piece(self, words):
        """[W] words -> [W, None] ids."""
        ids = tf.cast(self._fast_word_piece.tokenize(words), tf.int32)
        too_long = tf.strings.length(words, unit="UTF8_CHAR") > self.max_input_chars_per_word
        unknown = tf.RaggedTensor.from_tensor(
            tf.fill([tf.shape(words)[0], 1], self.unknown_token_id)
        )
        return select_rows(too_long, unknown, ids)
