"""Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2) written with core TensorFlow ops only."""

import json
import os

import keras
import tensorflow as tf

from keras_llm.tokenizers._normalization import NFC, NORMALIZATIONS
from keras_llm.tokenizers._pre_tokenizers import PRE_TOKENIZERS, pretokenize
from keras_llm.tokenizers.string_tokenizer import StringTokenizer

_END_TOKEN = "<|endoftext|>"
_MOST_MISSING = 64  # byte symbols a vocabulary may lack (bytes never seen in training)
# Another byte that never occurs in valid UTF-8: it brackets added tokens found in the text.
_MARK = b"\xfe"


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
    """Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2) in ops that every TensorFlow build has.

    Gives the ids of Hugging Face `tokenizers` (and `transformers`' fast
    tokenizers with `add_special_tokens=False`) for the byte-level BPE
    pipelines of GPT-2, Llama 3, Qwen2 and SmolLM2: the added tokens
    (`<|im_start|>`, `<|eot_id|>`, ...) are found whole in the text first,
    longest first, as Hugging Face finds them; the text between them is
    normalized (Qwen2: NFC) and split into words by the pre-tokenizer's
    expression (`pre_tokenizer`: GPT-2's contractions, letter, digit and
    other runs with at most one leading space; Llama 3's and Qwen2's, which
    keep line breaks apart and cut digit runs into threes or ones; SmolLM2's,
    each digit alone); each word's UTF-8 bytes become GPT-2's byte symbols,
    and the merges are applied lowest rank first, all non-overlapping
    occurrences of a pair at once, as GPT-2's `bpe()` does. With
    `ignore_merges` (Llama 3), a word that is itself a token is that token.

    Only ops registered by TensorFlow itself are used (`tf.strings` with
    RE2, `tf.lookup.StaticHashTable`, `tf.while_loop`), so a SavedModel
    holding it loads in any TF Serving binary. Bytes that are not valid
    UTF-8 are replaced by U+FFFD first. The end token (`end_token_id`) is
    `eos_token`'s, else `<|endoftext|>`'s when the vocabulary has it; a
    tokenizer without added tokens (GPT-2's `vocab.json` and `merges.txt`)
    splits `<|endoftext|>` written in text as text, so pipelines append it
    by id. The chat template and the begin/end tokens a checkpoint declares
    travel with the tokenizer (`get_config`, `.keras`, `save_pretrained`);
    `add_bos_token` records whether Hugging Face puts `bos_token` first
    when it adds special tokens: this tokenizer never adds any, and the
    `Generator` and the exports put `added_bos_token_id` before a GPT's
    prompt, as `transformers` does.

    Args:
        vocabulary: A path to `vocab.json` or a dict from token to id (the
            ids 0 to N - 1, added tokens included).
        merges: A path to `merges.txt` or a list of `"a b"` strings, highest
            priority first.
        pre_tokenizer: How text is split into words: `"gpt2"` (default),
            `"llama3"`, `"qwen2"` or `"smollm"`.
        normalization: None, or `"NFC"` (Qwen2's normalizer).
        ignore_merges: Whether a word that is in the vocabulary is taken
            whole before merging (Llama 3's `ignore_merges`).
        added_tokens: Tokens of the vocabulary found whole in the text
            before it is split: a list (all special), or a dict from each to
            whether Hugging Face marks it special.
        chat_template: The checkpoint's Jinja chat template, or None.
        bos_token: The begin-of-text token (a token of the vocabulary), or None.
        eos_token: The end-of-text token, or None.
        add_bos_token: Whether Hugging Face adds `bos_token` first.
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
    vocabulary.update({"Ġt": 256, "Ġth": 257, "Ġthe": 258, "<|im_end|>": 259})
    merges = ["Ġ t", "Ġt h", "Ġth e"]
    tokenizer = keras_llm.tokenizers.CoreOpsBytePairTokenizer(vocabulary, merges)
    ids = tokenizer("in the")
    assert ids.numpy().tolist() == [vocabulary["i"], vocabulary["n"], 258]
    assert tokenizer.detokenize(ids).numpy() == b"in the"

    chat = keras_llm.tokenizers.CoreOpsBytePairTokenizer(
        vocabulary, merges, pre_tokenizer="llama3", added_tokens=["<|im_end|>"],
        eos_token="<|im_end|>")
    assert chat("in the<|im_end|>").numpy().tolist() == [vocabulary["i"], vocabulary["n"], 258, 259]
    assert chat.end_token_id == 259
    ```
    """

    def __init__(self, vocabulary, merges, *, pre_tokenizer="gpt2", normalization=None,
                 ignore_merges=False, added_tokens=None, chat_template=None, bos_token=None,
                 eos_token=None, add_bos_token=False, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary, self.merges = _load_files(vocabulary, merges)
        byte_symbols = bytes_to_unicode()
        missing = [s for s in byte_symbols.values() if s not in self.vocabulary]
        if len(missing) > _MOST_MISSING:
            raise ValueError(
                f"The vocabulary lacks {len(missing)} of GPT-2's 256 byte symbols "
                f"(first: {missing[0]!r}); a byte-level BPE vocabulary holds them all, or all "
                f"but a few (at most {_MOST_MISSING}) bytes it never saw."
            )
        # A byte whose symbol is missing is dropped, as Hugging Face drops it
        # (byte-level BPEs have no unknown token; SmolLM2 lacks 21 bytes).
        self._drops_bytes = bool(missing)
        _check_choice("pre_tokenizer", pre_tokenizer, PRE_TOKENIZERS)
        _check_choice("normalization", normalization, NORMALIZATIONS)
        for name, value in (("ignore_merges", ignore_merges), ("add_bos_token", add_bos_token)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")
        if chat_template is not None and not isinstance(chat_template, str):
            raise ValueError(
                f"`chat_template` must be a Jinja string or None. Received: chat_template={chat_template!r}"
            )
        self.pre_tokenizer, self.normalization = pre_tokenizer, normalization
        self.ignore_merges, self.chat_template = ignore_merges, chat_template
        self.added_tokens = self._added(added_tokens)
        self.bos_token, self.eos_token = self._token("bos_token", bos_token), self._token("eos_token", eos_token)
        if add_bos_token and bos_token is None:
            raise ValueError("`add_bos_token=True` needs a `bos_token`. Received: bos_token=None")
        self.add_bos_token = add_bos_token
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
        # id -> the bytes it stands for, for detokenize; an added token stands for its own text.
        symbol_to_byte = {s: bytes([b]) for b, s in byte_symbols.items()}
        id_bytes = [b""] * self.vocabulary_size
        for token, token_id in self.vocabulary.items():
            id_bytes[token_id] = token.encode() if token in self.added_tokens else b"".join(
                symbol_to_byte.get(c, c.encode()) for c in token)
        self._id_bytes = tf.constant(id_bytes)
        self._id_to_token = {i: t for t, i in self.vocabulary.items()}
        # Longest first: where two added tokens start at the same place, the longer wins.
        self._added_pattern = "|".join(
            _re2_literal(t) for t in sorted(self.added_tokens, key=len, reverse=True))
        self._nfc = NFC() if normalization == "NFC" else None
        specials = [t for t, special in self.added_tokens.items() if special]
        specials += [t for t in (_END_TOKEN, self.bos_token, self.eos_token) if t in self.vocabulary]
        self.special_tokens = {t: self.vocabulary[t] for t in specials}
        self.bos_token_id = self.vocabulary.get(self.bos_token)
        self.eos_token_id = self.vocabulary.get(self.eos_token)
        self.end_token_id = self.vocabulary.get(self.eos_token or _END_TOKEN)
        self.built = True

    @property
    def added_bos_token_id(self):
        """The id Hugging Face puts before a text's ids (`bos_token_id` where
        `add_bos_token`, else None): what a prompt starts with."""
        return self.bos_token_id if self.add_bos_token else None

    def _added(self, added_tokens):
        if added_tokens is None:
            return {}
        if isinstance(added_tokens, (list, tuple)):
            added_tokens = {t: True for t in added_tokens}
        if not isinstance(added_tokens, dict) or not all(
            isinstance(t, str) and t and isinstance(s, bool) for t, s in added_tokens.items()
        ):
            raise ValueError(
                "`added_tokens` must be a list of token strings or a dict from each to whether "
                f"it is special. Received: added_tokens={added_tokens!r}"
            )
        outside = [t for t in added_tokens if t not in self.vocabulary]
        if outside:
            raise ValueError(
                f"`added_tokens` must be tokens of the vocabulary. Received: {outside[0]!r}, "
                "which it lacks"
            )
        return dict(added_tokens)

    def _token(self, name, token):
        if token is not None and (not isinstance(token, str) or token not in self.vocabulary):
            raise ValueError(f"`{name}` must be a token of the vocabulary or None. Received: {name}={token!r}")
        return token

    def _words(self, texts):
        """[B] valid UTF-8 strings without added tokens -> [B, None] words."""
        if self._nfc is not None:
            texts = self._nfc(texts)
        return pretokenize(texts, self.pre_tokenizer)

    def _symbols(self, words):
        """[W] words -> [W, None] GPT-2 byte symbols."""
        byte_strings = tf.strings.bytes_split(words)
        byte_values = tf.cast(
            tf.reshape(tf.io.decode_raw(byte_strings.flat_values, tf.uint8), [-1]), tf.int32
        )
        return byte_strings.with_flat_values(tf.gather(self._byte_symbols, byte_values))

    def _word_ids(self, words):
        """[W] words -> [W, None] ids (what the word cache of `BytePairTokenizer` replaces)."""
        symbols = self._symbols(words)
        if not self.ignore_merges:
            return self._merge(symbols)
        whole = self._token_table.lookup(tf.strings.reduce_join(symbols, axis=1))  # [W]
        found = whole >= 0
        # Words found whole, then the merged rest; `place` puts each word back in order.
        ids = tf.concat([
            tf.RaggedTensor.from_row_lengths(
                tf.boolean_mask(whole, found), tf.ones_like(tf.boolean_mask(whole, found), tf.int64),
                validate=False),
            self._merge(tf.ragged.boolean_mask(symbols, ~found)),
        ], axis=0)
        count = tf.reduce_sum(tf.cast(found, tf.int32))
        place = tf.where(found, tf.cumsum(tf.cast(found, tf.int32)) - 1,
                         count + tf.cumsum(tf.cast(~found, tf.int32)) - 1)
        return tf.gather(ids, place)

    def _merge(self, symbols):
        """[W, None] byte symbols -> [W, None] ids, merging lowest rank first."""

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
                    tf.boolean_mask(merged, keep), new_rows, nrows=symbols.nrows(), validate=False
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
        ids = symbols.with_flat_values(self._token_table.lookup(symbols.flat_values))
        return tf.ragged.boolean_mask(ids, ids >= 0) if self._drops_bytes else ids

    # Graph ops and tf.while_loop only: autograph has nothing to convert, and
    # converting (in every tf.function that calls the tokenizer) took a
    # quarter of the tracing time.
    @tf.autograph.experimental.do_not_convert
    def _tokenize(self, texts):
        texts = tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        if not self.added_tokens:
            words = self._words(texts)  # [B, None]
            return words.with_flat_values(self._word_ids(words.flat_values)).merge_dims(1, 2)
        # [B, P] pieces: text, added token, text, ..., text (the odd ones are tokens).
        pieces = tf.strings.split(
            tf.strings.regex_replace(texts, self._added_pattern, _MARK + b"\\0" + _MARK), sep=_MARK)
        flat = pieces.flat_values  # [P]
        added = tf.math.floormod(tf.ragged.range(pieces.row_lengths()).flat_values, 2) == 1
        words = self._words(tf.where(added, "", flat))  # [P, None]; none in added tokens' rows
        text_ids = words.with_flat_values(self._word_ids(words.flat_values)).merge_dims(1, 2)
        token_ids = tf.RaggedTensor.from_row_lengths(
            tf.boolean_mask(self._token_table.lookup(flat), added), tf.cast(added, tf.int64),
            validate=False)
        return pieces.with_flat_values(tf.concat([text_ids, token_ids], axis=1)).merge_dims(1, 2)

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
        config.update({
            "vocabulary": self.vocabulary, "merges": self.merges,
            "pre_tokenizer": self.pre_tokenizer, "normalization": self.normalization,
            "ignore_merges": self.ignore_merges, "added_tokens": self.added_tokens,
            "chat_template": self.chat_template, "bos_token": self.bos_token,
            "eos_token": self.eos_token, "add_bos_token": self.add_bos_token,
        })
        return config


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, choices))}. Received: {name}={value!r}"
        )


def _re2_literal(text):
    """`text` as an RE2 expression that matches it literally."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}" for c in text)


def _run_starts(flags):
    """For each True in `flags`, the index where its run of Trues begins."""
    index = tf.range(tf.size(flags))
    previous = tf.concat([[False], flags[:-1]], 0)
    starts = tf.logical_and(flags, tf.logical_not(previous))
    run_number = tf.cumsum(tf.cast(starts, tf.int32))  # 1-based within flagged runs
    start_positions = tf.concat([[0], tf.boolean_mask(index, starts)], 0)
    return tf.gather(start_positions, run_number)
