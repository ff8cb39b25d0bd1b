"""The Llama decoder block: RMSNorm, grouped-query attention with rotary positions, SwiGLU."""

import keras

from keras_llm._checks import is_finite_real
from keras_llm.layers._attention import output_spec
from keras_llm.layers._dtype_policy import dtype_policy_config
from keras_llm.layers.grouped_query_attention import GroupedQueryAttention
from keras_llm.layers.rms_norm import RMSNorm
from keras_llm.layers.swiglu_feed_forward import SwiGLUFeedForward


@keras.saving.register_keras_serializable(package="keras_llm")
class LlamaBlock(keras.layers.Layer):
    """One pre-norm decoder layer of Llama, Mistral and Qwen2.

    ```
    x = x + Attention(RMSNorm_1(x))     # causal grouped-query attention, rotary positions
    x = x + SwiGLU(RMSNorm_2(x))        # down(silu(gate(h)) * up(h))
    ```

    A second block rather than options on `TransformerBlock`: the two share
    the residual shape and nothing else. Every sub-layer differs (RMSNorm for
    LayerNorm, positions rotated inside attention instead of added to the
    embeddings, fewer key/value heads than query heads with a cache of that
    size, a gated three-matrix feed-forward network, no biases but Qwen2's
    q/k/v ones, no dropout), and as options they would put a branch in
    every line of `TransformerBlock.call`, which now reads like the
    Transformer paper; here each block reads like its own. The attention,
    norms and feed-forward network are layers of their own
    (`GroupedQueryAttention`, `RMSNorm`, `SwiGLUFeedForward`) for other
    models to reuse. A stack of these needs a final RMSNorm, which
    `keras_llm.build_llama` adds.

    Args:
        num_heads: Query heads.
        num_key_value_heads: Key/value heads; must divide `num_heads`.
        intermediate_dim: Width of the SwiGLU hidden layer.
        head_dim: Width of each head; default `hidden_dim // num_heads`.
        attention_bias: Whether the query, key and value projections have
            biases (Qwen2).
        rope_theta: The rotary embedding's base.
        rope_scaling: The rotary embedding's scaling: None, or a Hugging Face
            `rope_scaling` dict of type `"linear"` or `"llama3"`.
        layer_norm_epsilon: The RMSNorms' epsilon (Hugging Face's `rms_norm_eps`).
        kernel_initializer: Initializer of every kernel; default a truncated
            normal with standard deviation 0.02.
        **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: Float tensor `(batch_size, sequence_length, hidden_dim)`.
        padding_mask: Optional `(batch_size, sequence_length)`, 1 for real tokens.
        cache: Optional pair `(keys, values)` of `(batch_size,
            num_key_value_heads, cache_length, head_dim)` tensors (see
            `GroupedQueryAttention`).
        cache_index: The inputs' first position; needed with `cache`.
        return_attention_scores: Whether to also return the attention
            probabilities (see `GroupedQueryAttention`); not with `cache`.

    Returns:
        `(batch_size, sequence_length, hidden_dim)`; with `cache`, a tuple
        `(outputs, updated_cache)`; with `return_attention_scores=True`, a
        tuple `(outputs, scores)`, scores `(batch_size, num_heads,
        sequence_length, sequence_length)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    block = keras_llm.layers.LlamaBlock(
        num_heads=4, num_key_value_heads=2, intermediate_dim=24
    )
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    assert block(x).shape == (2, 5, 16)
    ```
    """

    def __init__(
        self,
        num_heads,
        num_key_value_heads,
        intermediate_dim,
        head_dim=None,
        attention_bias=False,
        rope_theta=10000.0,
        rope_scaling=None,
        layer_norm_epsilon=1e-6,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not is_finite_real(layer_norm_epsilon) or layer_norm_epsilon <= 0.0:
            raise ValueError(
                "`layer_norm_epsilon` must be a positive float. "
                f"Received: layer_norm_epsilon={layer_norm_epsilon!r}"
            )
        self.intermediate_dim = intermediate_dim
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self._self_attention = GroupedQueryAttention(
            num_heads=num_heads,
            num_key_value_heads=num_key_value_heads,
            head_dim=head_dim,
            use_bias=attention_bias,
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self._feedforward = SwiGLUFeedForward(
            intermediate_dim,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="feedforward",
        )
        self._self_attention_layer_norm = RMSNorm(
            self.layer_norm_epsilon, dtype=self.dtype_policy, name="self_attention_layer_norm"
        )
        self._feedforward_layer_norm = RMSNorm(
            self.layer_norm_epsilon, dtype=self.dtype_policy, name="feedforward_layer_norm"
        )

    # The attention's settings, read by the model's `empty_cache`.
    num_heads = property(lambda self: self._self_attention.num_heads)
    num_key_value_heads = property(lambda self: self._self_attention.num_key_value_heads)
    head_dim = property(lambda self: self._self_attention.head_dim)

    def build(self, inputs_shape):
        self._self_attention_layer_norm.build(inputs_shape)
        self._self_attention.build(inputs_shape)
        self._feedforward_layer_norm.build(inputs_shape)
        self._feedforward.build(inputs_shape)

    def call(
        self, inputs, padding_mask=None, cache=None, cache_index=None,
        return_attention_scores=False,
    ):
        # inputs = [B, T, D]
        h = self._self_attention_layer_norm(inputs)
        scores = None
        if cache is not None:
            y, cache = self._self_attention(
                h, padding_mask=padding_mask, cache=cache, cache_index=cache_index,
                return_attention_scores=return_attention_scores,
            )
        elif return_attention_scores:
            y, scores = self._self_attention(
                h, padding_mask=padding_mask, return_attention_scores=True
            )
        else:
            y = self._self_attention(h, padding_mask=padding_mask)
        x = inputs + y
        x = x + self._feedforward(self._feedforward_layer_norm(x))
        if cache is not None:
            return x, cache
        return x if scores is None else (x, scores)

    def compute_output_spec(
        self, inputs, padding_mask=None, cache=None, cache_index=None,
        return_attention_scores=False,
    ):
        return output_spec(self, inputs, cache, return_attention_scores)

    def get_config(self):
        attention = self._self_attention
        config = super().get_config()
        config.update(
            {
                # With the policies of its quantized sublayers, if any.
                "dtype": dtype_policy_config(self),
                "num_heads": attention.num_heads,
                "num_key_value_heads": attention.num_key_value_heads,
                "intermediate_dim": self.intermediate_dim,
                "head_dim": attention.head_dim,
                "attention_bias": attention.use_bias,
                "rope_theta": attention.rope_theta,
                "rope_scaling": attention.rope_scaling,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
