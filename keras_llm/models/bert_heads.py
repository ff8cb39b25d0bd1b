"""BERT's heads: pre-training, sequence classification, tagging and question answering.

Each head builder puts its layers on a BERT encoder: one it builds from a
preset and the encoder arguments of `build_bert`, or one given as `encoder=`
(from `build_bert` or `keras_llm.from_pretrained(path, task="backbone")`,
trained or not). The head model is made of the encoder's own layers, so it
shares their weights; it records the encoder's arguments plus its own in
`model.builder_config`, and carries the encoder's tokenizer unless given
another.
"""

import keras
from keras import ops

from keras_llm._checks import check_int
from keras_llm._graph_checks import check_in_range
from keras_llm.layers import TokenAndPositionEmbedding
from keras_llm.models.bert import ENCODER_ARGUMENTS, encoder_config, encoder_for
from keras_llm.models.task_model import TaskModel
from keras_llm.training import compile_model


@keras.saving.register_keras_serializable(package="keras_llm", name="BertMaskedPositions")
class MaskedPositions(keras.layers.Layer):
    """The hidden states at `mask_positions`: `[B, T, D]` gathered at `[B, P]` -> `[B, P, D]`.

    A position outside `[0, sequence_length)` (a negative one would wrap to
    the end) is an error naming `mask_positions` and the allowed range.
    """

    def call(self, sequence_output, mask_positions):
        length = ops.shape(sequence_output)[1]
        mask_positions = check_in_range(
            mask_positions, "mask_positions", length, what="positions", unit="position(s)",
            where=" (the positions of token_ids)",
        )
        return ops.take_along_axis(sequence_output, mask_positions[:, :, None], axis=1)

    def compute_output_shape(self, sequence_output_shape, mask_positions_shape):
        return (sequence_output_shape[0], mask_positions_shape[1], sequence_output_shape[2])

    def get_config(self):
        # Nothing beyond name and dtype (Keras cannot derive a config from a policy object).
        return super().get_config()


@keras.saving.register_keras_serializable(package="keras_llm", name="BertOutputBias")
class OutputBias(keras.layers.Layer):
    """A learned bias over the last axis: the masked-LM head's per-token bias (BERT's `cls.predictions.bias`)."""

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(input_shape[-1],), initializer="zeros")

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # Nothing beyond name and dtype (Keras cannot derive a config from a policy object).
        return super().get_config()


def _encoder(builder, encoder, preset, tokenizer, encoder_arguments):
    """What a head goes on: the encoder, its builder configuration and its layers' dtype policy.

    The encoder is `encoder`, checked, or one built from the preset and
    arguments; the head's layers follow its dtype policy.
    """
    unknown = sorted(set(encoder_arguments) - set(ENCODER_ARGUMENTS))
    if unknown:
        raise TypeError(
            f"{builder}: unexpected keyword argument(s) {', '.join(unknown)}; it takes `encoder=`, "
            f"or `preset` and the encoder arguments of build_bert ({', '.join(ENCODER_ARGUMENTS)})."
        )
    if encoder is None:
        sizes = {k: v for k, v in encoder_arguments.items() if k != "precision"}
        encoder = encoder_for(builder, preset, sizes, precision=encoder_arguments.get("precision"),
                              tokenizer=tokenizer)
    else:
        _check_encoder(builder, encoder, preset, encoder_arguments)
    policy = next(layer.dtype_policy for layer in encoder.layers if layer.weights)
    return encoder, encoder_config(encoder), policy


def _check_encoder(builder, encoder, preset, encoder_arguments):
    """Errors unless `encoder` is a BERT encoder given without a preset or sizes of its own."""
    if not isinstance(encoder, keras.Model) or getattr(encoder, "task", None) != "encoder":
        raise ValueError(
            f"{builder}: `encoder` must be a BERT encoder (a model of keras_llm.build_bert, or "
            "keras_llm.from_pretrained(path, task='backbone')). Received: encoder="
            + (f"{encoder.name!r} with task={getattr(encoder, 'task', None)!r}"
               if isinstance(encoder, keras.Model) else repr(encoder))
        )
    given = {k: v for k, v in encoder_arguments.items() if v is not None}
    if preset is not None:
        given = {"preset": preset, **given}
    if given:
        raise ValueError(
            f"{builder}: with `encoder=`, the sizes are the encoder's; leave out "
            f"{', '.join(given)}. Received: "
            + ", ".join(f"{k}={v!r}" for k, v in given.items())
        )


