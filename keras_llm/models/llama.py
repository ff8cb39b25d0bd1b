"""Llama: a decoder-only causal LM with rotary positions, RMSNorm, SwiGLU and grouped-query
attention (Touvron et al., 2023); Mistral, Qwen2 and SmolLM2 are the same layout with options."""

import keras

from keras_llm._checks import check_int, is_finite_real
from keras_llm.layers import LlamaBlock, RMSNorm
from keras_llm.layers.rotary_embedding import check_rope_scaling
from keras_llm.layers.token_and_position_embedding import ReversibleEmbedding
from keras_llm.models._config import merged_config, resolve_precision
from keras_llm.models._decoder import DecoderModel
from keras_llm.training import compile_model

# The published configurations, as their Hugging Face `config.json` files
# declare them (keys renamed to the builder's arguments). The parameter count
# of each is tested against the one its model card publishes.
LLAMA_PRESETS = {
    # A few hundred thousand parameters: for tests and CPU experiments.
    "llama_tiny": dict(
        vocabulary_size=512, num_layers=2, num_heads=4, num_key_value_heads=2,
        hidden_dim=64, intermediate_dim=128, max_sequence_length=256,
        rope_theta=10000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    ),
    # HuggingFaceTB/SmolLM2-135M: 134,515,008 parameters.
    "smollm2_135m": dict(
        vocabulary_size=49152, num_layers=30, num_heads=9, num_key_value_heads=3,
        hidden_dim=576, intermediate_dim=1536, max_sequence_length=8192,
        rope_theta=100000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    ),
    # HuggingFaceTB/SmolLM2-360M: 361,821,120 parameters.
    "smollm2_360m": dict(
        vocabulary_size=49152, num_layers=32, num_heads=15, num_key_value_heads=5,
        hidden_dim=960, intermediate_dim=2560, max_sequence_length=8192,
        rope_theta=100000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    ),
    # meta-llama/Llama-3.2-1B: 1,235,814,400 parameters.
    "llama3_2_1b": dict(
        vocabulary_size=128256, num_layers=16, num_heads=32, num_key_value_heads=8,
        hidden_dim=2048, intermediate_dim=8192, max_sequence_length=131072,
        rope_theta=500000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        rope_scaling=dict(
            rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=8192,
        ),
    ),
    # meta-llama/Meta-Llama-3-8B: 8,030,261,248 parameters.
    "llama3_8b": dict(
        vocabulary_size=128256, num_layers=32, num_heads=32, num_key_value_heads=8,
        hidden_dim=4096, intermediate_dim=14336, max_sequence_length=8192,
        rope_theta=500000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=False,
    ),
    # Qwen/Qwen2.5-0.5B: 494,032,768 parameters; biases on q, k and v.
    "qwen2_5_0_5b": dict(
        vocabulary_size=151936, num_layers=24, num_heads=14, num_key_value_heads=2,
        hidden_dim=896, intermediate_dim=4864, max_sequence_length=32768,
        rope_theta=1000000.0, layer_norm_epsilon=1e-6, tie_word_embeddings=True,
        attention_bias=True,
    ),
    # mistralai/Mistral-7B-v0.1: 7,241,732,096 parameters. Its config declares
    # max_position_embeddings=32768 with sliding_window=4096: the context here
    # is the window, within which sliding-window attention is full attention.
    "mistral_7b": dict(
        vocabulary_size=32000, num_layers=32, num_heads=32, num_key_value_heads=8,
        hidden_dim=4096, intermediate_dim=14336, max_sequence_length=4096,
        rope_theta=10000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=False,
        sliding_window=4096,
    ),
}

_SIZES = ("vocabulary_size", "num_layers", "num_heads", "num_key_value_heads", "hidden_dim",
          "intermediate_dim", "max_sequence_length")
_DEFAULTS = dict(
    head_dim=None, attention_bias=False, tie_word_embeddings=True, rope_theta=10000.0,
    rope_scaling=None, layer_norm_epsilon=1e-6, sliding_window=None,
)


