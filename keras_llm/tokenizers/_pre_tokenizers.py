r"""How byte-level BPE tokenizers split text into words, in RE2 (core TensorFlow's regex engine).

Hugging Face `tokenizers` writes these splits as Oniguruma expressions that end
with one look-ahead, `\s+(?!\S)`: a whitespace run followed by a non-space
gives its last character to the next word. RE2 has no look-ahead, so
`pretokenize` first cuts such a run before its last character (a byte that
never occurs in UTF-8 marks the cut; no RE2 class matches it, so no word
spans it), then lets the rest of the expression, without the look-ahead, mark
where each word starts.

| name | Hugging Face `tokenizer.json` | GGUF `tokenizer.ggml.pre` |
|---|---|---|
| `"gpt2"` | `ByteLevel` (GPT-2, RoBERTa) | `gpt-2` |
| `"llama3"` | `Split` with `LLAMA3_SPLIT`, `ByteLevel` without its regex | `llama-bpe` |
| `"qwen2"` | `Split` with `QWEN2_SPLIT` (single digits), `ByteLevel` | `qwen2` |
| `"smollm"` | `Digits(individual_digits=True)`, `ByteLevel` (SmolLM2) | `smollm` |
"""

import tensorflow as tf

PRE_TOKENIZERS = ("gpt2", "llama3", "qwen2", "smollm")

# The expressions as Hugging Face writes them (tokenizer.json's Split patterns).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")

# Unicode's White_Space property, which Oniguruma's `\s` matches and RE2's
# ASCII `\s` does not; and the same without CR and LF, which Llama 3's
# expression treats apart.
_SPACE = r"\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"
_INLINE_SPACE = _SPACE.replace(r"\n", "").replace(r"\r", "")
_CONTRACTIONS = r"'s|'t|'re|'ve|'m|'ll|'d"


def _llama3_words(digits):
    # LLAMA3_SPLIT in RE2, its `\s+(?!\S)|\s+` ending as one `\s+`.
    return (
        rf"(?i:{_CONTRACTIONS})|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{digits}"
        rf"| ?[^{_SPACE}\p{{L}}\p{{N}}]+[\r\n]*|[{_SPACE}]*[\r\n]+|[{_SPACE}]+"
    )


# Each split without its look-ahead, and the whitespace a look-ahead cut falls in.
_WORDS = {
    "gpt2": rf"{_CONTRACTIONS}| ?\p{{L}}+| ?\p{{N}}+| ?[^{_SPACE}\p{{L}}\p{{N}}]+|[{_SPACE}]+",
    "llama3": _llama3_words("{1,3}"),
    "qwen2": _llama3_words(""),
}
_WORDS["smollm"] = _WORDS["gpt2"]
# Llama 3's `\s*[\r\n]+` takes a whitespace run up to its last line break
# before the look-ahead is tried, so only spaces after the last break are cut.
_CUT_SPACE = {"gpt2": _SPACE, "smollm": _SPACE, "llama3": _INLINE_SPACE, "qwen2": _INLINE_SPACE}

CUT = b"\xff"


def pretokenize(texts, pre_tokenizer):
    r"""`[N]` valid UTF-8 strings -> `[N, None]` words, as the named pre-tokenizer splits them.

    Args:
        texts: A 1-D string tensor of valid UTF-8.
        pre_tokenizer: One of `PRE_TOKENIZERS`.

    Returns:
        A `tf.RaggedTensor` of the words (their UTF-8 text, before GPT-2's
        byte symbols), none empty.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.tokenizers._pre_tokenizers import pretokenize

    words = pretokenize(tf.constant(["It's  12345 ok\n\n  x"]), "llama3")
    assert words.to_list() == [[b"It", b"'s", b" ", b" ", b"123", b"45", b" ok", b"\n\n", b" ", b" x"]]
    ```
    """
    if pre_tokenizer == "smollm":
        # Digits(individual_digits=True) isolates each digit before ByteLevel's
        # expression runs on the pieces: a digit ends the piece before it.
        texts = tf.strings.regex_replace(texts, r"\p{N}", CUT + b"\\0" + CUT)
    space = _CUT_SPACE[pre_tokenizer]
    # `\s+(?!\S)`: a run of two or more spaces followed by a non-space loses
    # its last character to the next word.
    texts = tf.strings.regex_replace(
        texts, rf"([{space}])([{space}][^{_SPACE}])", b"\\1" + CUT + b"\\2"
    )
    texts = tf.strings.regex_replace(texts, _WORDS[pre_tokenizer], CUT + b"\\0")
    words = tf.strings.split(texts, sep=CUT)
    return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
