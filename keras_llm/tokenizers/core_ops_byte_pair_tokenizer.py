"""GPT-2's byte-level BPE tokenizer written with core TensorFlow ops only."""

import json
import os

import keras
import tensorflow as tf

from keras_llm.tokenizers.string_tokenizer import StringTokenizer

# Unicode's White_Space property, which Oniguruma's `\s` (used by GPT-2's
# pattern in Hugging Face `tokenizers`) matches and RE2's ASCII `\s` does not.
_SPACE = r"\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"
# GPT-2's pre-tokenization pattern without its one look-ahead, `\s+(?!\S)`,
# which RE2 cannot run; `_pretokenize` gets the same effect by cutting a
# whitespace run before its last character when a non-space follows.
_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+"
    rf"| ?[^{_SPACE}\p{{L}}\p{{N}}]+|[{_SPACE}]+"
)
# A byte that never occurs in valid UTF-8 marks the cuts.
_CUT = b"\xff"
_END_TOKEN = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the rest (controls, space,
    ...) map to code points from 256 up, so every byte is one visible symbol.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def _load_files(vocabulary, merges):
    if isinstance(vocabulary, (str, os.PathLike)):
        path = os.fspath(vocabulary)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"BPE vocabulary file not found: {path!r}")
        try:
            with open(path, encoding="utf-8") as f:
                vocabulary = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"{path}: expected a JSON object mapping tokens to ids (GPT-2's "
                f"vocab.json). {error}"
            ) from None
        vocabulary_source = path
    else:
        vocabulary_source = "vocabulary"
    if not isinstance(vocabulary, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in vocabulary.items()
    ):
        raise ValueError(
            f"{vocabulary_source}: expected a mapping from token strings to int ids."
        )
    _check_ids(vocabulary, vocabulary_source)
    if isinstance(merges, (str, os.PathLike)):
        path = os.fspath(merges)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"BPE merges file not found: {path!r}")
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges_source = path
        numbered = list(enumerate(lines, start=1))
        if numbered and numbered[0][1].startswith("#version"):
            numbered = numbered[1:]
    else:
        merges_source = "merges"
        numbered = list(enumerate(merges, start=1))
    pairs = []
    for line, text in numbered:
        if text == "":
            continue
        parts = text.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"{merges_source}:{line}: expected two tokens separated by one space. "
                f"Received: {text!r}"
            )
        for part in (parts[0], parts[1], parts[0] + parts[1]):
            if part not in vocabulary:
                raise ValueError(
                    f"{merges_source}:{line}: the merge {text!r} needs {part!r}, which is "
                    f"not in {vocabulary_source}: the merges do not match the vocabulary."
                )
        pairs.append(text)
    return vocabulary, pairs


def _check_ids(vocabulary, source):
    """The ids of N tokens must be 0 to N - 1, each once (as GPT-2's and Hugging Face's are)."""
    size = len(vocabulary)
    owner = {}
    for token, token_id in vocabulary.items():
        if token_id in owner:
            raise ValueError(
                f"{source}: tokens {owner[token_id]!r} and {token!r} share the id {token_id}; "
                "each token needs its own id."
            )
        owner[token_id] = token
    lowest, highest = min(owner, default=0), max(owner, default=0)
    for token_id in (lowest, highest):
        if not 0 <= token_id < size:
            raise ValueError(
                f"{source}: token {owner[token_id]!r} has the id {token_id}; the ids of its "
                f"{size} tokens must be 0 to {size - 1}, each used once."
            )


