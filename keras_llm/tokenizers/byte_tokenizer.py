"""Byte-level tokenizer: one id per UTF-8 byte, plus two special tokens."""

import keras
import numpy as np
import tensorflow as tf

from keras_llm.tokenizers.string_tokenizer import StringTokenizer


@keras.saving.register_keras_serializable(package="keras_llm")
class ByteTokenizer(StringTokenizer):
    """Maps text to its UTF-8 bytes (ids 0-255) and back.

    Needs no vocabulary file and can encode any string, so it is what the
    default `keras-llm train` job uses. Two special ids follow the bytes:

    | id | token | use |
    |---|---|---|
    | 0-255 | the byte itself | text |
    | 256 | `<|endoftext|>` | separates documents |
    | 257 | `<pad>` | padding |

    It uses only ops registered by TensorFlow itself (`tf.strings`,
    `tf.io.decode_raw`, `tf.gather`), so it runs inside `tf.data` and in a
    SavedModel with no extra op libraries.

    Call arguments:
        inputs: A string, or a 1-D batch of strings (list or tensor).

    Returns:
        int32 ids: 1-D for a scalar string, a `tf.RaggedTensor` `[batch,
        None]` for a batch.

    Example:

    ```python
    import keras_llm

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    ids = tokenizer(["hé!", ""])
    assert ids.to_list() == [[104, 195, 169, 33], []]
    assert tokenizer.detokenize(ids).numpy().tolist() == ["hé!".encode(), b""]
    ```
    """

    vocabulary_size = 258
    end_token_id = 256
    pad_token_id = 257
    special_tokens = {"<|endoftext|>": 256, "<pad>": 257}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._byte_strings = tf.constant([bytes([b]) for b in range(256)])
        self.built = True

    def _tokenize(self, texts):
        pieces = tf.strings.bytes_split(texts)  # [B, None], one 1-byte string per byte
        ids = tf.io.decode_raw(pieces.flat_values, tf.uint8)
        return pieces.with_flat_values(tf.cast(tf.reshape(ids, [-1]), tf.int32))

    def detokenize(self, ids):
        """Joins byte ids back into UTF-8 strings, dropping the special ids.

        Args:
            ids: int ids in `[0, 258)`, `[..., length]`, dense or ragged. Ids
                outside it are an error that lists them.

        Returns:
            A string tensor with the last dimension joined. Byte sequences
            that are not valid UTF-8 are returned as they are.
        """
        return super().detokenize(ids)

    def _detokenize(self, ids):
        if isinstance(ids, tf.Tensor) and ids.shape.rank > 1:
            ids = tf.RaggedTensor.from_tensor(ids)
        if isinstance(ids, tf.RaggedTensor):
            kept = tf.ragged.boolean_mask(ids, ids < 256)
            return tf.strings.reduce_join(
                kept.with_flat_values(tf.gather(self._byte_strings, kept.flat_values)),
                axis=-1,
            )
        kept = tf.boolean_mask(ids, ids < 256)
        return tf.strings.reduce_join(tf.gather(self._byte_strings, kept), axis=-1)

    def id_to_token(self, token_id):
        """The token of an id: a 1-byte `bytes` object or a special token."""
        if not 0 <= token_id < self.vocabulary_size:
            raise ValueError(
                f"`token_id` must be in [0, {self.vocabulary_size}). "
                f"Received: token_id={token_id}"
            )
        if token_id < 256:
            return bytes([token_id])
        return {v: k for k, v in self.special_tokens.items()}[token_id]

    def token_to_id(self, token):
        """The id of a 1-byte `bytes` token or a special token's name."""
        if isinstance(token, bytes) and len(token) == 1:
            return token[0]
        if token in self.special_tokens:
            return self.special_tokens[token]
        raise ValueError(
            "`token` must be a single byte or one of "
            f"{sorted(self.special_tokens)}. Received: token={token!r}"
        )

    def encode_numpy(self, text):
        """Encodes one Python string to a NumPy int32 array, without TensorFlow."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
