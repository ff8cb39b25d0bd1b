"""The encoder-decoder Transformer (Vaswani et al., 2017) for translation and summarization."""

import math

import keras
from keras import ops

from keras_llm._checks import check_int
from keras_llm.layers import PositionalEncoding, PositionEmbedding, TransformerBlock
from keras_llm.layers.token_and_position_embedding import ReversibleEmbedding
from keras_llm.models._config import (
    preset_table,
    resolve_config,
    resolve_precision,
)
from keras_llm.models._decoder import DecoderModel
from keras_llm.training import compile_model

# The paper's two sizes (its Table 3: base and big, N = 6 layers on each
# side, a shared 37,000-token BPE vocabulary), and a tiny one for CPUs, by
# (num_layers, hidden_dim, num_heads); the feed-forward network is 4x wider.
SEQ2SEQ_PRESETS = preset_table(
    [
        # Trains on a 2-core CPU in minutes (keras-llm train --preset seq2seq_tiny);
        # pre-norm, which starts learning without the paper's long warm-up.
        ("seq2seq_tiny", 2, 128, 4, dict(vocabulary_size=4096, normalize_first=True)),
        ("transformer_base", 6, 512, 8),
        ("transformer_big", 6, 1024, 16, dict(dropout=0.3)),
    ],
    vocabulary_size=37000,
    max_sequence_length=512,
    dropout=0.1,
)

_SEQ2SEQ_DEFAULTS = dict(dropout=0.1, layer_norm_epsilon=1e-6, normalize_first=False)
POSITION_EMBEDDINGS = ("sinusoidal", "learned")


