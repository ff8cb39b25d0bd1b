"""BERT's WordPiece tokenizer written with core TensorFlow ops only."""

import keras
import tensorflow as tf

from keras_llm._graph import graph_function
from keras_llm.tokenizers._word_piece_tables import _character_tables, _read_vocabulary
from keras_llm.tokenizers.string_tokenizer import StringTokenizer


@keras.saving.register_keras_serializable(package="keras_llm")
class CoreOpsWordPieceTokenizer(StringTokenizer):
    """BERT's WordPiece tokenizer in ops that every TensorFlow build has.

    Gives the ids of Hugging Face's `BertWordPieceTokenizer` (and of the
    original BERT): text cleaning (NUL, U+FFFD and control/format
    characters dropped, whitespace unified), spaces around CJK ideographs,
    optional accent stripping (NFD, then combining marks dropped) and
    lower-casing, splitting on whitespace and around punctuation, then
    greedy longest-match-first WordPiece with `##` continuations; a word with
    no segmentation, or longer than `max_input_chars_per_word` characters,
    becomes the unknown token.

    BERT's special tokens that the vocabulary holds (`[PAD]`, `[UNK]`,
    `[CLS]`, `[SEP]`, `[MASK]`, or the names given) are listed in
    `special_tokens` and as `pad_token_id`, `cls_token_id`, `sep_token_id`,
    `mask_token_id` (None when absent). As in the original BERT, they are not
    recognised inside text (`"[MASK]"` in a string is split as punctuation);
    the data pipelines insert them by id.

    It uses only ops registered by TensorFlow itself (`tf.strings`,
    `tf.lookup.StaticHashTable`, `tf.searchsorted`, `tf.while_loop`), no
    tensorflow-text, so a SavedModel holding it loads in any TF Serving
    binary. Every per-character step of BERT's normalization is one
    precomputed table over all Unicode code points (from Python's
    `unicodedata`, Unicode 14 on Python 3.11; characters assigned in later
    Unicode versions may differ from a reference built on newer data).
    Bytes that are not valid UTF-8 decode to U+FFFD and are dropped.

    Args:
        vocabulary: A path to a BERT `vocab.txt` (one token per line) or a
            list of tokens; a token's id is its line number from 0.
        lowercase: Lower-case the text (uncased BERT). Cased BERT: False.
        strip_accents: Strip accents; defaults to `lowercase`, as in BERT.
        unknown_token: The token of words that cannot be segmented.
        suffix_indicator: The prefix of word-continuation pieces.
        max_input_chars_per_word: Longer words become the unknown token.
        pad_token: The padding token's name, `cls_token` the one that
            starts a sequence, `sep_token` the one that ends each segment,
            `mask_token` the masked-LM blank (a name the vocabulary lacks
            gives an id of None).
        **kwargs: Passed to `keras.layers.Layer`.

    Call arguments:
        inputs: A string or a 1-D batch of strings (str, bytes, list or tensor).

    Returns:
        int32 ids: 1-D for a scalar input, a `tf.RaggedTensor` `[batch, None]`
        for a batch. `tokenize_with_offsets` also gives each token's byte
        span in the input (for question answering, tagging, highlighting).

    Example:

    ```python
    import keras_llm

    vocab = ["[UNK]", "[CLS]", "[SEP]", "the", "cat", "##s", "sat", "!", "cafe"]
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(vocab, lowercase=True)
    assert tokenizer(["The cats sat!", "Café dogs"]).to_list() == [[3, 4, 5, 6, 7], [8, 0]]
    assert tokenizer.detokenize([3, 4, 5]).numpy() == b"the cats"
    ```
    """

    def __init__(
        self,
        vocabulary,
        lowercase=True,
        strip_accents=None,
        unknown_token="[UNK]",
        suffix_indicator="##",
        max_input_chars_per_word=100,
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary = _read_vocabulary(vocabulary)
        if unknown_token not in self.vocabulary:
            raise ValueError(
                f"The unknown token is not in the vocabulary. Received: unknown_token={unknown_token!r}"
            )
        if max_input_chars_per_word <= 0:
            raise ValueError(
                "`max_input_chars_per_word` must be positive. "
                f"Received: max_input_chars_per_word={max_input_chars_per_word}"
            )
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.unknown_token = unknown_token
        self.suffix_indicator = suffix_indicator
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.vocabulary_size = len(self.vocabulary)
        self.unknown_token_id = self.vocabulary.index(unknown_token)
        # No piece can match more characters than the longest token has.
        self._longest_token = max(len(token) for token in self.vocabulary)

        removed, keys, values, lengths = _character_tables(self.lowercase, self.strip_accents)
        self._removed_boundaries = tf.constant(removed, tf.int32)
        # Code point -> row of `_char_results` (what it becomes); -1: itself.
        self._char_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.int32), tf.range(len(keys), dtype=tf.int32)
            ),
            default_value=-1,
        )
        self._char_results = tf.RaggedTensor.from_row_lengths(
            tf.constant(values, tf.int32), tf.constant(lengths, tf.int64)
        )
        # A piece's length in characters, from its id and whether it continues a word.
        self._token_lengths = tf.constant([len(token) for token in self.vocabulary], tf.int64)
        self._token_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocabulary, tf.string),
                tf.range(self.vocabulary_size, dtype=tf.int32),
            ),
            default_value=-1,
        )
        self._tokens = tf.constant(self.vocabulary, tf.string)
        self.pad_token = pad_token
        self.cls_token = cls_token
        self.sep_token = sep_token
        self.mask_token = mask_token
        # BERT's special tokens that this vocabulary has, by name.
        ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.special_tokens = {
            token: ids[token]
            for token in (pad_token, unknown_token, cls_token, sep_token, mask_token)
            if token in ids
        }
        self.pad_token_id = self.special_tokens.get(pad_token)
        self.cls_token_id = self.special_tokens.get(cls_token)
        self.sep_token_id = self.special_tokens.get(sep_token)
        self.mask_token_id = self.special_tokens.get(mask_token)
        self.built = True

    # -- normalization and pre-tokenization ------------------------------------

    def _words(self, texts):
        """[B] strings -> BERT's words, and the input bytes each of their characters comes from.

        Returns `words` `[B, None]` (BERT-normalized and split) and `char_starts`,
        `char_ends` `[W, None]`: for each character of each word, the byte span of
        the input character it was made from. One input character can make
        several (`İ` lower-cased is `i` and a combining dot) or none (a control
        character, a stripped accent); each made character gets the span of its
        maker, as Hugging Face's `NormalizedString` aligns them.
        """
        codepoints, starts = tf.strings.unicode_decode_with_offsets(
            texts, "UTF-8", errors="replace", replacement_char=0xFFFD
        )  # [B, C]
        cps = codepoints.flat_values  # [N]
        starts = starts.flat_values
        # A character's UTF-8 length from its code point (invalid bytes become
        # U+FFFD, whose span is never used: it is removed).
        ends = starts + 1 + tf.add_n(
            [tf.cast(cps >= limit, tf.int64) for limit in (0x80, 0x800, 0x10000)]
        )
        removed = tf.math.floormod(
            tf.searchsorted(self._removed_boundaries, cps, side="right"), 2
        ) == 1
        result = self._char_table.lookup(cps)  # [N]: -1 where a character stays itself
        result_row = tf.maximum(result, 0)
        made_lengths = tf.where(
            removed, tf.constant(0, tf.int64),
            tf.where(result < 0, tf.constant(1, tf.int64),
                     tf.gather(self._char_results.row_lengths(), result_row)),
        )  # [N]: how many characters each one becomes
        # The characters made, flat [M], each with its maker (an index into [N]).
        maker = tf.ragged.row_splits_to_segment_ids(
            tf.concat([[0], tf.cumsum(made_lengths)], 0)
        )  # [M]
        made_start = tf.cumsum(made_lengths, exclusive=True)
        within = tf.range(tf.size(maker, out_type=tf.int64)) - tf.gather(made_start, maker)
        made_result = tf.gather(result, maker)
        made_cps = tf.where(
            made_result < 0,
            tf.gather(cps, maker),
            tf.gather(
                self._char_results.flat_values,
                tf.gather(self._char_results.row_starts(), tf.maximum(made_result, 0)) + within,
            ),
        )  # [M]
        text = tf.gather(codepoints.value_rowids(), maker)  # [M] -> its text
        # Spaces (whitespace, and those put around punctuation and CJK) split words.
        kept = tf.not_equal(made_cps, ord(" "))
        index = tf.range(tf.size(made_cps, out_type=tf.int64))
        previous = tf.maximum(index - 1, 0)  # (no slicing: safe with no characters at all)
        new_word = tf.logical_and(
            kept,
            tf.reduce_any(
                [index == 0, tf.logical_not(tf.gather(kept, previous)),
                 tf.not_equal(tf.gather(text, previous), text)],
                axis=0,
            ),
        )
        word_of_char = tf.cumsum(tf.cast(new_word, tf.int64)) - 1
        word_chars = tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(made_cps, kept),
            tf.boolean_mask(word_of_char, kept),
            nrows=tf.reduce_sum(tf.cast(new_word, tf.int64)),
        )  # [W, None] code points
        words = tf.RaggedTensor.from_value_rowids(
            tf.strings.unicode_encode(word_chars, "UTF-8"),
            tf.boolean_mask(text, new_word),
            nrows=tf.shape(texts, out_type=tf.int64)[0],
        )  # [B, None]
        kept_maker = tf.boolean_mask(maker, kept)
        char_starts = word_chars.with_flat_values(tf.gather(starts, kept_maker))
        char_ends = word_chars.with_flat_values(tf.gather(ends, kept_maker))
        return words, char_starts, char_ends

    # -- WordPiece -----------------------------------------------------------------

    def _word_piece(self, words):
        """[W] words -> [W, None] ids, greedy longest-match-first."""
        lengths = tf.strings.length(words, unit="UTF8_CHAR")  # [W]
        num_words = tf.shape(words)[0]
        too_long = lengths > self.max_input_chars_per_word
        max_length = tf.reduce_max(tf.concat([[1], tf.where(too_long, 0, lengths)], 0))
        # Only prefixes that could be tokens: the work per step is [W, L].
        max_length = tf.minimum(max_length, self._longest_token)
        candidate_lengths = tf.range(1, max_length + 1)  # [L]

        def step(i, start, unknown, pieces):
            active = tf.logical_and(start < lengths, tf.logical_not(unknown))
            position = tf.minimum(start, lengths)
            # [W, L] substrings word[start : start + l] for every length l.
            substrings = tf.strings.substr(
                tf.broadcast_to(words[:, None], [num_words, max_length]),
                tf.broadcast_to(position[:, None], [num_words, max_length]),
                tf.broadcast_to(candidate_lengths[None, :], [num_words, max_length]),
                unit="UTF8_CHAR",
            )
            prefixed = tf.where(
                (start > 0)[:, None], tf.strings.join([self.suffix_indicator, substrings]), substrings
            )
            ids = self._token_table.lookup(prefixed)
            fits = (start[:, None] + candidate_lengths[None, :]) <= lengths[:, None]
            found = tf.logical_and(ids >= 0, fits)
            best = tf.reduce_max(tf.where(found, candidate_lengths[None, :], 0), axis=1)  # [W]
            best_id = tf.reduce_sum(
                tf.where(tf.equal(candidate_lengths[None, :], best[:, None]), ids, 0), axis=1
            )
            matched = tf.logical_and(active, best > 0)
            unknown = tf.logical_or(unknown, tf.logical_and(active, best == 0))
            pieces = pieces.write(i, tf.where(matched, best_id, -1))
            return i + 1, start + tf.where(matched, best, 0), unknown, pieces

        def keep_going(i, start, unknown, pieces):
            return tf.reduce_any(tf.logical_and(start < lengths, tf.logical_not(unknown)))

        _, _, unknown, pieces = tf.while_loop(
            keep_going,
            step,
            (
                tf.constant(1),
                tf.zeros_like(lengths),
                too_long,
                # Column 0 is padding (-1), so stacking works when no word
                # needs a step (an empty batch, or only empty strings).
                tf.TensorArray(tf.int32, size=1, dynamic_size=True, element_shape=[None]).write(
                    0, tf.fill([num_words], -1)
                ),
            ),
        )
        pieces = tf.transpose(pieces.stack())  # [W, steps]
        pieces = tf.reshape(pieces, [num_words, -1])
        ragged = tf.ragged.boolean_mask(pieces, pieces >= 0)
        unknown_ids = tf.RaggedTensor.from_tensor(
            tf.fill([num_words, 1], self.unknown_token_id)
        )
        # A word that fails anywhere is one unknown token (as BERT does).
        return select_rows(unknown, unknown_ids, ragged)

    def _tokenize(self, texts):
        words, _, _ = self._words(texts)  # [B, None]
        ids = self._word_piece(words.flat_values)  # [W, None]
        return words.with_flat_values(ids).merge_dims(1, 2)  # [B, None]

    def _tokenize_with_offsets(self, texts):
        words, char_starts, char_ends = self._words(texts)  # [B, None], [W, None] x 2
        ids = self._word_piece(words.flat_values)  # [W, None]
        # The pieces of a word cover it in order (an unknown word is one
        # piece), so each piece's first character follows from the lengths of
        # the tokens before it, and it ends where the next begins (the last
        # where its word does). Flat [P] over all pieces:
        word = ids.value_rowids()  # [P] -> its word
        word_start = tf.gather(ids.row_starts(), word)  # [P] its word's first piece
        continues = tf.range(tf.size(word, out_type=tf.int64)) > word_start
        lengths = tf.gather(self._token_lengths, ids.flat_values) - tf.where(
            continues, tf.constant(len(self.suffix_indicator), tf.int64), 0
        )
        before = tf.cumsum(lengths, exclusive=True)
        first = before - tf.gather(before, word_start)  # [P] first character in its word
        is_last = tf.equal(
            tf.range(tf.size(word, out_type=tf.int64)), tf.gather(ids.row_limits(), word) - 1
        )
        last = tf.where(is_last, tf.gather(char_starts.row_lengths(), word), first + lengths) - 1
        word_chars = tf.gather(char_starts.row_starts(), word)  # [P] where its word's characters begin
        starts = tf.gather(char_starts.flat_values, word_chars + first)
        ends = tf.gather(char_ends.flat_values, word_chars + last)
        ids = words.with_flat_values(ids).merge_dims(1, 2)  # [B, None]
        return ids, ids.with_flat_values(starts), ids.with_flat_values(ends)

    @graph_function(input_signature=[tf.TensorSpec([None], tf.string)])
    def _tokenize_with_offsets_graph(self, texts):
        return self._tokenize_with_offsets(texts)

    def tokenize_with_offsets(self, inputs):
        """The ids of `inputs` and where each token's text is in it, in bytes.

        `starts` and `ends` are byte offsets into the UTF-8 input (TensorFlow's
        and tensorflow-text's convention): `tf.strings.substr(text, start, end
        - start)` is the original text of a token, its case and accents
        intact. A `##` continuation spans its own characters; an unknown
        token spans its whole word. The offsets are those of Hugging Face's
        `encoding.offsets`, which count characters instead of bytes. Runs in
        core TensorFlow ops, in a `tf.function` and in a SavedModel.

        Args:
            inputs: A string or a 1-D batch of strings (str, bytes, list or tensor).

        Returns:
            `(ids, starts, ends)`: int32 ids and int64 offsets, each 1-D for a
            scalar input and a `tf.RaggedTensor` `[batch, None]` for a batch.

        Example:

        ```python
        import tensorflow as tf
        import keras_llm

        vocab = ["[UNK]", "the", "cafe", "sat", "##s", "!"]
        tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(vocab)
        ids, starts, ends = tokenizer.tokenize_with_offsets("The  Cafés sat!")
        assert ids.numpy().tolist() == [1, 2, 4, 3, 5]
        assert starts.numpy().tolist() == [0, 5, 10, 12, 15]  # "é" is 2 bytes
        pieces = tf.strings.substr("The  Cafés sat!", starts, ends - starts)
        assert pieces.numpy().tolist() == [b"The", "Café".encode(), b"s", b"sat", b"!"]
        ```
        """
        texts = self._string_batch(inputs)
        rank = texts.shape.rank
        texts = tf.reshape(texts, [-1])
        if tf.executing_eagerly():
            outputs = self._tokenize_with_offsets_graph(texts)
        else:
            outputs = self._tokenize_with_offsets(texts)
        return tuple(x.flat_values for x in outputs) if rank == 0 else outputs

    def detokenize(self, ids):
        """Joins tokens with spaces and glues `##` continuations to the previous one.

        Args:
            ids: int ids in `[0, vocabulary_size)`, `[length]` or `[batch,
                None]`, dense or ragged. Ids outside it are an error that
                lists them.

        Returns:
            A string, or a `[batch]` string tensor.
        """
        return super().detokenize(ids)

    def _detokenize(self, ids):
        tokens = tf.gather(self._tokens, ids)
        text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
        return tf.strings.regex_replace(text, " " + self.suffix_indicator, "")

    def id_to_token(self, token_id):
        """The token string of an id."""
        if not 0 <= token_id < self.vocabulary_size:
            raise ValueError(
                f"`token_id` must be in [0, {self.vocabulary_size}). Received: token_id={token_id}"
            )
        return self.vocabulary[token_id]

    def token_to_id(self, token):
        """The id of a token string."""
        try:
            return self.vocabulary.index(token)
        except ValueError:
            raise ValueError(f"Token not in the vocabulary. Received: token={token!r}") from None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.vocabulary,
                "lowercase": self.lowercase,
                "strip_accents": self.strip_accents,
                "unknown_token": self.unknown_token,
                "suffix_indicator": self.suffix_indicator,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                "pad_token": self.pad_token,
                "cls_token": self.cls_token,
                "sep_token": self.sep_token,
                "mask_token": self.mask_token,
            }
        )
        return config


def select_rows(condition, if_true, if_false):
    """Row-wise choice between two `[N, None]` ragged tensors."""
    true_rows = tf.where(condition)[:, 0]
    false_rows = tf.where(tf.logical_not(condition))[:, 0]
    order = tf.argsort(tf.concat([tf.cast(true_rows, tf.int32), tf.cast(false_rows, tf.int32)], 0))
    stacked = tf.concat([tf.gather(if_true, true_rows), tf.gather(if_false, false_rows)], 0)
    return tf.gather(stacked, order)
