"""BERT: a bidirectional encoder (Devlin et al., 2019), its pre-trainer and classifier."""

import keras
from keras import ops

from keras_llm.layers import TokenAndPositionEmbedding, TransformerBlock
from keras_llm.models._config import ARCHITECTURE_ARGUMENTS, resolve_config, resolve_precision
from keras_llm.models.task_model import TaskModel
from keras_llm.training import compile_model

# The published BERT sizes (Devlin et al. 2019; the small ones from Turc et
# al. 2019, "Well-Read Students Learn Better"). The feed-forward network is
# always 4x the hidden width.
BERT_PRESETS = {
    name: dict(
        vocabulary_size=30522,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=4 * hidden,
        max_sequence_length=512,
        dropout=0.1,
    )
    for name, layers, hidden, heads in (
        ("bert_tiny", 2, 128, 2),
        ("bert_mini", 4, 256, 4),
        ("bert_small", 4, 512, 8),
        ("bert_medium", 8, 512, 8),
        ("bert_base", 12, 768, 12),
        ("bert_large", 24, 1024, 16),
    )
}

_BERT_DEFAULTS = dict(dropout=0.1, layer_norm_epsilon=1e-12, num_segments=2)

_ARGS_DOC = """
    Args:
        preset: A key of `keras_llm.models.BERT_PRESETS` (`"bert_tiny"`,
            `"bert_mini"`, `"bert_small"`, `"bert_medium"`, `"bert_base"`,
            `"bert_large"`), or None to give every size below.
        vocabulary_size: Number of token ids.
        num_layers: Number of Transformer blocks.
        num_heads: Attention heads per block.
        hidden_dim: Width of the hidden states.
        intermediate_dim: Width of the feed-forward hidden layer.
        dropout: Dropout rate (embeddings, attention, residual branches).
        max_sequence_length: Number of learned positions.
        layer_norm_epsilon: LayerNorm epsilon (1e-12 as in BERT).
        num_segments: Number of segment (token type) ids.
        precision: `"float32"`, `"mixed_bfloat16"` (TPUs, recent GPUs, CPUs
            with AVX-512 BF16) or `"mixed_float16"` (GPUs; the optimizer
            then scales the loss), or None for Keras's global dtype policy.
            Under mixed precision, weights stay float32 and matmuls run in
            the low precision; LayerNorm statistics, the attention softmax
            and the loss are computed in float32.
        name: The model's name.
"""


def _bert_graph(config, dtype, use_output_bias):
    """Inputs, the embedding layer, sequence and pooled outputs of a BERT encoder."""
    inputs = {
        key: keras.Input(shape=(None,), dtype="int32", name=key)
        for key in ("token_ids", "segment_ids", "padding_mask")
    }
    embedding = TokenAndPositionEmbedding(
        vocabulary_size=config["vocabulary_size"],
        max_sequence_length=config["max_sequence_length"],
        hidden_dim=config["hidden_dim"],
        use_output_bias=use_output_bias,
        dtype=dtype,
        name="embeddings",
    )
    segment_embedding = keras.layers.Embedding(
        config["num_segments"],
        config["hidden_dim"],
        embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype=dtype,
        name="segment_embedding",
    )
    x = embedding(inputs["token_ids"]) + segment_embedding(inputs["segment_ids"])
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
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype=dtype,
        name="pooled_dense",
    )(sequence_output[:, 0, :])
    return inputs, embedding, sequence_output, pooled_output


def _sizes(task, config):
    """What a BERT `TaskModel` records: its task, vocabulary and context."""
    return dict(
        task=task,
        vocabulary_size=config["vocabulary_size"],
        max_sequence_length=config["max_sequence_length"],
    )


def _resolve(builder, arguments):
    """The builder's config from its `locals()`: preset, defaults and overrides."""
    names = set(ARCHITECTURE_ARGUMENTS) | set(_BERT_DEFAULTS)
    overrides = {k: v for k, v in arguments.items() if k in names}
    return resolve_config(builder, BERT_PRESETS, arguments["preset"], overrides, _BERT_DEFAULTS)


def build_bert(
    preset=None,
    *,
    vocabulary_size=None,
    num_layers=None,
    num_heads=None,
    hidden_dim=None,
    intermediate_dim=None,
    dropout=None,
    max_sequence_length=None,
    layer_norm_epsilon=None,
    num_segments=None,
    precision=None,
    name="bert",
):
    """Builds a BERT encoder (the backbone, with no training objective).

    Token, segment and learned position embeddings, a LayerNorm, then
    `num_layers` post-norm bidirectional `TransformerBlock`s with the exact
    GELU. The backbone is returned uncompiled because it has no objective:
    train it through `build_bert_pretrainer` or `build_bert_classifier`, or
    put your own head on `sequence_output` / `pooled_output`.
    {args}
    Returns:
        A functional `keras.Model` with int32 inputs `token_ids`,
        `segment_ids` and `padding_mask` (`(batch_size, sequence_length)`)
        and a dict of outputs: `sequence_output` `(batch_size,
        sequence_length, hidden_dim)` and `pooled_output` `(batch_size,
        hidden_dim)` (tanh projection of the first token).

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert("bert_tiny", vocabulary_size=100)
    outputs = model({{
        "token_ids": np.array([[2, 5, 9, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }})
    assert outputs["sequence_output"].shape == (1, 4, 128)
    assert outputs["pooled_output"].shape == (1, 128)
    ```
    """
    config = _resolve("build_bert", locals())
    dtype = resolve_precision("build_bert", precision)
    inputs, _, sequence_output, pooled_output = _bert_graph(config, dtype, False)
    return TaskModel(
        inputs=inputs,
        outputs={"sequence_output": sequence_output, "pooled_output": pooled_output},
        name=name, **_sizes("encoder", config),
    )