@keras.saving.register_keras_serializable(package="keras_llm")
class CoreOpsBytePairTokenizer(StringTokenizer):
    """GPT-2's byte-level BPE in ops that every TensorFlow build has.

    Gives the ids of Hugging Face's `ByteLevelBPETokenizer` (GPT-2, RoBERTa
    style, no prefix space): GPT-2's regular expression splits the text into
    words (contractions, letter runs, digit runs, other runs, each with at
    most one leading space; whitespace runs give all but their last
    character to a token of their own), each word's UTF-8 bytes become
    GPT-2's byte symbols, and the merges are applied lowest rank first, all
    non-overlapping occurrences of a pair at once, as GPT-2's `bpe()` does.

    Only ops registered by TensorFlow itself are used (`tf.strings` with
    RE2, `tf.lookup.StaticHashTable`, `tf.while_loop`), so a SavedModel
    holding it loads in any TF Serving binary. Bytes that are not valid
    UTF-8 are replaced by U+FFFD first. `<|endoftext|>`, when the vocabulary
    has it, is `end_token_id`; like Hugging Face with `add_special_tokens`
    off, it is not recognised inside text, so pipelines append it by id.

    Args:
        vocabulary: A path to `vocab.json` or a dict from token to id.
        merges: A path to `merges.txt` or a list of `"a b"` strings, highest
            priority first.
        **kwargs: Passed to `keras.layers.Layer`.

    Call arguments:
        inputs: A string or a 1-D batch of strings.

    Returns:
        int32 ids: 1-D for a scalar input, a `tf.RaggedTensor` `[batch, None]`
        for a batch.

    Example:

    ```python
    import keras_llm

    symbols = keras_llm.tokenizers.core_ops_byte_pair_tokenizer.bytes_to_unicode()
    vocabulary = {s: i for i, s in enumerate(symbols.values())}
    vocabulary.update({"Ġt": 256, "Ġth": 257, "Ġthe": 258})
    merges = ["Ġ t", "Ġt h", "Ġth e"]
    tokenizer = keras_llm.tokenizers.CoreOpsBytePairTokenizer(vocabulary, merges)
    ids = tokenizer("in the")
    assert ids.numpy().tolist() == [vocabulary["i"], vocabulary["n"], 258]
    assert tokenizer.detokenize(ids).numpy() == b"in the"
    ```
    """

    def __init__(self, vocabulary, merges, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary, self.merges = _load_files(vocabulary, merges)
        byte_symbols = bytes_to_unicode()
        missing = [s for s in byte_symbols.values() if s not in self.vocabulary]
        if missing:
            raise ValueError(
                f"The vocabulary lacks {len(missing)} of GPT-2's 256 byte symbols "
                f"(first: {missing[0]!r}); a byte-level BPE vocabulary holds all of them."
            )
        self.vocabulary_size = len(self.vocabulary)
        tokens = list(self.vocabulary)
        self._token_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(tokens), tf.constant([self.vocabulary[t] for t in tokens], tf.int32)
            ),
            default_value=-1,
        )
        self._merge_rank = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.merges or [""], tf.string),
                tf.range(max(len(self.merges), 1), dtype=tf.int32),
            ),
            default_value=-1,
        )
        self._byte_symbols = tf.constant([byte_symbols[b] for b in range(256)])
        # id -> the bytes it stands for, for detokenize.
        symbol_to_byte = {s: bytes([b]) for b, s in byte_symbols.items()}
        id_bytes = [b""] * self.vocabulary_size
        for token, token_id in self.vocabulary.items():
            id_bytes[token_id] = b"".join(symbol_to_byte.get(c, c.encode()) for c in token)
        self._id_bytes = tf.constant(id_bytes)
        self._id_to_token = {i: t for t, i in self.vocabulary.items()}
        # GPT-2's one special token, when the vocabulary has it.
        self.special_tokens = {t: i for t, i in self.vocabulary.items() if t == _END_TOKEN}
        self.end_token_id = self.special_tokens.get(_END_TOKEN)
        self.built = True

    def _pretokenize(self, texts):
        """[B] strings -> [B, None] words, as GPT-2's pattern splits them."""
        texts = tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        # `\s+(?!\S)`: a run of two or more spaces followed by a non-space
        # loses its last character to the next word.
        texts = tf.strings.regex_replace(
            texts, rf"([{_SPACE}])([{_SPACE}][^{_SPACE}])", b"\\1" + _CUT + b"\\2"
        )
        texts = tf.strings.regex_replace(texts, _PATTERN, _CUT + b"\\0")
        words = tf.strings.split(texts, sep=_CUT)
        return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)

    def _bpe(self, words):
        """[W] words -> [W, None] ids."""
        # [W, bytes] -> GPT-2's byte symbols.
        byte_strings = tf.strings.bytes_split(words)
        byte_values = tf.cast(
            tf.reshape(tf.io.decode_raw(byte_strings.flat_values, tf.uint8), [-1]), tf.int32
        )
        symbols = byte_strings.with_flat_values(tf.gather(self._byte_symbols, byte_values))

        def merge_once(symbols):
            flat = symbols.flat_values  # [S]
            row_starts = symbols.row_starts()
            # A pair (i, i + 1) is inside a word unless i + 1 starts a row.
            starts_row = tf.scatter_nd(
                tf.cast(row_starts[:, None], tf.int32),
                tf.ones_like(row_starts, tf.int32),
                tf.shape(flat, out_type=tf.int32) + 1,
            )[1:-1] > 0
            pairs = tf.strings.join([flat[:-1], flat[1:]], separator=" ")  # [S - 1]
            ranks = tf.where(starts_row, -1, self._merge_rank.lookup(pairs))
            rank_or_big = tf.where(ranks >= 0, ranks, tf.int32.max)
            # The best pair of each word (rows of the pairs = rows of their left).
            pair_rows = symbols.value_rowids()[:-1]
            best = tf.math.unsorted_segment_min(
                rank_or_big, pair_rows, symbols.nrows(out_type=tf.int64)
            )
            hit = tf.logical_and(ranks >= 0, tf.equal(rank_or_big, tf.gather(best, pair_rows)))
            # Consecutive hits overlap (a a a): merge left to right, every other.
            index = tf.range(tf.size(hit))
            run_start = _run_starts(hit)
            merge = tf.logical_and(hit, tf.math.floormod(index - run_start, 2) == 0)
            merge_at = tf.concat([merge, [False]], 0)  # [S]: symbol i absorbs i + 1
            absorbed = tf.concat([[False], merge], 0)  # [S]: symbol i was absorbed
            merged = tf.where(
                merge_at, tf.strings.join([flat, tf.concat([flat, [""]], 0)[1:]]), flat
            )
            keep = tf.logical_not(absorbed)
            new_rows = tf.boolean_mask(symbols.value_rowids(), keep)
            return (
                tf.RaggedTensor.from_value_rowids(
                    tf.boolean_mask(merged, keep), new_rows, nrows=symbols.nrows()
                ),
                tf.reduce_any(merge),
            )

        def body(symbols, _):
            return merge_once(symbols)

        symbols, _ = tf.while_loop(
            lambda symbols, changed: changed,
            body,
            (symbols, tf.size(symbols.flat_values) > 0),  # nothing to merge in no text
            shape_invariants=(
                tf.RaggedTensorSpec([None, None], tf.string, ragged_rank=1, row_splits_dtype=symbols.row_splits.dtype),
                tf.TensorShape([]),
            ),
        )
        return symbols.with_flat_values(self._token_table.lookup(symbols.flat_values))

    def _tokenize(self, texts):
        words = self._pretokenize(texts)  # [B, None]
        ids = self._bpe(words.flat_values)  # [W, None]
        return words.with_flat_values(ids).merge_dims(1, 2)

    def detokenize(self, ids):
        """The UTF-8 text of the ids (a string, or `[batch]` strings).

        Args:
            ids: int ids in `[0, vocabulary_size)`, `[length]` or `[batch,
                None]`, dense or ragged. Ids outside it are an error that
                lists them.
        """
        return super().detokenize(ids)

    def _detokenize(self, ids):
        return tf.strings.reduce_join(tf.gather(self._id_bytes, ids), axis=-1)

    def id_to_token(self, token_id):
        """The token string of an id (in GPT-2's byte symbols)."""
        if token_id not in self._id_to_token:
            raise ValueError(
                f"`token_id` is not an id of the vocabulary. Received: token_id={token_id}"
            )
        return self._id_to_token[token_id]

    def token_to_id(self, token):
        """The id of a token string (in GPT-2's byte symbols, e.g. `"Ġthe"`)."""
        if token not in self.vocabulary:
            raise ValueError(f"Token not in the vocabulary. Received: token={token!r}")
        return self.vocabulary[token]

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary": self.vocabulary, "merges": self.merges})
        return config


def _run_starts(flags):
    """For each True in `flags`, the index where its run of Trues begins."""
    index = tf.range(tf.size(flags))
    previous = tf.concat([[False], flags[:-1]], 0)
    starts = tf.logical_and(flags, tf.logical_not(previous))
    run_number = tf.cumsum(tf.cast(starts, tf.int32))  # 1-based within flagged runs
    start_positions = tf.concat([[0], tf.boolean_mask(index, starts)], 0)
    return tf.gather(start_positions, run_number)
