"""Token embedding plus learned position embedding, reversible for LM heads."""

import keras
import tensorflow as tf
from keras import ops
from keras.quantizers import QuantizationConfig

from keras_llm._graph_checks import check_length, check_token_ids
from keras_llm.layers._dtype_policy import dtype_policy_config
from keras_llm.layers.position_embedding import PositionEmbedding


@keras.saving.register_keras_serializable(package="keras_llm")
class ReversibleEmbedding(keras.layers.ReversibleEmbedding):
    """Keras's `ReversibleEmbedding`, whose tied reverse projection reads the table as stored.

    Keras computes `inputs @ transpose(table)`; under XLA on a CPU that
    transpose was copied (the whole `[vocabulary, width]` table) at every
    decoding step. `tf.matmul(..., transpose_b=True)` gives XLA a dot that
    contracts the table's rows in place. The same numbers; the quantized
    and untied paths stay Keras's.

    Ids are checked before the lookup (`keras_llm._graph_checks.check_token_ids`):
    an id outside `[0, input_dim)` or a float id is an error naming
    `token_ids`, where Keras's gather would fail on a CPU, return zeros on a
    GPU or clamp under XLA. Under XLA the check is left to the model's
    step (`CheckedSteps`).

    It quantizes (`keras_llm.quantize`, `layer.quantize("int8")`) as Keras's
    layer does: the table becomes int8 (or int4) rows with a scale per
    token, and the tied reverse projection multiplies int8 hidden states
    (scaled per position) by the int8 table, with the table read as stored
    there too.

    Example:

    ```python
    import numpy as np
    from keras_llm.layers.token_and_position_embedding import ReversibleEmbedding

    layer = ReversibleEmbedding(10, 4)
    hidden = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    logits = np.asarray(layer(hidden, reverse=True))  # [2, 3, 10]
    table = np.asarray(layer.embeddings, "float64")
    np.testing.assert_allclose(logits, hidden @ table.T, rtol=1e-5, atol=1e-6)
    ```
    """

    def quantize(self, mode=None, type_check=True, config=None):
        # Keras's `quantize` refuses subclasses (`type(self) is not
        # ReversibleEmbedding`: their `call` may compute something its
        # quantized calls do not). This one's `call` is Keras's but for the
        # tied reverse projection, which `quantized_call` computes as
        # Keras's `_int8_call` does (the same formula, without the transpose).
        super().quantize(mode, type_check=False, config=config)

    def _int4_build(self, embeddings_shape, config=None):
        super()._int4_build(embeddings_shape, config)
        # int4 is weight-only: `quantize("int4")` leaves the reverse
        # projection's inputs float (its config has no activation
        # quantizer), but Keras 3.15's `_int4_build` defaults to an int8
        # activation quantizer when it has no config, which is how a `.keras`
        # file rebuilds the layer: the loaded model's logits differed. Dense's
        # `_int4_build` defaults to None, as here; this can go once Keras's
        # ReversibleEmbedding does the same.
        self.inputs_quantizer = QuantizationConfig.activation_quantizer_or_default(config, None)

    def quantized_call(self, inputs, reverse=False):
        # A quantized layer's `__call__` runs this instead of `call`.
        if not reverse:
            inputs = check_token_ids(inputs, self.input_dim, "token_ids")
        elif self.tie_weights and self.logit_soft_cap is None and self.quantization_mode == "int8":
            return self._int8_tied_logits(inputs)
        return super().quantized_call(inputs, reverse=reverse)

    def _int8_tied_logits(self, inputs):
        """Keras's int8 tied projection, `(q(x) @ q(E)^T) / (s_x * s_E)`, reading `E` as stored.

        Weights-only int8 (no activation quantizer: `keras_llm.quantize(...,
        weights_only=True)`) multiplies the float inputs by the int8 table
        cast to float, `(x @ q(E)^T) / s_E`, as Keras's untied path does.
        """
        if self.inputs_quantizer is None:
            shape = tf.shape(inputs)
            flat = tf.reshape(inputs, [-1, shape[-1]])  # [N, D]
            table = ops.cast(self._embeddings, self.compute_dtype)
            logits = tf.matmul(flat, table, transpose_b=True)
            logits = tf.reshape(logits, tf.concat([shape[:-1], [self.input_dim]], 0))  # [..., V]
            return ops.divide(logits, self.embeddings_scale)
        # inputs = [..., D]; quantized per position: q(x) int8, s_x [..., 1]
        quantized, inputs_scale = self.inputs_quantizer(inputs)
        shape = tf.shape(quantized)
        flat = tf.reshape(quantized, [-1, shape[-1]])  # [N, D]
        # int8 x int8 -> int32: TensorFlow's integer matmul (as `ops.matmul` does).
        logits = tf.matmul(flat, self._embeddings, transpose_b=True, output_type=tf.int32)
        logits = tf.reshape(logits, tf.concat([shape[:-1], [self.input_dim]], 0))  # [..., V]
        logits = ops.cast(logits, self.compute_dtype)
        return ops.divide(logits, ops.multiply(inputs_scale, self.embeddings_scale))

    def call(self, inputs, reverse=False):
        if not reverse:
            inputs = check_token_ids(inputs, self.input_dim, "token_ids")
        if not (reverse and self.tie_weights and self.logit_soft_cap is None):
            return super().call(inputs, reverse=reverse)
        table = self.embeddings
        # Keras's dtypes: `reverse_dtype`, else `ops.matmul`'s promotion of the two.
        dtype = self.reverse_dtype or keras.backend.result_type(inputs.dtype, table.dtype)
        inputs = ops.cast(inputs, dtype)
        table = ops.cast(table, dtype)
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, [-1, shape[-1]])
        logits = tf.matmul(flat, table, transpose_b=True)
        return tf.reshape(logits, tf.concat([shape[:-1], tf.shape(table)[:1]], 0))