def _head_model(encoder, inputs, outputs, task, config, tokenizer, name):
    tokenizer = encoder.tokenizer if tokenizer is None else tokenizer
    return TaskModel(
        inputs=inputs, outputs=outputs, name=name, task=task,
        vocabulary_size=config["vocabulary_size"],
        max_sequence_length=config["max_sequence_length"],
        tokenizer=tokenizer, config=config,
    )


def _initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _class_logits_head(
    builder, task, output, layer_names, num_classes, encoder, preset, tokenizer, name,
    encoder_arguments,
):
    """Dropout then `Dense(num_classes)` on the encoder's `output`, compiled for `task`.

    The classifier's head on `pooled_output` (logits `[B, C]`) and the
    tagger's on `sequence_output` (`[B, T, C]`); `layer_names` names the
    dropout and the dense layer. The dropout rate is the encoder's.
    """
    check_int("num_classes", num_classes, 2, where=builder)
    encoder, config, dtype = _encoder(builder, encoder, preset, tokenizer, encoder_arguments)
    config = {**config, "num_classes": num_classes}
    dropout_name, logits_name = layer_names
    x = keras.layers.Dropout(config["dropout"], dtype=dtype, name=dropout_name)(
        encoder.output[output]
    )
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=_initializer(), dtype=dtype, name=logits_name
    )(x)
    return compile_model(_head_model(encoder, encoder.input, logits, task, config, tokenizer, name))


def build_bert_pretrainer(
    preset=None, *, encoder=None, tokenizer=None, name="bert_pretrainer", **encoder_arguments
):
    """Builds BERT with its masked-LM and next-sentence heads, compiled.

    The masked-LM head gathers the hidden states at `mask_positions`, applies
    `Dense(hidden_dim, gelu)` and a LayerNorm, and projects to the vocabulary
    with the transposed token embedding (tied) plus a bias, as in BERT. The
    next-sentence head is `Dense(2)` on the pooled output. The model comes
    compiled with `keras_llm.compile_model(model, "bert_pretraining")`: train
    it on `(inputs, {"mlm_logits": masked_ids, "nsp_logits": is_random_next},
    {"mlm_logits": mask_weights, "nsp_logits": ones})`, where the masked-LM
    weights are 0 for padded prediction slots.

    Args:
        preset: A key of `keras_llm.models.BERT_PRESETS`, or None; as for
            `build_bert`. Leave it out with `encoder=`.
        encoder: A BERT encoder to put the heads on (from `build_bert` or
            `from_pretrained(..., task="backbone")`), or None to build one
            from `preset` and `encoder_arguments`. The model shares its
            layers and weights.
        tokenizer: The tokenizer the model carries (`model.tokenizer`; it must
            have exactly the model's ids, which the masked-LM head outputs);
            `vocabulary_size` defaults to its size. Default: the encoder's.
        name: The model's name.
        **encoder_arguments: Without `encoder`, the encoder arguments of
            `build_bert` (`vocabulary_size`, `num_layers`, `num_heads`,
            `hidden_dim`, `intermediate_dim`, `dropout`,
            `max_sequence_length`, `layer_norm_epsilon`, `num_segments`,
            `precision`), over the preset's.

    Returns:
        A compiled `TaskModel` (task `"masked_lm"`) with the three BERT
        inputs plus `mask_positions` (int32 `(batch_size, num_predictions)`,
        each in `[0, sequence_length)`) and outputs `mlm_logits`
        `(batch_size, num_predictions, vocabulary_size)` and `nsp_logits`
        `(batch_size, 2)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert_pretrainer("bert_tiny", vocabulary_size=100)
    outputs = model({
        "token_ids": np.array([[2, 5, 4, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
        "mask_positions": np.array([[2]], "int32"),
    })
    assert outputs["mlm_logits"].shape == (1, 1, 100)
    assert outputs["nsp_logits"].shape == (1, 2)
    ```
    """
    builder = "build_bert_pretrainer"
    encoder, config, dtype = _encoder(builder, encoder, preset, tokenizer, encoder_arguments)
    (embedding,) = [layer for layer in encoder.layers if isinstance(layer, TokenAndPositionEmbedding)]
    mask_positions = keras.Input(shape=(None,), dtype="int32", name="mask_positions")
    masked = MaskedPositions(dtype=dtype, name="mlm_gather")(
        encoder.output["sequence_output"], mask_positions
    )  # [B, P, D]
    masked = keras.layers.Dense(
        config["hidden_dim"], activation="gelu", kernel_initializer=_initializer(), dtype=dtype,
        name="mlm_dense",
    )(masked)
    masked = keras.layers.LayerNormalization(
        epsilon=config["layer_norm_epsilon"], dtype=dtype, name="mlm_layer_norm"
    )(masked)
    # [B, P, V]: the transposed token embedding (tied), plus a bias of the head's own.
    mlm_logits = OutputBias(dtype=dtype, name="mlm_output_bias")(embedding(masked, reverse=True))
    nsp_logits = keras.layers.Dense(
        2, kernel_initializer=_initializer(), dtype=dtype, name="nsp_dense"
    )(encoder.output["pooled_output"])
    model = _head_model(
        encoder, {**encoder.input, "mask_positions": mask_positions},
        {"mlm_logits": mlm_logits, "nsp_logits": nsp_logits}, "masked_lm", config, tokenizer, name,
    )
    return compile_model(model)


