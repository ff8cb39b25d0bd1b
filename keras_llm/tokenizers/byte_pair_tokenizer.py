"""Byte-level BPE for training pipelines: the core-ops tokenizer plus a word cache."""

import keras
import tensorflow as tf

from keras_llm.tokenizers._pre_tokenizers import CUT as _CUT
from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import CoreOpsBytePairTokenizer

# Cache keys are 63-bit fingerprints of the words; each entry also stores its
# word, so a fingerprint collision is a cache miss, never a wrong answer.
_KEY_SPACE = 2**63 - 1


@keras.saving.register_keras_serializable(package="keras_llm")
class BytePairTokenizer(CoreOpsBytePairTokenizer):
    """GPT-2's byte-level BPE for `tf.data` pipelines, with a word cache.

    The same tokenizer as `CoreOpsBytePairTokenizer`, id for id, and the same
    arguments, with a cache in front of the merge loop: each distinct word is
    merged once per process, later occurrences are a hash-table lookup
    (measured on SST-2's first 40,000 lines in batches of 256: 2x faster on
    the first pass, 3.5x on later epochs; the
    cache holds one entry per distinct word and grows with the corpus's
    vocabulary of words, not its size). The serving variant stays stateless
    on purpose, so a SavedModel's memory cannot grow with traffic.

    Why not tensorflow-text or keras-hub: tensorflow-text has no BPE kernel,
    and keras-hub's `BytePairTokenizer` (tensorflow-text's `regex_split` and a
    similar cache) differs from GPT-2 and Hugging Face on a space before a
    contraction (`" 's"`), which changes the ids of 10% of SST-2's lines.

    Example:

    ```python
    import keras_llm

    symbols = keras_llm.tokenizers.core_ops_byte_pair_tokenizer.bytes_to_unicode()
    vocabulary = {s: i for i, s in enumerate(symbols.values())}
    vocabulary.update({"Ġt": 256, "Ġth": 257, "Ġthe": 258})
    tokenizer = keras_llm.tokenizers.BytePairTokenizer(vocabulary, ["Ġ t", "Ġt h", "Ġth e"])
    assert tokenizer(["the the", "in the"]).to_list() == [
        [vocabulary["t"], vocabulary["h"], vocabulary["e"], 258],
        [vocabulary["i"], vocabulary["n"], 258],
    ]
    ```
    """

    def __init__(self, vocabulary, merges, **kwargs):
        super().__init__(vocabulary, merges, **kwargs)  # the same settings (pre_tokenizer, ...)
        # word fingerprint -> b"word" + _CUT + b"id id id"
        self._cache = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, default_value="")

    def _word_ids(self, words):
        unique, index = tf.unique(words)  # [U], [W]
        keys = tf.strings.to_hash_bucket_fast(unique, _KEY_SPACE)
        entries = tf.reshape(self._cache.lookup(keys), [-1])  # [U]
        # [U, 2]: the stored word and its ids ("" and "" when absent).
        parts = tf.strings.split(entries, sep=_CUT, maxsplit=1).to_tensor("", shape=[None, 2])
        hit = tf.logical_and(tf.equal(parts[:, 0], unique), tf.strings.length(entries) > 0)
        cached = parts[:, 1]
        # Merge the words not seen before and remember them.
        miss = tf.logical_not(hit)
        new_words = tf.boolean_mask(unique, miss)
        new_ids = tf.strings.reduce_join(
            tf.strings.as_string(super()._word_ids(new_words)), axis=1, separator=" "
        )
        insert = self._cache.insert(tf.boolean_mask(keys, miss), new_words + _CUT + new_ids)
        with tf.control_dependencies([insert]):
            id_text = tf.tensor_scatter_nd_update(cached, tf.where(miss), new_ids)  # [U]
        parts = tf.strings.split(id_text, sep=" ")  # a word of dropped bytes has no ids: [""]
        ids = tf.strings.to_number(tf.ragged.boolean_mask(parts, tf.strings.length(parts) > 0), tf.int32)
        return tf.gather(ids, index)
