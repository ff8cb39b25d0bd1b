"""Causal grouped-query attention with rotary positions (Ainslie et al., 2023), as in Llama."""

import math

import keras
from keras import ops

from keras_llm._checks import check_int
from keras_llm.layers._attention import cache_mask, merge_masks, output_spec, write_cache
from keras_llm.layers._dtype_policy import dtype_policy_config
from keras_llm.layers.offset_dense import OffsetDense
from keras_llm.layers.rotary_embedding import RotaryEmbedding


def _clone(initializer):
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="keras_llm")
class GroupedQueryAttention(keras.layers.Layer):
    """Causal self-attention whose query heads share fewer key/value heads.

    `num_heads` query heads of width `head_dim` and `num_key_value_heads`
    key/value heads: query head `n` reads key/value head `n // (num_heads //
    num_key_value_heads)` (Hugging Face's `repeat_kv` order). Queries and
    keys are rotated by their positions (`RotaryEmbedding`), then
    `softmax(Q K^T / sqrt(head_dim)) V` per head, causally, and the heads
    are projected back to `hidden_dim`. `num_key_value_heads == num_heads`
    is multi-head attention, `1` multi-query attention. The key/value cache
    holds only the key/value heads: `num_heads / num_key_value_heads` times
    smaller than multi-head attention's, which is the point of the layout.
    The groups are an axis of the einsums, so keys and values are never
    repeated in memory.

    Kernels are 2-D, `[in, out]`, heads the output's consecutive slices
    (Hugging Face's `q_proj.weight` etc. are their transposes): `query`
    `[hidden_dim, num_heads * head_dim]`, `key` and `value` `[hidden_dim,
    num_key_value_heads * head_dim]`, `output` `[num_heads * head_dim,
    hidden_dim]`. The attention logits and softmax are computed in float32.

    Args:
        num_heads: Number of query heads.
        num_key_value_heads: Number of key/value heads; must divide `num_heads`.
        head_dim: Width of each head; default `hidden_dim // num_heads`
            (Mistral and Qwen2 configs may set it apart).
        use_bias: Whether the query, key and value projections have biases
            (Qwen2); the output projection never has one.
        rope_theta: `RotaryEmbedding`'s base.
        rope_scaling: `RotaryEmbedding`'s scaling (None, `"linear"` or `"llama3"`).
        kernel_initializer: Initializer of the kernels. Defaults to a
            truncated normal with standard deviation 0.02.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: Float tensor `(batch_size, sequence_length, hidden_dim)`.
        padding_mask: Optional `(batch_size, sequence_length)`, 1 for real
            tokens, 0 for padding (padded keys get no attention).
        cache: Optional key/value cache, a pair `(keys, values)` of
            `(batch_size, num_key_value_heads, cache_length, head_dim)`
            tensors; the inputs are the tokens at `cache_index ...`, their
            (rotated) keys and values are written into it and they attend to
            cache positions up to their own.
        cache_index: The inputs' first position (an int or a scalar tensor);
            needed with `cache`.
        return_attention_scores: Whether to also return the attention
            probabilities, one map per query head (the key/value heads
            repeated as `repeat_kv` does); not with `cache`.

    Returns:
        `(batch_size, sequence_length, hidden_dim)`; with `cache`, a tuple
        `(outputs, updated_cache)`; with `return_attention_scores=True`, a
        tuple `(outputs, scores)`, scores float32 `(batch_size, num_heads,
        sequence_length, sequence_length)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    layer = keras_llm.layers.GroupedQueryAttention(num_heads=4, num_key_value_heads=2)
    x = np.random.default_rng(0).normal(size=(1, 5, 16)).astype("float32")
    y = layer(x)
    assert y.shape == (1, 5, 16)
    # Causal: the first output depends only on the first token.
    x2 = x.copy()
    x2[:, 1:] = 0.0
    assert np.allclose(layer(x2)[:, 0], y[:, 0], atol=1e-6)
    ```
    """

    def __init__(
        self,
        num_heads,
        num_key_value_heads,
        head_dim=None,
        use_bias=False,
        rope_theta=10000.0,
        rope_scaling=None,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_int("num_heads", num_heads)
        self.num_key_value_heads = check_int("num_key_value_heads", num_key_value_heads)
        if num_heads % num_key_value_heads:
            raise ValueError(
                "`num_key_value_heads` must divide `num_heads`. Received: "
                f"num_heads={num_heads}, num_key_value_heads={num_key_value_heads}"
            )
        self.head_dim = None if head_dim is None else check_int("head_dim", head_dim)
        if not isinstance(use_bias, bool):
            raise ValueError(f"`use_bias` must be a bool. Received: use_bias={use_bias!r}")
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self._rotary_embedding = RotaryEmbedding(
            rope_theta=rope_theta, rope_scaling=rope_scaling, dtype=self.dtype_policy,
            name="rotary_embedding",
        )
        self.rope_theta = self._rotary_embedding.rope_theta
        self.rope_scaling = self._rotary_embedding.rope_scaling

    def _dense(self, units, use_bias, name):
        return OffsetDense(
            units,
            use_bias=use_bias,
            kernel_initializer=_clone(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if self.head_dim is None:
            if hidden_dim is None or hidden_dim % self.num_heads:
                raise ValueError(
                    "Without `head_dim`, the input width (hidden_dim) must be divisible by "
                    f"`num_heads`. Received: hidden_dim={hidden_dim}, num_heads={self.num_heads}"
                )
            self.head_dim = hidden_dim // self.num_heads
        query_width = self.num_heads * self.head_dim
        key_width = self.num_key_value_heads * self.head_dim
        self._query_dense = self._dense(query_width, self.use_bias, "query")
        self._key_dense = self._dense(key_width, self.use_bias, "key")
        self._value_dense = self._dense(key_width, self.use_bias, "value")
        for layer in (self._query_dense, self._key_dense, self._value_dense):
            layer.build(inputs_shape)
        self._output_dense = self._dense(hidden_dim, False, "output")
        self._output_dense.build((None, None, query_width))
        self._rotary_embedding.build((None, None, None, self.head_dim))

    def _heads(self, layer, x, heads):
        """`layer(x)` `[B, T, heads * H]` split into heads: `[B, T, heads, H]`."""
        y = layer(x)
        shape = ops.shape(y)
        return ops.reshape(y, (shape[0], shape[1], heads, self.head_dim))

    def call(
        self, inputs, padding_mask=None, cache=None, cache_index=None,
        return_attention_scores=False,
    ):
        # inputs = [B, T, D]; N query heads = K key/value heads x G groups.
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        heads, groups = self.num_key_value_heads, self.num_heads // self.num_key_value_heads
        start = 0 if cache is None else cache_index
        query = self._heads(self._query_dense, inputs, self.num_heads)  # [B, T, N, H]
        query = self._rotary_embedding(query, start_index=start)
        query = query * ops.cast(1.0 / math.sqrt(self.head_dim), query.dtype)
        query = ops.reshape(query, (batch, length, heads, groups, self.head_dim))  # [B, T, K, G, H]
        key = self._heads(self._key_dense, inputs, heads)  # [B, T, K, H]
        key = self._rotary_embedding(key, start_index=start)
        value = self._heads(self._value_dense, inputs, heads)  # [B, T, K, H]
        if cache is None:
            mask = merge_masks(length, length, key_padding_mask=padding_mask, causal=True)
            keys = "bskh"
        else:
            if cache_index is None or padding_mask is not None or return_attention_scores:
                raise ValueError(
                    "With `cache`, pass `cache_index` (the inputs' first position) and no "
                    "`padding_mask` (positions are masked causally through the cache) nor "
                    f"`return_attention_scores`. Received: cache_index={cache_index!r}, "
                    f"padding_mask={'a tensor' if padding_mask is not None else None}, "
                    f"return_attention_scores={return_attention_scores!r}"
                )
            cache = write_cache(
                cache, key, value, cache_index, heads, self.head_dim
            )  # 2 x [B, K, C, H]
            key, value = cache
            mask = cache_mask(ops.shape(key)[2], cache_index, length)
            keys = "bksh"  # the cache's layout: both einsums read it in place
        scores = ops.einsum(f"btkgh,{keys}->bkgts", query, key)  # [B, K, G, T, S]
        # float32 on purpose: the masked fill and the softmax's sum over S.
        scores = ops.cast(scores, "float32")
        scores = ops.where(mask[:, None, None, :, :], scores, -1e9)
        probabilities = ops.softmax(scores, axis=-1)
        weights = ops.cast(probabilities, self.compute_dtype)
        attended = ops.einsum(f"bkgts,{keys}->btkgh", weights, value)  # [B, T, K, G, H]
        attended = ops.reshape(attended, (batch, length, self.num_heads * self.head_dim))
        outputs = self._output_dense(attended)  # [B, T, D]
        if cache is not None:
            return outputs, cache
        if return_attention_scores:
            # Query head n = k * G + g: the order of Hugging Face's `repeat_kv`.
            return outputs, ops.reshape(probabilities, (batch, self.num_heads, length, length))
        return outputs

    def compute_output_spec(
        self, inputs, padding_mask=None, cache=None, cache_index=None,
        return_attention_scores=False,
    ):
        return output_spec(self, inputs, cache, return_attention_scores)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                # With the policies of its quantized sublayers, if any.
                "dtype": dtype_policy_config(self),
                "num_heads": self.num_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "head_dim": self.head_dim,
                "use_bias": self.use_bias,
                "rope_theta": self.rope_theta,
                "rope_scaling": self.rope_scaling,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