def build_bert_classifier(
    preset=None, *, num_classes, encoder=None, tokenizer=None, name="bert_classifier",
    **encoder_arguments,
):
    """Builds BERT with a sequence-classification head, compiled.

    Dropout then `Dense(num_classes)` on the pooled output, as Hugging
    Face's `BertForSequenceClassification`. The model comes compiled with
    `keras_llm.compile_model(model, "classification")`: train it on
    `(inputs, integer_labels)`.

    Args:
        preset: A key of `keras_llm.models.BERT_PRESETS`, or None; as for
            `build_bert`. Leave it out with `encoder=`.
        num_classes: Number of classes, an int >= 2.
        encoder: A BERT encoder to put the head on (from `build_bert` or
            `from_pretrained(..., task="backbone")`), or None to build one
            from `preset` and `encoder_arguments`. The model shares its
            layers and weights; the head's dropout is the encoder's rate.
        tokenizer: The tokenizer the model carries (`model.tokenizer`);
            `vocabulary_size` defaults to its size. Default: the encoder's.
        name: The model's name.
        **encoder_arguments: Without `encoder`, the encoder arguments of
            `build_bert`, over the preset's; as for `build_bert_pretrainer`.

    Returns:
        A compiled `TaskModel` (task `"classifier"`) with the three BERT
        inputs and class logits `(batch_size, num_classes)`; its
        `builder_config` is the encoder's plus `num_classes`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    inputs = {
        "token_ids": np.array([[2, 5, 9, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }
    model = keras_llm.build_bert_classifier("bert_tiny", num_classes=3, vocabulary_size=100)
    assert model(inputs).shape == (1, 3)

    encoder = keras_llm.build_bert("bert_tiny", vocabulary_size=100)
    on_encoder = keras_llm.build_bert_classifier(encoder=encoder, num_classes=2)
    assert on_encoder(inputs).shape == (1, 2)
    assert on_encoder.builder_config["num_classes"] == 2
    ```
    """
    return _class_logits_head(
        "build_bert_classifier", "classifier", "pooled_output", ("classifier_dropout", "logits"),
        num_classes, encoder, preset, tokenizer, name, encoder_arguments,
    )