@keras.saving.register_keras_serializable(package="keras_llm")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Embeds token ids and adds learned position embeddings.

    Called with `reverse=True` on hidden states it projects them back to the
    vocabulary with the transposed token table (the tied input/output
    embedding of GPT-2 and BERT, Press and Wolf 2016), plus an optional
    per-token output bias (BERT's masked-LM head has one, GPT-2 has none).
    Calling the same layer forwards at the bottom of a model and in reverse
    at the top is how the builders tie the weights; the functional model
    records one shared layer, so the tie survives saving and loading.

    The token table is Keras's own `keras.layers.ReversibleEmbedding` (with
    a reverse projection that XLA does not copy the table for); the reverse
    projection is computed in the layer's compute dtype.

    Args:
        vocabulary_size: Number of token ids.
        max_sequence_length: Number of positions.
        hidden_dim: Width of the embeddings.
        use_output_bias: Whether the reverse projection adds a learned bias
            of shape `(vocabulary_size,)`.
        embeddings_initializer: Initializer of both tables. Defaults to a
            truncated normal with standard deviation 0.02.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: int token ids `(batch_size, sequence_length)`, or with
            `reverse=True` float hidden states `(..., hidden_dim)`. Ids
            outside `[0, vocabulary_size)`, float ids and more tokens than
            `max_sequence_length` (from `start_index`) are errors naming
            `token_ids` (`ValueError`/`TypeError` eagerly, an
            `InvalidArgumentError` in a graph; see `keras_llm._graph_checks`).
        start_index: The position of the first token, for cached decoding.
        reverse: Whether to project hidden states to vocabulary logits.

    Returns:
        `(batch_size, sequence_length, hidden_dim)` embeddings, or with
        `reverse=True`, `(..., vocabulary_size)` logits.

    Example:

    ```python
    import numpy as np
    import keras_llm

    layer = keras_llm.layers.TokenAndPositionEmbedding(
        vocabulary_size=10, max_sequence_length=8, hidden_dim=4
    )
    hidden = layer(np.array([[1, 2, 3]]))
    logits = layer(hidden, reverse=True)
    assert logits.shape == (1, 3, 10)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        max_sequence_length,
        hidden_dim,
        use_output_bias=False,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("vocabulary_size", vocabulary_size),
            ("max_sequence_length", max_sequence_length),
            ("hidden_dim", hidden_dim),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"`{name}` must be a positive int. Received: {name}={value}"
                )
        self.vocabulary_size = vocabulary_size
        self.max_sequence_length = max_sequence_length
        self.hidden_dim = hidden_dim
        self.use_output_bias = use_output_bias
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
            or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.token_embedding = ReversibleEmbedding(
            vocabulary_size,
            hidden_dim,
            embeddings_initializer=self._clone_initializer(),
            # Embedding layers do not autocast their table: without this the
            # projection to the vocabulary (the widest matmul) would run in
            # float32 under mixed precision.
            reverse_dtype=self.dtype_policy.compute_dtype,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            max_sequence_length,
            initializer=self._clone_initializer(),
            dtype=self.dtype_policy,
            name="position_embedding",
        )

    def _clone_initializer(self):
        return self.embeddings_initializer.__class__.from_config(
            self.embeddings_initializer.get_config()
        )

    def build(self, input_shape=None):
        self.token_embedding.build()
        self.position_embedding.build((None, None, self.hidden_dim))
        if self.use_output_bias:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(self.vocabulary_size,), initializer="zeros"
            )

    def call(self, inputs, start_index=0, reverse=False):
        if reverse:
            # [..., hidden_dim] -> [..., vocabulary_size]
            logits = self.token_embedding(inputs, reverse=True)
            if self.use_output_bias:
                logits = logits + ops.cast(self.output_bias, logits.dtype)
            return logits
        inputs = check_length(inputs, self.max_sequence_length, "token_ids", start_index)
        embedded = self.token_embedding(inputs)  # [B, T, hidden_dim]
        return self.position_embedding(embedded, start_index=start_index)

    def compute_output_spec(self, inputs, start_index=0, reverse=False):
        if reverse:
            shape = tuple(inputs.shape[:-1]) + (self.vocabulary_size,)
        else:
            shape = tuple(inputs.shape) + (self.hidden_dim,)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                # With the policies of its quantized sublayers, if any.
                "dtype": dtype_policy_config(self),
                "vocabulary_size": self.vocabulary_size,
                "max_sequence_length": self.max_sequence_length,
                "hidden_dim": self.hidden_dim,
                "use_output_bias": self.use_output_bias,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
