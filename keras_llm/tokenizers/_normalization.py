"""Unicode NFC (Qwen2's normalizer) in core TensorFlow ops.

TensorFlow's own ops have no Unicode normalization (tensorflow-text's
`normalize_utf8` is a custom op TF Serving lacks), so NFC is computed from
Python's `unicodedata` tables, laid out as lookup tables, in three steps, as
Unicode Standard Annex #15 defines it:

1. canonical decomposition: each code point becomes its full canonical
   decomposition (at most four code points; Hangul syllables included);
2. canonical ordering: each run of non-starters is sorted by combining class,
   stably (one `argsort` on (run, class));
3. canonical composition: each character that can be the second of a
   composition pair (the rare ones: combining marks, some vowel signs,
   Hangul vowels and trailing consonants) is combined with the last starter
   when nothing between blocks it. Characters that can start no pair end a
   segment, so the composition loop runs once per such character in the
   longest segment (a handful of times), over all segments at once.
"""

import functools
import unicodedata

import numpy as np
import tensorflow as tf

NORMALIZATIONS = (None, "NFC")
# Code points with a decomposition or a combining class all lie below U+30000.
_LAST = 0x30000
_KEY = 1 << 21  # composition pairs are looked up as first * _KEY + second


@functools.lru_cache(maxsize=None)
def _tables():
    """(decomposed: {cp: tuple}, classes: {cp: class}, pairs: {(a, b): composite}), from unicodedata."""
    decomposed, classes, pairs = {}, {}, {}
    for cp in range(_LAST):
        if 0xD800 <= cp < 0xE000:
            continue
        char = chr(cp)
        if unicodedata.combining(char):
            classes[cp] = unicodedata.combining(char)
        mapping = unicodedata.decomposition(char)
        if not mapping or mapping.startswith("<"):  # none, or only a compatibility one
            continue
        decomposed[cp] = tuple(ord(c) for c in unicodedata.normalize("NFD", char))
        parts = [int(part, 16) for part in mapping.split()]
        # A primary composite: NFC recomposes it (the exclusions do not come back).
        if len(parts) == 2 and unicodedata.normalize("NFC", unicodedata.normalize("NFD", char)) == char:
            pairs[tuple(parts)] = cp
    # Hangul syllables, which unicodedata decomposes by arithmetic: L V and LV T.
    for cp in range(0xAC00, 0xD7A4):
        decomposed[cp] = tuple(ord(c) for c in unicodedata.normalize("NFD", chr(cp)))
        t = (cp - 0xAC00) % 28
        pairs[(cp - t, 0x11A7 + t) if t else decomposed[cp]] = cp
    return decomposed, classes, pairs


def _table(keys, values, key_dtype, default):
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, key_dtype), tf.constant(values, tf.int32)),
        default_value=default,
    )


