"""WordPiece text tables: BERT's character classes and vocabulary reading, in plain Python.

`CoreOpsWordPieceTokenizer` builds its lookup tables from these.
"""

import functools
import os
import sys
import unicodedata

# CJK Unified Ideographs blocks that BERT surrounds with spaces (the ranges
# of google-research/bert's `_is_chinese_char`, which Hugging Face copies).
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
# Unicode's White_Space property (what Rust's `char::is_whitespace` tests).
_WHITESPACE = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
    + list(range(0x2000, 0x200B))
)


def _is_punctuation(char):
    """BERT's punctuation: all ASCII punctuation (incl. $+<=>^`|~) and Unicode P*."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_removed(cp):
    """Characters BERT's text cleaning drops: NUL, U+FFFD and categories C*."""
    if cp in (0x09, 0x0A, 0x0D):
        return False
    return cp == 0 or cp == 0xFFFD or unicodedata.category(chr(cp)).startswith("C")


def _ranges(predicate):
    """Sorted [start, end) boundaries of the code points where `predicate` holds."""
    boundaries, inside = [], False
    for cp in range(sys.maxunicode + 1):
        if predicate(cp) != inside:
            boundaries.append(cp)
            inside = not inside
    if inside:
        boundaries.append(sys.maxunicode + 1)
    return boundaries


@functools.lru_cache(maxsize=4)
def _character_tables(lowercase, strip_accents):
    """What BERT's normalizer and pre-tokenizer do to each code point.

    Hugging Face's `BertNormalizer` (clean text, space out CJK, strip accents,
    lowercase) and `BertPreTokenizer` (split on whitespace, isolate
    punctuation) act on each character independently, so together they are a
    function from one code point to a string. Returns the code points removed
    (as range boundaries) and, for the others whose result is not the
    character itself, the code points and their results with spaces marking
    word breaks (as code points: flat, with each result's length).
    """
    removed = _ranges(_is_removed)
    changed_keys, result_values, result_lengths = [], [], []
    for cp in range(sys.maxunicode + 1):
        if _is_removed(cp):
            continue
        char = chr(cp)
        if cp in _WHITESPACE:
            result = " "
        elif any(start <= cp <= end for start, end in _CJK_RANGES):
            result = f" {char} "
        else:
            result = char
            if strip_accents:
                decomposed = unicodedata.normalize("NFD", result)
                result = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
            if lowercase:
                result = result.lower()
            result = "".join(f" {c} " if _is_punctuation(c) else c for c in result)
        if result != char:
            changed_keys.append(cp)
            result_values.extend(ord(c) for c in result)
            result_lengths.append(len(result))
    return removed, changed_keys, result_values, result_lengths


def _read_vocabulary(vocabulary):
    if isinstance(vocabulary, (str, os.PathLike)):
        path = os.fspath(vocabulary)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"WordPiece vocabulary file not found: {path!r}")
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            raise ValueError(
                f"{path}:{line}: the vocabulary file is not valid UTF-8; expected one "
                "WordPiece token per line."
            ) from None
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        tokens = [t.rstrip("\r") for t in tokens]
        source = path
    else:
        tokens, source = list(vocabulary), "vocabulary"
    if not tokens:
        raise ValueError(f"{source}: the vocabulary is empty; expected one token per line.")
    seen = {}
    for line, token in enumerate(tokens, start=1):
        if token == "" or any(c.isspace() for c in token.strip()) or token != token.strip():
            raise ValueError(
                f"{source}:{line}: expected one WordPiece token per line without "
                f"whitespace. Received: {token!r}"
            )
        if token in seen:
            raise ValueError(
                f"{source}:{line}: token {token!r} repeats line {seen[token]}; a "
                "vocabulary lists each token once."
            )
        seen[token] = line
    return tokens