def build_seq2seq(
    preset=None,
    *,
    target_vocabulary_size=None,
    num_decoder_layers=None,
    tie_embeddings=True,
    position_embedding="sinusoidal",
    activation="relu",
    scale_embeddings=True,
    embedding_layer_norm=False,
    label_smoothing=0.1,
    precision=None,
    tokenizer=None,
    name="seq2seq",
    **overrides,
):
    """Builds an encoder-decoder Transformer, compiled for training with label smoothing.

    The model of "Attention Is All You Need" (Vaswani et al., 2017): token
    embeddings multiplied by sqrt(hidden_dim) plus sinusoidal position
    encodings, `num_layers` bidirectional encoder blocks, `num_decoder_layers`
    causal decoder blocks that also attend to the encoder's outputs,
    post-norm residuals, ReLU feed-forward networks, and output logits from
    the transposed target embedding. With a shared vocabulary and
    `tie_embeddings` the source embedding, the target embedding and the
    output projection are one table (the paper's three-way sharing).

    Parameters, against the paper's Table 3: `transformer_base` has
    63,082,496 (the paper: 65M) and `transformer_big` 214,245,376 (213M),
    with the 37,000-token vocabulary; the formula is
    `V d + L_enc (4 d^2 + 2 d f + 9 d + f) + L_dec (8 d^2 + 2 d f + 15 d + f)`
    (tests/models/test_seq2seq.py checks it against the built models).

    The model comes compiled with `keras_llm.compile_model(model,
    "seq2seq_lm")`: cross-entropy with label smoothing 0.1 as in the paper
    (`label_smoothing`), padding excluded through the sample weights of
    `keras_llm.data.seq2seq_dataset`, so `fit` works on its batches at once.

    Args:
        preset: A key of `keras_llm.models.SEQ2SEQ_PRESETS` (`"seq2seq_tiny"`,
            `"transformer_base"`, `"transformer_big"`), or None to give every
            size below.
        vocabulary_size: Number of token ids of the source (and of the
            target, unless `target_vocabulary_size` is given).
        num_layers: Encoder blocks (and decoder blocks, unless
            `num_decoder_layers` is given).
        num_heads: Attention heads per block.
        hidden_dim: Width of the residual stream (the paper's d_model).
        intermediate_dim: Width of the feed-forward hidden layer (d_ff).
        dropout: Dropout rate (embeddings, attention, residual branches).
        max_sequence_length: The longest source and target, in tokens (the
            size of each learned position table).
        layer_norm_epsilon: LayerNorm epsilon (1e-6, as tensor2tensor and
            Model Garden).
        target_vocabulary_size: A separate target vocabulary's size; None
            for a vocabulary shared with the source.
        num_decoder_layers: Decoder blocks; default `num_layers`.
        tie_embeddings: Whether the output projection is the transposed
            target embedding (and, with a shared vocabulary, the source
            embedding is that table too); otherwise a separate `Dense`.
        position_embedding: `"sinusoidal"` (the paper's
            `keras_llm.layers.PositionalEncoding`) or `"learned"` (a table per
            side, as BART).
        normalize_first: Post-norm as in the paper (`False`, the default) or
            pre-norm (`True`, with a final LayerNorm after each stack; the
            `seq2seq_tiny` preset's, as it learns without a long warm-up).
        activation: The feed-forward activation (`"relu"` as in the paper;
            BART uses `"gelu"`).
        scale_embeddings: Whether token embeddings are multiplied by
            sqrt(hidden_dim) (the paper's section 3.4); the embedding table is
            then initialised with standard deviation hidden_dim^-0.5, as in
            tensor2tensor, else 0.02.
        embedding_layer_norm: Whether a LayerNorm follows each side's
            embeddings (BART's `layernorm_embedding`).
        label_smoothing: The training loss's label smoothing.
        precision: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`, or
            None for Keras's global dtype policy (see `build_gpt`).
        tokenizer: The tokenizer of its source and target text (a shared
            vocabulary): the model carries it (`model.tokenizer`, saved in its
            `.keras` file) for `Generator`, `keras_llm.generate` and
            `keras_llm.export`; `vocabulary_size` defaults to its size.
        name: The model's name.

    Returns:
        A compiled `keras_llm.models.Seq2SeqTransformer`: inputs
        `encoder_token_ids`, `encoder_padding_mask`, `decoder_token_ids`,
        `decoder_padding_mask` (int32, padding on the right; keras-hub's BART
        names), output logits `(batch_size, target_length,
        target_vocabulary_size)`: decoder position `t` predicts target token
        `t + 1`. It decodes through `keras_llm.generation.Generator`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_seq2seq("seq2seq_tiny", vocabulary_size=100)
    logits = model({
        "encoder_token_ids": np.array([[5, 6, 7, 2]], "int32"),
        "encoder_padding_mask": np.ones((1, 4), "int32"),
        "decoder_token_ids": np.array([[1, 9]], "int32"),
        "decoder_padding_mask": np.ones((1, 2), "int32"),
    })
    assert logits.shape == (1, 2, 100)
    ```
    """
    config = resolve_config(
        "build_seq2seq", SEQ2SEQ_PRESETS, preset, overrides, _SEQ2SEQ_DEFAULTS, tokenizer
    )
    for argument, value in (
        ("target_vocabulary_size", target_vocabulary_size),
        ("num_decoder_layers", num_decoder_layers),
    ):
        if value is not None:
            check_int(argument, value, where="build_seq2seq")
    if position_embedding not in POSITION_EMBEDDINGS:
        raise ValueError(
            f"build_seq2seq: `position_embedding` must be one of {', '.join(POSITION_EMBEDDINGS)}. "
            f"Received: position_embedding={position_embedding!r}"
        )
    dtype = resolve_precision("build_seq2seq", precision)
    model = Seq2SeqTransformer(
        **config,
        target_vocabulary_size=target_vocabulary_size,
        num_decoder_layers=num_decoder_layers,
        tie_embeddings=bool(tie_embeddings),
        position_embedding=position_embedding,
        activation=activation,
        scale_embeddings=bool(scale_embeddings),
        embedding_layer_norm=bool(embedding_layer_norm),
        dtype=dtype,
        name=name,
    )
    model.tokenizer = tokenizer
    return compile_model(model, label_smoothing=label_smoothing)


