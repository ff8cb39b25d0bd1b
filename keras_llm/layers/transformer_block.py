"""The Transformer block: attention, feed-forward network, residuals, LayerNorm.

The masks and the key/value cache write it shares with the other blocks are in
`keras_llm.layers._attention`.
"""

import math

import keras
from keras import ops

from keras_llm._checks import check_int, is_finite_real
from keras_llm.layers._attention import cache_mask, merge_masks, write_cache
from keras_llm.layers._dtype_policy import dtype_policy_config


@keras.saving.register_keras_serializable(package="keras_llm")
def gelu_approximate(x):
    """GELU with the tanh approximation, as GPT-2 was trained with.

    A named, registered function (not a lambda) so that a model using it
    saves to `.keras` and loads with `safe_mode` on.

    Example:

    ```python
    import numpy as np
    import keras_llm

    x = np.array([-1.0, 0.0, 2.0], "float32")
    y = np.asarray(keras_llm.layers.gelu_approximate(x))
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    assert np.allclose(y, expected, atol=1e-6)
    ```
    """
    return keras.activations.gelu(x, approximate=True)


def _clone(initializer):
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerBlock(keras.layers.Layer):
    """One Transformer layer: multi-head attention and a feed-forward network.

    Attention is scaled dot-product attention, softmax(Q K^T / sqrt(d_k)) V,
    with query, key and value projections (each `hidden_dim -> hidden_dim`,
    with bias, split into `num_heads` heads of `head_dim = hidden_dim //
    num_heads`) and an output projection back to `hidden_dim`. The four
    kernels are 2-D, `[in, out]` (the heads are the output's consecutive
    slices, as in Hugging Face's layouts): XLA on a CPU multiplies a 2-D
    variable by one decoding step's vector with its fast matrix-vector
    kernel, but a head-split 3-D kernel is reshaped first, and that reshape
    made it fall back to a loop about ten times slower (`benchmarks/RESULTS.md`,
    Seq2seq generation). The
    position-wise feed-forward network is `Dense(intermediate_dim,
    activation)` then `Dense(hidden_dim)`. Each sub-layer has a residual
    connection and a LayerNorm:

    - post-norm (`normalize_first=False`, BERT and the original Transformer):
      `x = LN(x + Attention(x)); x = LN(x + FFN(x))`
    - pre-norm (`normalize_first=True`, GPT-2): `x = x + Attention(LN(x));
      x = x + FFN(LN(x))`; a pre-norm stack needs a final LayerNorm after its
      last block, which the GPT builder adds.

    With `cross_attention=True` a second attention sub-layer sits between
    self-attention and the feed-forward network, with queries from the
    sequence and keys and values from `encoder_outputs` (the decoder block of
    an encoder-decoder model).

    Under mixed precision the attention logits, the softmax and the LayerNorms
    are computed in float32 (the softmax sums over the whole sequence and the
    masked logits need float32's range); the matrix products follow the
    layer's compute dtype.

    Args:
        num_heads: Number of attention heads; must divide the input width.
        intermediate_dim: Width of the feed-forward network's hidden layer.
        dropout: Dropout rate on the attention probabilities and on each
            sub-layer's output before its residual addition.
        activation: Activation of the feed-forward network: a name
            (`"gelu"` is the exact erf GELU of BERT, `"relu"`, ...), or a
            registered function such as `keras_llm.layers.gelu_approximate`.
        layer_norm_epsilon: Epsilon of every LayerNorm.
        normalize_first: Pre-norm (`True`) or post-norm (`False`).
        causal: Whether position `t` may attend only to positions `<= t`.
        cross_attention: Whether the block has an encoder-attention sub-layer.
        kernel_initializer: Initializer of every projection kernel. Defaults
            to a truncated normal with standard deviation 0.02 (BERT, GPT-2).
        bias_initializer: Initializer of every projection bias.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: Float tensor `(batch_size, sequence_length, hidden_dim)`.
        padding_mask: Optional `(batch_size, sequence_length)` tensor, 1 (or
            True) for real tokens and 0 for padding; padded keys get no
            attention. Outputs at padded positions are not meaningful.
        attention_mask: Optional `(batch_size, sequence_length,
            sequence_length)` tensor; query `t` may attend to key `s` where it
            is 1. Combined (logical and) with `padding_mask` and `causal`.
        encoder_outputs: `(batch_size, encoder_length, encoder_dim)`, needed
            when `cross_attention=True`.
        encoder_padding_mask: Optional `(batch_size, encoder_length)` mask of
            `encoder_outputs`.
        return_attention_scores: Whether to also return the attention
            probabilities.
        cache: Optional key/value cache for incremental decoding, a pair
            `(keys, values)` of tensors `(batch_size, num_heads,
            cache_length, head_dim)` (every position so far; `cache_length`
            is fixed, so a decoding loop keeps static shapes; two tensors,
            not one, so that a step reads each in place instead of copying
            a slice). The inputs are the tokens at
            positions `cache_index ... cache_index + sequence_length - 1`:
            their keys and values are written into the cache, and they
            attend to cache positions `<= their own` (needs `causal=True`;
            positions past the written ones are never attended to).
        cache_index: The position of the inputs' first token in the cache
            (an int or a scalar tensor); needed with `cache`.
        cross_attention_cache: Optional keys and values of the encoder
            attention, a pair of `(batch_size, num_heads, encoder_length,
            head_dim)` tensors, from `compute_cross_attention_cache(encoder_outputs)`:
            a decoding loop computes them once per source and passes them
            at every step instead of `encoder_outputs`.
        training: Whether dropout is active.

    Returns:
        The output `(batch_size, sequence_length, hidden_dim)`; with `cache`,
        a tuple `(outputs, updated_cache)`: the cache goes in and comes out
        as a value (no state is kept in the layer), so a `tf.while_loop`
        carries it. With
        `return_attention_scores=True`, a tuple `(outputs, scores)`, or
        `(outputs, scores, cross_scores)` with cross-attention, each of shape
        `(batch_size, num_heads, query_length, key_length)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    block = keras_llm.layers.TransformerBlock(
        num_heads=2, intermediate_dim=32, causal=True, normalize_first=True
    )
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    outputs, scores = block(x, return_attention_scores=True)
    assert outputs.shape == (2, 5, 8) and scores.shape == (2, 2, 5, 5)
    # Causal: no attention to later positions.
    assert np.allclose(np.triu(np.asarray(scores)[0, 0], k=1), 0.0)
    ```
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        activation="gelu",
        layer_norm_epsilon=1e-5,
        normalize_first=False,
        causal=False,
        cross_attention=False,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_heads", num_heads)
        check_int("intermediate_dim", intermediate_dim)
        if not is_finite_real(dropout) or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"`dropout` must be a float in [0, 1). Received: dropout={dropout!r}"
            )
        if not is_finite_real(layer_norm_epsilon) or layer_norm_epsilon <= 0.0:
            raise ValueError(
                "`layer_norm_epsilon` must be a positive float. "
                f"Received: layer_norm_epsilon={layer_norm_epsilon!r}"
            )
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.causal = causal
        self.cross_attention = cross_attention
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)

    # -- construction --------------------------------------------------------

    def _dense(self, units, name):
        # A projection of the tokens flattened to rows (`_project`):
        # `[B * T, in] @ [in, units] + bias`, one 2-D matmul. Not
        # `"btd,df->btf"` on `[B, T, in]`: TensorFlow runs that as a matmul
        # broadcast over the batch, whose kernel gradient is a product per
        # example summed back, 3x the time of one 2-D matmul here (a MiniLM train
        # step took 2.9x as long; benchmarks/RESULTS.md). The layer class and its
        # `[in, units]` kernel are those of the 3-D layout, so its `.keras` files load.
        return keras.layers.EinsumDense(
            "ad,df->af",
            output_shape=(units,),
            bias_axes="f",
            kernel_initializer=_clone(self.kernel_initializer),
            bias_initializer=_clone(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def _layer_norm(self, name):
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )

    def _build_attention(self, prefix, query_shape, key_shape):
        """Creates and builds `<prefix>_{query,key,value,output}` projections (2-D kernels)."""
        hidden_dim = query_shape[-1]
        projections = {}
        for part, shape in (("query", query_shape), ("key", key_shape), ("value", key_shape)):
            layer = self._dense(hidden_dim, f"{prefix}_{part}")
            layer.build((None, shape[-1]))
            projections[part] = layer
        output = self._dense(hidden_dim, f"{prefix}_output")
        output.build((None, hidden_dim))
        projections["output"] = output
        return projections

    def build(self, inputs_shape, encoder_outputs_shape=None):
        hidden_dim = inputs_shape[-1]
        if hidden_dim is None or hidden_dim % self.num_heads != 0:
            raise ValueError(
                "The input width (hidden_dim) must be divisible by `num_heads`. "
                f"Received: hidden_dim={hidden_dim}, num_heads={self.num_heads}"
            )
        self.head_dim = hidden_dim // self.num_heads
        self._self_attention = self._build_attention(
            "self_attention", inputs_shape, inputs_shape
        )
        self._self_attention_layer_norm = self._layer_norm("self_attention_layer_norm")
        self._self_attention_layer_norm.build(inputs_shape)
        if self.cross_attention:
            if encoder_outputs_shape is None:
                raise ValueError(
                    "A TransformerBlock with cross_attention=True must be "
                    "called with `encoder_outputs`."
                )
            self._cross_attention = self._build_attention(
                "cross_attention", inputs_shape, encoder_outputs_shape
            )
            self._cross_attention_layer_norm = self._layer_norm(
                "cross_attention_layer_norm"
            )
            self._cross_attention_layer_norm.build(inputs_shape)
        self._feedforward_intermediate_dense = self._dense(
            self.intermediate_dim, "feedforward_intermediate_dense"
        )
        self._feedforward_intermediate_dense.build((None, hidden_dim))
        self._feedforward_output_dense = self._dense(hidden_dim, "feedforward_output_dense")
        self._feedforward_output_dense.build((None, self.intermediate_dim))
        self._feedforward_layer_norm = self._layer_norm("feedforward_layer_norm")
        self._feedforward_layer_norm.build(inputs_shape)
        self._dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    # -- forward pass ----------------------------------------------------------

    @staticmethod
    def _project(layer, x):
        """`layer` (a `_dense`) on `x` `[B, T, in]`, as rows `[B * T, in]`: `[B, T, out]`."""
        shape = ops.shape(x)
        y = layer(ops.reshape(x, (-1, shape[-1])))  # [B * T, out]
        return ops.reshape(y, (shape[0], shape[1], ops.shape(y)[-1]))

    def _heads(self, projections, part, x):
        """The `part` projection of `x` `[B, T, D]`, split into heads: `[B, T, N, H]`."""
        y = self._project(projections[part], x)
        shape = ops.shape(y)
        return ops.reshape(y, (shape[0], shape[1], self.num_heads, self.head_dim))

    def _query(self, projections, x):
        """Queries `[B, T, N, H]`, scaled by 1/sqrt(H)."""
        query = self._heads(projections, "query", x)
        return query * ops.cast(1.0 / math.sqrt(self.head_dim), query.dtype)

    def _attend(self, projections, query, key, value, mask, training, head_major=False):
        """Attention of `query` `[B, T, N, H]` over `key`, `value`; (outputs, probabilities).

        `key` and `value` are `[B, S, N, H]`, or `[B, N, S, H]` with
        `head_major` (a cache's layout: both matmuls then read it in place,
        batched over (B, N) with S, H the matrix dimensions). `mask` is a
        `[B or 1, T, S]` bool mask (True: may attend), or None.
        """
        keys = "bnsh" if head_major else "bsnh"
        scores = ops.einsum(f"btnh,{keys}->bnts", query, key)  # [B, N, T, S]
        # float32 on purpose: the masked fill and the softmax's sum over S
        # need its range and precision under mixed precision.
        scores = ops.cast(scores, "float32")
        if mask is not None:
            scores = ops.where(mask[:, None, :, :], scores, -1e9)
        probabilities = ops.softmax(scores, axis=-1)
        weights = ops.cast(probabilities, self.compute_dtype)
        dropped = self._dropout_layer(weights, training=training)
        attended = ops.einsum(f"bnts,{keys}->btnh", dropped, value)  # [B, T, N, H]
        shape = ops.shape(attended)
        attended = ops.reshape(attended, (shape[0], shape[1], shape[2] * shape[3]))
        return self._project(projections["output"], attended), probabilities  # [B, T, D]

    def _sublayer_input(self, x, layer_norm):
        """What a sub-layer reads: `LN(x)` pre-norm, `x` post-norm."""
        return layer_norm(x) if self.normalize_first else x

    def _residual(self, x, y, layer_norm, training):
        """A sub-layer's output `y` added to the stream `x`, pre- or post-norm."""
        y = self._dropout_layer(y, training=training)
        return x + y if self.normalize_first else layer_norm(x + y)

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        encoder_outputs=None,
        encoder_padding_mask=None,
        return_attention_scores=False,
        cache=None,
        cache_index=None,
        cross_attention_cache=None,
        training=None,
    ):
        # inputs = [B, T, D]
        length = ops.shape(inputs)[1]
        h = self._sublayer_input(inputs, self._self_attention_layer_norm)
        query = self._query(self._self_attention, h)
        key = self._heads(self._self_attention, "key", h)  # [B, T, N, H]
        value = self._heads(self._self_attention, "value", h)
        if cache is None:
            mask = merge_masks(
                query_length=length,
                key_length=length,
                key_padding_mask=padding_mask,
                attention_mask=attention_mask,
                causal=self.causal,
            )
            y, scores = self._attend(self._self_attention, query, key, value, mask, training)
        else:
            self._check_cache_call(
                cache_index, padding_mask, attention_mask, return_attention_scores
            )
            # 2 x [B, N, C, H]
            cache = write_cache(cache, key, value, cache_index, self.num_heads, self.head_dim)
            mask = cache_mask(ops.shape(cache[0])[2], cache_index, length)
            y, scores = self._attend(
                self._self_attention, query, cache[0], cache[1], mask, training, head_major=True
            )
        x = self._residual(inputs, y, self._self_attention_layer_norm, training)
        cross_scores = None
        if self.cross_attention:
            x, cross_scores = self._cross_attend(
                x, encoder_outputs, encoder_padding_mask, cross_attention_cache, training
            )
        h = self._sublayer_input(x, self._feedforward_layer_norm)
        y = self._project(
            self._feedforward_output_dense,
            self.activation(self._project(self._feedforward_intermediate_dense, h)),
        )
        x = self._residual(x, y, self._feedforward_layer_norm, training)
        if cache is not None:
            return x, cache
        if not return_attention_scores:
            return x
        if self.cross_attention:
            return x, scores, cross_scores
        return x, scores

    def _cross_attend(self, x, encoder_outputs, encoder_padding_mask, cross_cache, training):
        """The encoder-attention sub-layer, from `encoder_outputs` or their cached keys and values."""
        if encoder_outputs is None and cross_cache is None:
            raise ValueError(
                "This TransformerBlock has cross_attention=True: pass `encoder_outputs` "
                "(or `cross_attention_cache`). Received: encoder_outputs=None"
            )
        h = self._sublayer_input(x, self._cross_attention_layer_norm)
        query = self._query(self._cross_attention, h)
        if cross_cache is None:
            key = self._heads(self._cross_attention, "key", encoder_outputs)  # [B, S, N, H]
            value = self._heads(self._cross_attention, "value", encoder_outputs)
            source_length, head_major = ops.shape(encoder_outputs)[1], False
        else:  # 2 x [B, N, S, H]
            key, value = cross_cache
            source_length, head_major = ops.shape(key)[2], True
        mask = merge_masks(
            query_length=ops.shape(x)[1],
            key_length=source_length,
            key_padding_mask=encoder_padding_mask,
        )
        y, scores = self._attend(
            self._cross_attention, query, key, value, mask, training, head_major=head_major
        )
        return self._residual(x, y, self._cross_attention_layer_norm, training), scores

    def compute_cross_attention_cache(self, encoder_outputs):
        """The encoder attention's keys and values of `encoder_outputs`, computed once per source.

        Returns a pair `(keys, values)` of `(batch_size, num_heads,
        encoder_length, head_dim)` tensors (head-major like the self-attention
        cache)
        to pass as `cross_attention_cache` at every decoding step instead of
        `encoder_outputs`, which would project them again at each step.
        """
        if not self.cross_attention:
            raise ValueError(
                "This TransformerBlock has no encoder attention (cross_attention=False)."
            )
        key = self._heads(self._cross_attention, "key", encoder_outputs)  # [B, S, N, H]
        value = self._heads(self._cross_attention, "value", encoder_outputs)
        return ops.transpose(key, (0, 2, 1, 3)), ops.transpose(value, (0, 2, 1, 3))

    def _check_cache_call(
        self, cache_index, padding_mask, attention_mask, return_attention_scores
    ):
        if not self.causal:
            raise ValueError(
                "A key/value cache is for causal decoding: this TransformerBlock has "
                "causal=False."
            )
        if cache_index is None:
            raise ValueError("Pass `cache_index` (the inputs' first position) with `cache`.")
        if padding_mask is not None or attention_mask is not None or return_attention_scores:
            raise ValueError(
                "With `cache`, positions are masked causally through the cache; "
                "`padding_mask`, `attention_mask` and `return_attention_scores` are not "
                "supported."
            )

    def compute_output_spec(
        self, inputs, encoder_outputs=None, return_attention_scores=False, **kwargs
    ):
        outputs = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return outputs
        batch, length = inputs.shape[0], inputs.shape[1]
        scores = [keras.KerasTensor((batch, self.num_heads, length, length), dtype="float32")]
        if self.cross_attention:
            source = encoder_outputs.shape[1]
            scores.append(
                keras.KerasTensor((batch, self.num_heads, length, source), dtype="float32")
            )
        return (outputs, *scores)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                # With the policies of its quantized sublayers, if any.
                "dtype": dtype_policy_config(self),
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "causal": self.causal,
                "cross_attention": self.cross_attention,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
