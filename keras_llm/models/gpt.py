"""GPT: a decoder-only causal language model (Radford et al., 2019)."""

import keras

from keras_llm.layers import TokenAndPositionEmbedding, TransformerBlock, gelu_approximate
from keras_llm.models._config import (
    preset_table,
    resolve_config,
    resolve_precision,
)
from keras_llm.models._decoder import DecoderModel
from keras_llm.tokenizers import ByteTokenizer
from keras_llm.training import compile_model

# Sizes of the four published GPT-2 models, plus a tiny one for CPUs, by
# (num_layers, hidden_dim, num_heads); the feed-forward network is 4x wider.
GPT_PRESETS = preset_table(
    [
        # Trains on a 2-core CPU in minutes; sized for the byte-level tokenizer.
        (
            "gpt_nano", 4, 128, 4,
            dict(
                vocabulary_size=ByteTokenizer.vocabulary_size,
                max_sequence_length=256,
                dropout=0.0,
            ),
        ),
        ("gpt2_small", 12, 768, 12),
        ("gpt2_medium", 24, 1024, 16),
        ("gpt2_large", 36, 1280, 20),
        ("gpt2_xl", 48, 1600, 25),
    ],
    vocabulary_size=50257,
    max_sequence_length=1024,
    dropout=0.1,
)

_GPT_DEFAULTS = dict(dropout=0.0, layer_norm_epsilon=1e-5)


def build_gpt(preset=None, *, precision=None, tokenizer=None, name="gpt", **overrides):
    """Builds a GPT-2-style causal language model, compiled for training.

    Token and learned position embeddings, `num_layers` pre-norm causal
    `TransformerBlock`s with the tanh GELU, a final LayerNorm, and output
    logits from the transposed token embedding (input and output embeddings
    are tied, as in GPT-2). The model comes compiled with
    `keras_llm.compile_model(model, "causal_lm")` (see
    `keras_llm/training/defaults.py`), so `fit` works at once on batches of
    `({"token_ids", "padding_mask"}, next_token_ids, padding_mask)`.

    Args:
        preset: A key of `keras_llm.models.GPT_PRESETS` (`"gpt_nano"`,
            `"gpt2_small"`, `"gpt2_medium"`, `"gpt2_large"`, `"gpt2_xl"`), or
            None to give every size below.
        vocabulary_size: Number of token ids.
        num_layers: Number of Transformer blocks.
        num_heads: Attention heads per block.
        hidden_dim: Width of the residual stream.
        intermediate_dim: Width of the feed-forward hidden layer.
        dropout: Dropout rate (embeddings, attention, residual branches).
        max_sequence_length: Number of learned positions.
        layer_norm_epsilon: LayerNorm epsilon (1e-5 as in GPT-2).
        precision: `"float32"`, `"mixed_bfloat16"` (TPUs, recent GPUs, CPUs
            with AVX-512 BF16) or `"mixed_float16"` (GPUs; the optimizer
            then scales the loss), or None for Keras's global dtype policy.
            Under mixed precision, weights stay float32 and matmuls run in
            the low precision; LayerNorm statistics, the attention softmax
            and the loss are computed in float32.
        tokenizer: The tokenizer the model reads and writes text with: the
            model carries it (`model.tokenizer`, saved in its `.keras` file),
            so `keras_llm.generate`, `Generator` and `keras_llm.export` need
            no tokenizer argument. `vocabulary_size` defaults to its
            `vocabulary_size` (over the preset's).
        name: The model's name.

    Returns:
        A compiled `keras_llm.models.GPT` (a functional `keras.Model` with
        the decoding interface of `keras_llm.generation`), with inputs `token_ids` and
        `padding_mask` (int32, `(batch_size, sequence_length)`; padding on the
        right) and output logits `(batch_size, sequence_length,
        vocabulary_size)`: position `t` predicts token `t + 1`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=2)
    token_ids = np.array([[72, 105, 33, 0]], "int32")
    padding_mask = np.array([[1, 1, 1, 0]], "int32")
    logits = model({"token_ids": token_ids, "padding_mask": padding_mask})
    assert logits.shape == (1, 4, model.vocabulary_size)
    ```
    """
    config = resolve_config("build_gpt", GPT_PRESETS, preset, overrides, _GPT_DEFAULTS, tokenizer)
    dtype = resolve_precision("build_gpt", precision)
    model = GPT(**config, dtype=dtype, name=name)
    model.tokenizer = tokenizer
    return compile_model(model)


@keras.saving.register_keras_serializable(package="keras_llm")
class GPT(DecoderModel):
    """A GPT-2-style causal LM: a functional model that also decodes one step at a time.

    `keras_llm.build_gpt` builds and compiles it (use that); the class is
    what a saved `.keras` file loads back into. It is a functional
    `keras.Model` (inputs `token_ids` and `padding_mask`, output logits)
    that carries the decoding interface which `keras_llm.generation` and
    `keras_llm.export` use, and nothing else of the model:

    - `task`: `"causal_lm"`;
    - `vocabulary_size`, `max_sequence_length`: its ids and its context;
    - `empty_cache(batch_size, cache_length)`: one zero key/value cache per
      block, a pair (keys, values) of `[batch_size, num_heads, cache_length,
      head_dim]` tensors;
    - `call_with_cache(token_ids, cache, cache_index, context=None)`: the float32 logits
      `[B, T, V]` of `token_ids` `[B, T]` at positions `cache_index ...`,
      reading and writing their keys and values in `cache`; returns
      `(logits, cache)`. A prompt fills the cache in one call, then each
      step adds one token.

    Args: the architecture arguments of `build_gpt` (all sizes given), and
    `dtype` (a dtype policy), `name`.
    """

    task = "causal_lm"

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        dtype=None,
        **kwargs,
    ):
        dtype = keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)
        embedding = TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size,
            max_sequence_length=max_sequence_length,
            hidden_dim=hidden_dim,
            dtype=dtype,
            name="embeddings",
        )
        # Logits come from the transposed token embedding (tied), after the
        # LayerNorm that GPT-2 adds after its last pre-norm block.
        self._build_decoder(
            dict(
                vocabulary_size=vocabulary_size,
                num_layers=num_layers,
                num_heads=num_heads,
                hidden_dim=hidden_dim,
                intermediate_dim=intermediate_dim,
                max_sequence_length=max_sequence_length,
                dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon,
            ),
            dtype,
            embedding,
            lambda i: TransformerBlock(
                num_heads=num_heads,
                intermediate_dim=intermediate_dim,
                dropout=dropout,
                activation=gelu_approximate,
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=True,
                causal=True,
                dtype=dtype,
                name=f"transformer_layer_{i}",
            ),
            lambda: keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=dtype, name="final_layer_norm"
            ),
            make_embedding_dropout=lambda: keras.layers.Dropout(
                dropout, dtype=dtype, name="embeddings_dropout"
            ),
            **kwargs,
        )

    def _embed(self, token_ids, cache_index):
        # Learned positions: the new tokens sit at `cache_index...`.
        return self._embedding(token_ids, start_index=cache_index)