def build_bert_pretrainer(
    preset=None,
    *,
    vocabulary_size=None,
    num_layers=None,
    num_heads=None,
    hidden_dim=None,
    intermediate_dim=None,
    dropout=None,
    max_sequence_length=None,
    layer_norm_epsilon=None,
    num_segments=None,
    precision=None,
    name="bert_pretrainer",
):
    """Builds BERT with its masked-LM and next-sentence heads, compiled.

    The masked-LM head gathers the hidden states at `mask_positions`, applies
    `Dense(hidden_dim, gelu)` and a LayerNorm, and projects to the vocabulary
    with the transposed token embedding (tied) plus a bias, as in BERT. The
    next-sentence head is `Dense(2)` on the pooled output. The model comes
    compiled with `keras_llm.compile_model(model, "bert_pretraining")`: train
    it on `(inputs, {{"mlm_logits": masked_ids, "nsp_logits": is_random_next}},
    {{"mlm_logits": mask_weights, "nsp_logits": ones}})`, where the masked-LM
    weights are 0 for padded prediction slots.
    {args}
    Returns:
        A functional `keras.Model` with the three BERT inputs plus
        `mask_positions` (int32 `(batch_size, num_predictions)`) and outputs
        `mlm_logits` `(batch_size, num_predictions, vocabulary_size)` and
        `nsp_logits` `(batch_size, 2)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert_pretrainer("bert_tiny", vocabulary_size=100)
    outputs = model({{
        "token_ids": np.array([[2, 5, 4, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
        "mask_positions": np.array([[2]], "int32"),
    }})
    assert outputs["mlm_logits"].shape == (1, 1, 100)
    assert outputs["nsp_logits"].shape == (1, 2)
    ```
    """
    config = _resolve("build_bert_pretrainer", locals())
    dtype = resolve_precision("build_bert_pretrainer", precision)
    inputs, embedding, sequence_output, pooled_output = _bert_graph(config, dtype, True)
    mask_positions = keras.Input(shape=(None,), dtype="int32", name="mask_positions")
    # [B, T, D] gathered at [B, P] -> [B, P, D]
    masked = ops.take_along_axis(sequence_output, mask_positions[:, :, None], axis=1)
    masked = keras.layers.Dense(
        config["hidden_dim"],
        activation="gelu",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype=dtype,
        name="mlm_dense",
    )(masked)
    masked = keras.layers.LayerNormalization(
        epsilon=config["layer_norm_epsilon"], dtype=dtype, name="mlm_layer_norm"
    )(masked)
    mlm_logits = embedding(masked, reverse=True)  # [B, P, V], tied + bias
    nsp_logits = keras.layers.Dense(
        2,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype=dtype,
        name="nsp_dense",
    )(pooled_output)
    model = TaskModel(
        inputs={**inputs, "mask_positions": mask_positions},
        outputs={"mlm_logits": mlm_logits, "nsp_logits": nsp_logits},
        name=name, **_sizes("masked_lm", config),
    )
    return compile_model(model)


def build_bert_classifier(
    preset=None,
    *,
    num_classes,
    vocabulary_size=None,
    num_layers=None,
    num_heads=None,
    hidden_dim=None,
    intermediate_dim=None,
    dropout=None,
    max_sequence_length=None,
    layer_norm_epsilon=None,
    num_segments=None,
    precision=None,
    name="bert_classifier",
):
    """Builds BERT with a sequence-classification head, compiled.

    Dropout then `Dense(num_classes)` on the pooled output. The model comes
    compiled with `keras_llm.compile_model(model, "classification")`: train
    it on `(inputs, integer_labels)`.

    num_classes is required (an int >= 2).
    {args}
    Returns:
        A functional `keras.Model` with the three BERT inputs and class
        logits `(batch_size, num_classes)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert_classifier("bert_tiny", num_classes=3, vocabulary_size=100)
    logits = model({{
        "token_ids": np.array([[2, 5, 9, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }})
    assert logits.shape == (1, 3)
    ```
    """
    _check_num_classes("build_bert_classifier", num_classes, 2)
    config = _resolve("build_bert_classifier", locals())
    dtype = resolve_precision("build_bert_classifier", precision)
    inputs, _, _, pooled_output = _bert_graph(config, dtype, False)
    x = keras.layers.Dropout(config["dropout"], dtype=dtype, name="classifier_dropout")(pooled_output)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype=dtype,
        name="logits",
    )(x)
    model = TaskModel(inputs=inputs, outputs=logits, name=name, **_sizes("classifier", config))
    return compile_model(model)


