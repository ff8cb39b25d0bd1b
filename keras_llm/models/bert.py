"""BERT: a bidirectional encoder (Devlin et al., 2019), its presets and `build_bert`.

The encoder is the model every BERT head is built on: `bert_heads.py` puts
the pre-training, classification, tagging and question-answering heads on
a `build_bert` model, from a preset or on an encoder already trained or
imported.
"""

import warnings

import keras

from keras_llm._graph_checks import check_in_range
from keras_llm.layers import TokenAndPositionEmbedding, TransformerBlock
from keras_llm.models._config import (
    preset_table,
    resolve_config,
    resolve_precision,
)
from keras_llm.models.task_model import TaskModel

# The published BERT sizes (Devlin et al. 2019; the small ones from Turc et
# al. 2019, "Well-Read Students Learn Better"), by (num_layers, hidden_dim,
# num_heads); the feed-forward network is always 4x the hidden width.
BERT_PRESETS = preset_table(
    [
        ("bert_tiny", 2, 128, 2),
        ("bert_mini", 4, 256, 4),
        ("bert_small", 4, 512, 8),
        ("bert_medium", 8, 512, 8),
        ("bert_base", 12, 768, 12),
        ("bert_large", 24, 1024, 16),
    ],
    vocabulary_size=30522,
    max_sequence_length=512,
    dropout=0.1,
)

# The heads live in `bert_heads.py`; `keras_llm.models.bert.build_bert_classifier`
# and the others still resolve, through the module's `__getattr__` below.
_HEADS = (
    "build_bert_pretrainer", "build_bert_classifier", "build_bert_tagger",
    "build_bert_question_answerer",
)

_BERT_DEFAULTS = dict(dropout=0.1, layer_norm_epsilon=1e-12, num_segments=2)

# The encoder arguments of `build_bert`, which every head builder also takes.
ENCODER_ARGUMENTS = (
    "vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "dropout",
    "max_sequence_length", "layer_norm_epsilon", "num_segments", "precision",
)


@keras.saving.register_keras_serializable(package="keras_llm", name="BertSegmentEmbedding")
class SegmentEmbedding(keras.layers.Embedding):
    """BERT's segment (token type) embedding: a `keras.layers.Embedding` that checks its ids.

    A segment id outside `[0, input_dim)` would be a gather error on a CPU
    and a silent clamp elsewhere: it is an error naming `segment_ids` and
    the allowed range (see `keras_llm._graph_checks.check_in_range`).
    """

    def call(self, inputs):
        inputs = check_in_range(
            inputs, "segment_ids", self.input_dim, what="segment ids", unit="id(s)",
            where=f" (num_segments={self.input_dim})",
        )
        return super().call(inputs)


def build_bert(preset=None, *, precision=None, tokenizer=None, name="bert", **overrides):
    """Builds a BERT encoder (the backbone, with no training objective).

    Token, segment and learned position embeddings, a LayerNorm, then
    `num_layers` post-norm bidirectional `TransformerBlock`s with the exact
    GELU, and BERT's pooler. The encoder is returned uncompiled because it
    has no objective: put a head on it (`build_bert_pretrainer`,
    `build_bert_classifier`, `build_bert_tagger`,
    `build_bert_question_answerer`, each with `encoder=` this model; the head
    shares its layers and weights), or your own on `sequence_output` /
    `pooled_output`.

    Args:
        preset: A key of `keras_llm.models.BERT_PRESETS` (`"bert_tiny"`,
            `"bert_mini"`, `"bert_small"`, `"bert_medium"`, `"bert_base"`,
            `"bert_large"`), or None to give every size below.
        vocabulary_size: Number of token ids (default: the tokenizer's,
            else the preset's).
        num_layers: Number of Transformer blocks.
        num_heads: Attention heads per block.
        hidden_dim: Width of the hidden states.
        intermediate_dim: Width of the feed-forward hidden layer.
        dropout: Dropout rate (embeddings, attention, residual branches).
        max_sequence_length: Number of learned positions.
        layer_norm_epsilon: LayerNorm epsilon (1e-12 as in BERT).
        num_segments: Number of segment (token type) ids (2 as in BERT).
        precision: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`, or
            None for Keras's global dtype policy (see `build_gpt`: what
            each suits, and what stays float32).
        tokenizer: The tokenizer the model reads text with: the model
            carries it (`model.tokenizer`, saved in its `.keras` file) and
            `vocabulary_size` defaults to its size.
        name: The model's name.

    Returns:
        A `keras_llm.models.TaskModel` (task `"encoder"`) with int32 inputs
        `token_ids`, `segment_ids` and `padding_mask` (`(batch_size,
        sequence_length)`) and a dict of outputs: `sequence_output`
        `(batch_size, sequence_length, hidden_dim)` and `pooled_output`
        `(batch_size, hidden_dim)` (tanh projection of the first token). Its
        `builder_config` holds the resolved arguments above (but `precision`).

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert("bert_tiny", vocabulary_size=100)
    outputs = model({
        "token_ids": np.array([[2, 5, 9, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    })
    assert outputs["sequence_output"].shape == (1, 4, 128)
    assert outputs["pooled_output"].shape == (1, 128)
    assert model.builder_config["num_layers"] == 2
    ```
    """
    return encoder_for(
        "build_bert", preset, overrides, precision=precision, tokenizer=tokenizer, name=name
    )