class NFC(tf.Module):
    """Unicode NFC of `[N]` UTF-8 strings, in core TensorFlow ops; build once, call in graphs.

    A `tf.Module`, so that a SavedModel holding it (through a tokenizer) keeps its tables.

    Example:

    ```python
    import unicodedata
    import tensorflow as tf
    from keras_llm.tokenizers._normalization import NFC

    texts = ["e\\u0301 \\u212b \\u1100\\u1161\\u11a8 a\\u0323\\u0302", "plain"]
    assert [t.decode() for t in NFC()(tf.constant(texts)).numpy()] == [
        unicodedata.normalize("NFC", t) for t in texts
    ]
    ```
    """

    def __init__(self):
        super().__init__(name="nfc")
        decomposed, classes, pairs = _tables()
        width = max(len(d) for d in decomposed.values())
        rows = np.full((len(decomposed), width), -1, np.int32)
        for row, parts in enumerate(decomposed.values()):
            rows[row, : len(parts)] = parts
        self._decomposition_row = _table(list(decomposed), list(range(len(decomposed))), tf.int32, -1)
        self._decompositions = tf.constant(rows)
        self._class = _table(list(classes), list(classes.values()), tf.int32, 0)
        seconds = sorted({b for _, b in pairs})
        self._is_second = _table(seconds, [1] * len(seconds), tf.int32, 0)
        self._composite = _table(
            [a * _KEY + b for a, b in pairs], list(pairs.values()), tf.int64, -1
        )

    def __call__(self, texts):
        """`[N]` valid UTF-8 strings -> their NFC, `[N]` strings."""
        chars = tf.strings.unicode_decode(texts, "UTF-8")  # [N, None] code points
        chars = self._decompose(chars)
        chars = self._order(chars)
        return tf.strings.unicode_encode(self._compose(chars), "UTF-8")

    def _decompose(self, chars):
        flat = chars.flat_values  # [C]
        row = self._decomposition_row.lookup(flat)
        parts = tf.gather(self._decompositions, tf.maximum(row, 0))  # [C, width]
        alone = tf.pad(flat[:, None], [[0, 0], [0, tf.shape(parts)[1] - 1]], constant_values=-1)
        parts = tf.where(row[:, None] >= 0, parts, alone)
        kept = parts >= 0
        rows = tf.broadcast_to(chars.value_rowids()[:, None], tf.shape(parts, out_type=tf.int64))
        return tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(parts, kept), tf.boolean_mask(rows, kept), nrows=chars.nrows(),
            validate=False)

    def _order(self, chars):
        flat = chars.flat_values
        classes = self._class.lookup(flat)
        # A run is a starter (or a row's start) and the non-starters after it;
        # sorting by (run, class) keeps runs in place and orders each one.
        run = tf.cumsum(tf.cast(tf.logical_or(classes == 0, _row_starts(chars)), tf.int64))
        order = tf.argsort(run * 256 + tf.cast(classes, tf.int64), stable=True)
        return chars.with_flat_values(tf.gather(flat, order))

    def _compose(self, chars):
        values = chars.flat_values  # [C] code points, canonically ordered
        classes = self._class.lookup(values)
        second = self._is_second.lookup(values) > 0
        # Segments start at each row's start and at each starter that can be
        # no pair's second: nothing composes across one.
        segment_start = tf.logical_or(_row_starts(chars), tf.logical_and(classes == 0, ~second))
        segment = tf.cumsum(tf.cast(segment_start, tf.int32)) - 1  # [C]
        seconds = tf.cast(tf.where(second)[:, 0], tf.int32)  # [K] positions of the candidates
        # The highest class among the other characters between a candidate and
        # the one before it in its segment (or the segment's start): a gap id
        # grows at each candidate and at each segment start.
        gap = tf.cumsum(tf.cast(second, tf.int32)) + segment
        gaps = tf.maximum(tf.math.unsorted_segment_max(
            tf.where(second, 0, classes), gap, _top(gap, 0) + 1), 0)
        gap_class = tf.gather(gaps, tf.gather(gap, seconds) - 1)  # [K]
        # [U, R]: the candidates of each segment that has some, in order.
        segments, which = tf.unique(tf.gather(segment, seconds))
        rank = tf.range(tf.size(seconds)) - tf.gather(
            tf.math.segment_min(tf.range(tf.size(seconds)), which), which)
        table = tf.scatter_nd(tf.stack([which, rank], 1), tf.range(tf.size(seconds)) + 1,
                              tf.stack([tf.size(segments), _top(rank, -1) + 1]))
        table = table - 1  # -1: no candidate
        starts = tf.gather(tf.cast(tf.where(segment_start)[:, 0], tf.int32), segments)  # [U]
        has_starter = tf.gather(classes, starts) == 0
        has_starter = tf.logical_and(has_starter, ~tf.gather(second, starts))

        def body(step, values, removed, starter, has_starter, highest):
            # highest: the top class of the uncombined characters after the starter.
            candidate = table[:, step]  # [U]
            active = candidate >= 0
            at = tf.gather(seconds, tf.maximum(candidate, 0))
            value, cls = tf.gather(values, at), tf.gather(classes, at)
            between = tf.maximum(highest, tf.gather(gap_class, tf.maximum(candidate, 0)))
            free = tf.where(cls == 0, between == 0, between < cls)
            key = tf.cast(tf.gather(values, starter), tf.int64) * _KEY + tf.cast(value, tf.int64)
            composite = self._composite.lookup(key)
            combine = active & has_starter & free & (composite >= 0)
            values = tf.tensor_scatter_nd_update(
                values, tf.boolean_mask(starter, combine)[:, None], tf.boolean_mask(composite, combine))
            removed = tf.tensor_scatter_nd_update(
                removed, tf.boolean_mask(at, combine)[:, None], tf.ones_like(tf.boolean_mask(at, combine), tf.bool))
            new_starter = active & ~combine & (cls == 0)
            starter = tf.where(new_starter, at, starter)
            has_starter = has_starter | new_starter
            highest = tf.where(combine, between, tf.where(
                new_starter, 0, tf.where(active, tf.maximum(between, cls), highest)))
            return step + 1, values, removed, starter, has_starter, highest

        _, values, removed, _, _, _ = tf.while_loop(
            lambda step, *_: step < tf.shape(table)[1],
            body,
            (tf.constant(0), values, tf.zeros_like(values, tf.bool), starts, has_starter,
             tf.zeros_like(starts)),
        )
        kept = ~removed
        return tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(values, kept), tf.boolean_mask(chars.value_rowids(), kept),
            nrows=chars.nrows(), validate=False)


def _row_starts(chars):
    """[C] bools: whether each value starts its row."""
    starts = tf.boolean_mask(chars.row_starts(), chars.row_lengths() > 0)
    return tf.scatter_nd(
        starts[:, None], tf.ones_like(starts, tf.int32), tf.shape(chars.flat_values, out_type=tf.int64)
    ) > 0


def _top(values, floor):
    """The largest of `values` and `floor` (`floor` when `values` is empty)."""
    return tf.reduce_max(tf.concat([[floor], values], 0))