def build_llama(preset=None, *, precision=None, tokenizer=None, name="llama", **overrides):
    """Builds a Llama-layout causal language model (Llama 2/3, Mistral, Qwen2, SmolLM2), compiled.

    A token embedding, `num_layers` `keras_llm.layers.LlamaBlock`s (pre-norm
    RMSNorm, causal grouped-query attention with rotary positions, SwiGLU),
    a final RMSNorm and the output projection: the transposed token
    embedding (`tie_word_embeddings=True`) or a matrix of its own. There
    are no position embeddings, biases (but Qwen2's q/k/v) or dropout. The
    model has the decoding interface of `keras_llm.build_gpt`'s (its task is
    `"causal_lm"`), so `keras_llm.generate`, `keras_llm.generation.Generator`
    (sampling, beam search, stop strings) and `keras_llm.export` take it
    unchanged, and its key/value cache holds the `num_key_value_heads` only.

    Options of the checkpoints that keras_llm does not compute are refused
    by name: a `sliding_window` shorter than `max_sequence_length` (where it
    would change the attention), a `rope_scaling` other than `"linear"` and
    `"llama3"`.

    Args:
        preset: A key of `keras_llm.models.LLAMA_PRESETS` (`"llama_tiny"`,
            `"smollm2_135m"`, `"smollm2_360m"`, `"llama3_2_1b"`,
            `"llama3_8b"`, `"qwen2_5_0_5b"`, `"mistral_7b"`), or None to give
            every size below.
        vocabulary_size: Number of token ids.
        num_layers: Number of blocks.
        num_heads: Query heads per block.
        num_key_value_heads: Key/value heads per block; divides `num_heads`.
        hidden_dim: Width of the residual stream.
        intermediate_dim: Width of the SwiGLU hidden layer.
        max_sequence_length: The context (positions the model is used for).
        head_dim: Width of each head; default `hidden_dim // num_heads`.
        attention_bias: Biases on the query, key and value projections (Qwen2).
        tie_word_embeddings: Whether the output projection is the token embedding.
        rope_theta: Base of the rotary frequencies.
        rope_scaling: None, or a Hugging Face `rope_scaling` dict of type
            `"linear"` or `"llama3"` (see `keras_llm.layers.RotaryEmbedding`).
        layer_norm_epsilon: The RMSNorms' epsilon (`rms_norm_eps`).
        sliding_window: None, or Mistral's window, at least `max_sequence_length`.
        precision: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`, or
            None for Keras's global dtype policy (see `build_gpt`).
        tokenizer: The tokenizer the model carries (`model.tokenizer`);
            `vocabulary_size` defaults to its size.
        name: The model's name.

    Returns:
        A compiled `keras_llm.models.Llama`: inputs `token_ids` and
        `padding_mask` (int32, `(batch_size, sequence_length)`, padding on
        the right), output logits `(batch_size, sequence_length,
        vocabulary_size)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_llama("llama_tiny", num_layers=1)
    token_ids = np.array([[5, 17, 42, 0]], "int32")
    logits = model({"token_ids": token_ids, "padding_mask": np.array([[1, 1, 1, 0]], "int32")})
    assert logits.shape == (1, 4, 512)
    ```
    """
    config = resolve_llama_config(preset, overrides, tokenizer)
    dtype = resolve_precision("build_llama", precision)
    model = Llama(**config, dtype=dtype, name=name)
    model.tokenizer = tokenizer
    return compile_model(model)