def encoder_for(builder, preset, sizes, *, precision=None, tokenizer=None, name="bert"):
    """The encoder of `build_bert`, its errors naming `builder` (a head's builder, or build_bert).

    `sizes` holds the encoder arguments of `build_bert` but `precision`
    (None: the preset's or the default).
    """
    config = resolve_config(builder, BERT_PRESETS, preset, sizes, _BERT_DEFAULTS, tokenizer)
    dtype = resolve_precision(builder, precision)
    inputs = {
        key: keras.Input(shape=(None,), dtype="int32", name=key)
        for key in ("token_ids", "segment_ids", "padding_mask")
    }
    initializer = lambda: keras.initializers.TruncatedNormal(stddev=0.02)  # noqa: E731
    embedding = TokenAndPositionEmbedding(
        vocabulary_size=config["vocabulary_size"],
        max_sequence_length=config["max_sequence_length"],
        hidden_dim=config["hidden_dim"],
        dtype=dtype,
        name="embeddings",
    )
    segment_embedding = SegmentEmbedding(
        config["num_segments"],
        config["hidden_dim"],
        embeddings_initializer=initializer(),
        dtype=dtype,
        name="segment_embedding",
    )
    x = embedding(inputs["token_ids"]) + segment_embedding(inputs["segment_ids"])  # [B, T, D]
    x = keras.layers.LayerNormalization(
        epsilon=config["layer_norm_epsilon"], dtype=dtype, name="embeddings_layer_norm"
    )(x)
    x = keras.layers.Dropout(config["dropout"], dtype=dtype, name="embeddings_dropout")(x)
    for i in range(config["num_layers"]):
        x = TransformerBlock(
            num_heads=config["num_heads"],
            intermediate_dim=config["intermediate_dim"],
            dropout=config["dropout"],
            activation="gelu",  # BERT uses the exact (erf) GELU.
            layer_norm_epsilon=config["layer_norm_epsilon"],
            normalize_first=False,
            causal=False,
            dtype=dtype,
            name=f"transformer_layer_{i}",
        )(x, padding_mask=inputs["padding_mask"])
    sequence_output = x  # [B, T, D]
    # The pooled output is a tanh projection of the first ([CLS]) token.
    pooled_output = keras.layers.Dense(
        config["hidden_dim"],
        activation="tanh",
        kernel_initializer=initializer(),
        dtype=dtype,
        name="pooled_dense",
    )(sequence_output[:, 0, :])  # [B, D]
    return TaskModel(
        inputs=inputs,
        outputs={"sequence_output": sequence_output, "pooled_output": pooled_output},
        name=name,
        task="encoder",
        vocabulary_size=config["vocabulary_size"],
        max_sequence_length=config["max_sequence_length"],
        tokenizer=tokenizer,
        config=config,
    )


def encoder_config(model):
    """The encoder arguments a BERT model was built with: its `builder_config`.

    A BERT model saved before models recorded their builder configuration
    (keras_llm 0.1) has an empty one: its sizes are read once from its
    layers, with a `DeprecationWarning` (save it again to record them).

    Example:

    ```python
    import keras_llm
    from keras_llm.models.bert import encoder_config

    model = keras_llm.build_bert_classifier("bert_tiny", vocabulary_size=100, num_classes=2)
    assert encoder_config(model)["hidden_dim"] == 128
    ```
    """
    config = dict(model.builder_config)
    if config:
        return config
    warnings.warn(
        f"The BERT model {model.name!r} records no builder configuration (it was saved by "
        "keras_llm 0.1); its sizes are read from its layers. Save it again (`model.save`) to "
        "record them: this fallback goes in the next release.",
        DeprecationWarning,
        stacklevel=2,
    )
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    (embedding,) = [layer for layer in model.layers if isinstance(layer, TokenAndPositionEmbedding)]
    (segments,) = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    config = dict(
        vocabulary_size=model.vocabulary_size,
        num_layers=len(blocks),
        num_heads=blocks[0].num_heads,
        hidden_dim=embedding.hidden_dim,
        intermediate_dim=blocks[0].intermediate_dim,
        dropout=blocks[0].dropout,
        max_sequence_length=model.max_sequence_length,
        layer_norm_epsilon=blocks[0].layer_norm_epsilon,
        num_segments=segments.input_dim,
    )
    if model.task in ("classifier", "tagger"):
        config["num_classes"] = model.outputs[0].shape[-1]
    return config


def __getattr__(name):
    # The heads import this module: they are looked up on first use, not imported here.
    if name in _HEADS:
        from keras_llm.models import bert_heads

        return getattr(bert_heads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