def build_bert_tagger(
    preset=None, *, num_classes, encoder=None, tokenizer=None, name="bert_tagger",
    **encoder_arguments,
):
    """Builds BERT with a token-classification (tagging, e.g. NER) head, compiled.

    Dropout then `Dense(num_classes)` on every position of the sequence
    output, as Hugging Face's `BertForTokenClassification`. The model comes
    compiled with `keras_llm.compile_model(model, "token_tagging")`: train it
    on `keras_llm.data.token_tagging_dataset` batches `(inputs, tags,
    sample_weight)`, where only each word's first piece has weight 1 (the
    loss is the mean over weighted pieces).

    Args:
        preset: A key of `keras_llm.models.BERT_PRESETS`, or None; as for
            `build_bert`. Leave it out with `encoder=`.
        num_classes: Number of tags, an int >= 2.
        encoder: A BERT encoder to put the head on, or None to build one
            from `preset` and `encoder_arguments`; as for
            `build_bert_classifier`.
        tokenizer: The tokenizer the model carries; as for
            `build_bert_classifier`.
        name: The model's name.
        **encoder_arguments: Without `encoder`, the encoder arguments of
            `build_bert`, over the preset's.

    Returns:
        A compiled `TaskModel` (task `"tagger"`) with the three BERT inputs
        and tag logits `(batch_size, sequence_length, num_classes)`.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert_tagger("bert_tiny", num_classes=5, vocabulary_size=100)
    logits = model({
        "token_ids": np.array([[2, 5, 9, 3]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    })
    assert logits.shape == (1, 4, 5)
    ```
    """
    return _class_logits_head(
        "build_bert_tagger", "tagger", "sequence_output", ("tagger_dropout", "tagger_logits"),
        num_classes, encoder, preset, tokenizer, name, encoder_arguments,
    )


def build_bert_question_answerer(
    preset=None, *, encoder=None, tokenizer=None, name="bert_question_answerer",
    **encoder_arguments,
):
    """Builds BERT with an extractive question-answering head, compiled.

    `Dense(2)` on every position of the sequence output gives each token a
    start and an end logit, as Hugging Face's `BertForQuestionAnswering`
    (and BERT's SQuAD fine-tuning, Devlin et al. 2019, section 4.2). Inputs
    are `[CLS] question [SEP] context [SEP]` with segment ids 0 then 1. The
    logits are not masked: a span decoder keeps to the context's tokens. The
    model comes compiled with `keras_llm.compile_model(model,
    "question_answering")`: train it on `(inputs, {"start_logits": start,
    "end_logits": end})` token positions; the loss is the mean of the two
    cross-entropies, as in Hugging Face.

    Args:
        preset, encoder, tokenizer, name, **encoder_arguments: As for
            `build_bert_tagger`: the head goes on `encoder`, or on one built
            from `preset` and `encoder_arguments`.

    Returns:
        A compiled `TaskModel` (task `"question_answerer"`) with the three
        BERT inputs and a dict of outputs `start_logits` and `end_logits`,
        `(batch_size, sequence_length)` each.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_bert_question_answerer("bert_tiny", vocabulary_size=100)
    outputs = model({
        "token_ids": np.array([[2, 5, 3, 9, 8, 3]], "int32"),
        "segment_ids": np.array([[0, 0, 0, 1, 1, 1]], "int32"),
        "padding_mask": np.ones((1, 6), "int32"),
    })
    assert outputs["start_logits"].shape == (1, 6)
    assert outputs["end_logits"].shape == (1, 6)
    ```
    """
    builder = "build_bert_question_answerer"
    encoder, config, dtype = _encoder(builder, encoder, preset, tokenizer, encoder_arguments)
    logits = keras.layers.Dense(
        2, kernel_initializer=_initializer(), dtype=dtype, name="qa_logits"
    )(encoder.output["sequence_output"])  # [B, T, 2]
    outputs = {
        "start_logits": keras.layers.Identity(name="start_logits")(logits[..., 0]),
        "end_logits": keras.layers.Identity(name="end_logits")(logits[..., 1]),
    }
    return compile_model(
        _head_model(encoder, encoder.input, outputs, "question_answerer", config, tokenizer, name)
    )