def resolve_llama_config(preset, overrides, tokenizer=None):
    """The builder's arguments (`merged_config` of `LLAMA_PRESETS`), checked."""
    config = merged_config(
        "build_llama", LLAMA_PRESETS, preset, overrides, _DEFAULTS, _SIZES, tokenizer
    )
    for key in _SIZES + (("head_dim",) if config["head_dim"] is not None else ()):
        check_int(key, config[key], where="build_llama")
    for key in ("attention_bias", "tie_word_embeddings"):
        if not isinstance(config[key], bool):
            raise ValueError(f"build_llama: `{key}` must be a bool. Received: {key}={config[key]!r}")
    for key, low in (("rope_theta", 1.0), ("layer_norm_epsilon", 0.0)):
        if not is_finite_real(config[key]) or config[key] <= low:
            raise ValueError(
                f"build_llama: `{key}` must be a float > {low:g}. Received: {key}={config[key]!r}"
            )
        config[key] = float(config[key])
    config["rope_scaling"] = check_rope_scaling(config["rope_scaling"])
    if config["head_dim"] is None and config["hidden_dim"] % config["num_heads"]:
        raise ValueError(
            "build_llama: without `head_dim`, `hidden_dim` must be divisible by `num_heads`. "
            f"Received: hidden_dim={config['hidden_dim']}, num_heads={config['num_heads']}"
        )
    if config["num_heads"] % config["num_key_value_heads"]:
        raise ValueError(
            "build_llama: `num_key_value_heads` must divide `num_heads`. Received: "
            f"num_heads={config['num_heads']}, "
            f"num_key_value_heads={config['num_key_value_heads']}"
        )
    window = config["sliding_window"]
    if window is not None and (
        not isinstance(window, int) or window < config["max_sequence_length"]
    ):
        raise ValueError(
            "build_llama: sliding-window attention is not implemented; `sliding_window` must be "
            "None or at least `max_sequence_length` (where full attention is the same). "
            f"Received: sliding_window={window!r}, "
            f"max_sequence_length={config['max_sequence_length']}"
        )
    return config


@keras.saving.register_keras_serializable(package="keras_llm")
class Llama(DecoderModel):
    """A Llama-layout causal LM: a functional model that also decodes one step at a time.

    `keras_llm.build_llama` builds and compiles it (use that); the class is
    what a `.keras` file loads back into. Like `keras_llm.models.GPT`, it
    carries the decoding interface of `keras_llm.generation`: `task`
    (`"causal_lm"`), `vocabulary_size`, `max_sequence_length`,
    `empty_cache(batch_size, cache_length)` (per block a pair of
    `[batch_size, num_key_value_heads, cache_length, head_dim]` zeros) and
    `call_with_cache(token_ids, cache, cache_index, context=None)` (float32
    logits `[B, T, V]` and the updated cache).

    Args: the architecture arguments of `build_llama` (all sizes given), and
    `dtype` (a dtype policy), `name`.
    """

    task = "causal_lm"

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        num_key_value_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length,
        head_dim=None,
        attention_bias=False,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        rope_scaling=None,
        layer_norm_epsilon=1e-6,
        sliding_window=None,
        dtype=None,
        **kwargs,
    ):
        dtype = keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)  # initializer_range
        # Positions are rotations inside attention: the embedding holds tokens only.
        embedding = ReversibleEmbedding(
            vocabulary_size,
            hidden_dim,
            tie_weights=tie_word_embeddings,
            embeddings_initializer=initializer,
            dtype=dtype,
            name="token_embedding",
        )
        self._build_decoder(
            dict(
                vocabulary_size=vocabulary_size,
                num_layers=num_layers,
                num_heads=num_heads,
                num_key_value_heads=num_key_value_heads,
                hidden_dim=hidden_dim,
                intermediate_dim=intermediate_dim,
                max_sequence_length=max_sequence_length,
                # The width the blocks derive without one: hidden_dim / num_heads.
                head_dim=hidden_dim // num_heads if head_dim is None else head_dim,
                attention_bias=attention_bias,
                tie_word_embeddings=tie_word_embeddings,
                rope_theta=rope_theta,
                rope_scaling=rope_scaling,
                layer_norm_epsilon=layer_norm_epsilon,
                sliding_window=sliding_window,
            ),
            dtype,
            embedding,
            lambda i: LlamaBlock(
                num_heads=num_heads,
                num_key_value_heads=num_key_value_heads,
                intermediate_dim=intermediate_dim,
                head_dim=head_dim,
                attention_bias=attention_bias,
                rope_theta=rope_theta,
                rope_scaling=rope_scaling,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=dtype,
                name=f"llama_block_{i}",
            ),
            lambda: RMSNorm(layer_norm_epsilon, dtype=dtype, name="final_norm"),
            **kwargs,
        )

    def _cache_heads(self, block):
        # Grouped-query attention: the query heads share `num_key_value_heads`
        # keys and values, and only those are cached.
        return block.num_key_value_heads