@keras.saving.register_keras_serializable(package="keras_llm")
class Seq2SeqTransformer(DecoderModel):
    """An encoder-decoder Transformer: a functional model that also decodes step by step.

    `keras_llm.build_seq2seq` builds and compiles it (use that). Besides the
    functional model, it carries the decoding interface of
    `keras_llm.generation` (as `keras_llm.models.GPT` does):

    - `task`: `"seq2seq_lm"`; `vocabulary_size` (the target's, the ids it
      generates), `source_vocabulary_size`, `max_sequence_length`;
    - `encode(token_ids, padding_mask)`: runs the encoder once and returns
      the decoding context, `{"cross_attention_cache": [...],
      "encoder_padding_mask": ...}`: each decoder block's keys and values of
      the encoder outputs, computed once per source rather than at every
      step;
    - `empty_cache(batch_size, cache_length)`: one zero self-attention cache
      per decoder block;
    - `call_with_cache(token_ids, cache, cache_index, context)`: float32
      logits `[B, T, V]` of decoder tokens at `cache_index...`, and the
      updated cache.

    Args: those of `build_seq2seq` (all sizes given), and `dtype`, `name`.
    """

    task = "seq2seq_lm"

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length,
        dropout=0.1,
        layer_norm_epsilon=1e-6,
        target_vocabulary_size=None,
        num_decoder_layers=None,
        tie_embeddings=True,
        position_embedding="sinusoidal",
        normalize_first=False,
        activation="relu",
        scale_embeddings=True,
        embedding_layer_norm=False,
        dtype=None,
        **kwargs,
    ):
        dtype = keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)
        self._config = dict(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            max_sequence_length=max_sequence_length,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            target_vocabulary_size=target_vocabulary_size,
            num_decoder_layers=num_decoder_layers,
            tie_embeddings=tie_embeddings,
            position_embedding=position_embedding,
            normalize_first=normalize_first,
            activation=activation,
            scale_embeddings=scale_embeddings,
            embedding_layer_norm=embedding_layer_norm,
        )
        shared = target_vocabulary_size is None
        target_vocabulary_size = vocabulary_size if shared else target_vocabulary_size
        num_decoder_layers = num_decoder_layers or num_layers
        # tensor2tensor's initialisation goes with the sqrt(d) scale: embeddings of unit variance.
        stddev = hidden_dim**-0.5 if scale_embeddings else 0.02
        table = lambda size, name: ReversibleEmbedding(
            size, hidden_dim, tie_weights=True, dtype=dtype, name=name,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=stddev),
        )
        target_embedding = table(target_vocabulary_size, "target_embedding")
        source_embedding = (
            target_embedding if shared and tie_embeddings
            else table(vocabulary_size, "source_embedding")
        )
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in ("encoder_token_ids", "encoder_padding_mask",
                         "decoder_token_ids", "decoder_padding_mask")
        }
        block = lambda name, **extra: TransformerBlock(
            num_heads=num_heads, intermediate_dim=intermediate_dim, dropout=dropout,
            activation=activation, layer_norm_epsilon=layer_norm_epsilon,
            normalize_first=normalize_first, dtype=dtype, name=name, **extra,
        )
        final_norm = lambda name: keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name=name
        )
        self._scale = math.sqrt(hidden_dim) if scale_embeddings else None
        self._source_embedding = source_embedding
        self._target_embedding = target_embedding
        self._encoder_embedding = self._embedding_layers(
            "encoder", position_embedding, max_sequence_length, hidden_dim,
            embedding_layer_norm, layer_norm_epsilon, dropout, dtype,
        )
        self._decoder_embedding = self._embedding_layers(
            "decoder", position_embedding, max_sequence_length, hidden_dim,
            embedding_layer_norm, layer_norm_epsilon, dropout, dtype,
        )
        self._encoder_blocks = [block(f"encoder_layer_{i}") for i in range(num_layers)]
        self._decoder_blocks = [
            block(f"decoder_layer_{i}", causal=True, cross_attention=True)
            for i in range(num_decoder_layers)
        ]
        # Pre-norm stacks leave their residual streams un-normalized.
        self._encoder_final_norm = final_norm("encoder_final_layer_norm") if normalize_first else None
        self._decoder_final_norm = final_norm("decoder_final_layer_norm") if normalize_first else None
        self._output_projection = None if tie_embeddings else keras.layers.Dense(
            target_vocabulary_size, dtype=dtype, name="output_projection",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )

        # encoder_outputs = [B, S, D]
        encoder_outputs = self._encode(inputs["encoder_token_ids"], inputs["encoder_padding_mask"])
        y = self._embed(self._target_embedding, self._decoder_embedding,
                        inputs["decoder_token_ids"])  # [B, T, D]
        for decoder_block in self._decoder_blocks:
            y = decoder_block(
                y, padding_mask=inputs["decoder_padding_mask"], encoder_outputs=encoder_outputs,
                encoder_padding_mask=inputs["encoder_padding_mask"],
            )
        logits = self._logits(y)  # [B, T, V]
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self._layer_dtype = dtype
        self.vocabulary_size = target_vocabulary_size
        self.source_vocabulary_size = vocabulary_size
        self.max_sequence_length = max_sequence_length

    @staticmethod
    def _embedding_layers(side, position_embedding, length, hidden_dim, layer_norm, epsilon,
                          dropout, dtype):
        """A side's position layer, optional LayerNorm and dropout, applied in that order."""
        if position_embedding == "learned":
            positions = PositionEmbedding(length, dtype=dtype, name=f"{side}_position_embedding")
        else:
            positions = PositionalEncoding(dtype=dtype, name=f"{side}_positional_encoding")
        norm = keras.layers.LayerNormalization(
            epsilon=epsilon, dtype=dtype, name=f"{side}_embedding_layer_norm"
        ) if layer_norm else None
        return positions, norm, keras.layers.Dropout(dropout, dtype=dtype, name=f"{side}_dropout")

    def _embed(self, table, layers, token_ids, start_index=0, training=None):
        positions, norm, dropout = layers
        x = table(token_ids)  # [B, T, D]
        if self._scale is not None:
            x = x * ops.cast(self._scale, x.dtype)
        x = positions(x, start_index=start_index)
        if norm is not None:
            x = norm(x)
        return dropout(x, training=training)

    def _encode(self, token_ids, padding_mask, training=None):
        x = self._embed(self._source_embedding, self._encoder_embedding, token_ids,
                        training=training)
        for encoder_block in self._encoder_blocks:
            x = encoder_block(x, padding_mask=padding_mask, training=training)
        return x if self._encoder_final_norm is None else self._encoder_final_norm(x)

    def _logits(self, y):
        if self._decoder_final_norm is not None:
            y = self._decoder_final_norm(y)
        if self._output_projection is None:
            return self._target_embedding(y, reverse=True)  # tied to the target table
        return self._output_projection(y)

    # -- the decoding interface --------------------------------------------------

    def encode(self, token_ids, padding_mask):
        """The decoding context of sources `[B, S]`: cross-attention keys/values and the mask."""
        encoder_outputs = self._encode(token_ids, padding_mask, training=False)
        return {
            "cross_attention_cache": [
                block.compute_cross_attention_cache(encoder_outputs)
                for block in self._decoder_blocks
            ],
            "encoder_padding_mask": padding_mask,
        }

    def call_with_cache(self, token_ids, cache, cache_index, context):
        """`(logits, cache)`: float32 logits `[B, T, V]` of decoder tokens at `cache_index...`."""
        y = self._embed(self._target_embedding, self._decoder_embedding, token_ids,
                        start_index=cache_index, training=False)
        updated = []
        for block, block_cache, cross in zip(
            self._decoder_blocks, cache, context["cross_attention_cache"]
        ):
            y, block_cache = block(
                y, cache=block_cache, cache_index=cache_index, cross_attention_cache=cross,
                encoder_padding_mask=context["encoder_padding_mask"],
            )
            updated.append(block_cache)
        return ops.cast(self._logits(y), "float32"), updated