def _check_num_classes(builder, num_classes, minimum):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < minimum:
        raise ValueError(
            f"{builder}: `num_classes` must be an int >= {minimum}. "
            f"Received: num_classes={num_classes!r}"
        )


def build_bert_tagger(
    preset=None,
    *,
    num_classes,
    vocabulary_size=None,
    num_layers=None,
    num_heads=None,
    hidden_dim=None,
    intermediate_dim=None,
    dropout=None,
    max_sequence_length=None,
    layer_norm_epsilon=None,
    num_segments=None,
    precision=None,
    name="bert_tagger",
):
    """Builds BERT with a token-classification (tagging, e.g. NER) head, compiled.

    Dropout then `Dense(num_classes)` on every position of the sequence
    output, as Hugging Face's `BertForTokenClassification`. The model comes
    compiled with `keras_llm.compile_model(model, "token_tagging")`: train it
    on `keras_llm.data.token_tagging_dataset` batches `(inputs, tags,
    sample_weight)`, where only each word's first piece has weight 1 (the
    loss is the mean over weighted pieces).

    num_classes is required (an int >= 2): the number of tags.
    {args}
    Returns:
        A functional `keras.Model` with the three BERT inputs and tag logits
        `(batch_size, sequence_length, num_classes)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert_tagger("bert_tiny", num_classes=5, vocabulary_size=100)
    logits = model({{
        "token_ids": np.array([[2, 5, 9, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }})
    assert logits.shape == (1, 4, 5)
    ```
    """
    _check_num_classes("build_bert_tagger", num_classes, 2)
    config = _resolve("build_bert_tagger", locals())
    dtype = resolve_precision("build_bert_tagger", precision)
    inputs, _, sequence_output, _ = _bert_graph(config, dtype, False)
    x = keras.layers.Dropout(config["dropout"], dtype=dtype, name="tagger_dropout")(sequence_output)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype=dtype,
        name="tagger_logits",
    )(x)  # [B, T, C]
    model = TaskModel(inputs=inputs, outputs=logits, name=name, **_sizes("tagger", config))
    return compile_model(model)


def build_bert_question_answerer(
    preset=None,
    *,
    vocabulary_size=None,
    num_layers=None,
    num_heads=None,
    hidden_dim=None,
    intermediate_dim=None,
    dropout=None,
    max_sequence_length=None,
    layer_norm_epsilon=None,
    num_segments=None,
    precision=None,
    name="bert_question_answerer",
):
    """Builds BERT with an extractive question-answering head, compiled.

    `Dense(2)` on every position of the sequence output gives each token a
    start and an end logit, as Hugging Face's `BertForQuestionAnswering`
    (and BERT's SQuAD fine-tuning, Devlin et al. 2019, section 4.2). Inputs
    are `[CLS] question [SEP] context [SEP]` with segment ids 0 then 1. The
    logits are not masked: a span decoder keeps to the context's tokens. The
    model comes compiled with `keras_llm.compile_model(model,
    "question_answering")`: train it on `(inputs, {{"start_logits": start,
    "end_logits": end}})` token positions; the loss is the mean of the two
    cross-entropies, as in Hugging Face.
    {args}
    Returns:
        A functional `keras.Model` with the three BERT inputs and a dict of
        outputs `start_logits` and `end_logits`, `(batch_size,
        sequence_length)` each.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert_question_answerer("bert_tiny", vocabulary_size=100)
    outputs = model({{
        "token_ids": np.array([[2, 5, 3, 9, 8, 3]], "int32"),
        "segment_ids": np.array([[0, 0, 0, 1, 1, 1]], "int32"),
        "padding_mask": np.ones((1, 6), "int32"),
    }})
    assert outputs["start_logits"].shape == (1, 6)
    assert outputs["end_logits"].shape == (1, 6)
    ```
    """
    config = _resolve("build_bert_question_answerer", locals())
    dtype = resolve_precision("build_bert_question_answerer", precision)
    inputs, _, sequence_output, _ = _bert_graph(config, dtype, False)
    logits = keras.layers.Dense(
        2,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype=dtype,
        name="qa_logits",
    )(sequence_output)  # [B, T, 2]
    outputs = {
        "start_logits": keras.layers.Identity(name="start_logits")(logits[..., 0]),
        "end_logits": keras.layers.Identity(name="end_logits")(logits[..., 1]),
    }
    model = TaskModel(inputs=inputs, outputs=outputs, name=name, **_sizes("question_answerer", config))
    return compile_model(model)


for _builder in (
    build_bert,
    build_bert_pretrainer,
    build_bert_classifier,
    build_bert_tagger,
    build_bert_question_answerer,
):
    _builder.__doc__ = _builder.__doc__.replace("{args}", _ARGS_DOC).replace("{{", "{").replace("}}", "}")
