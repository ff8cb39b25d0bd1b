"""BERT checkpoints (`model_type` "bert"): config.json <-> builder arguments, tensors <-> variables.

Covers Hugging Face's `BertModel` and its heads, and every checkpoint with
BERT's layout: MiniLM, and sentence-transformers' files, whose names lack
the `bert.` prefix. RoBERTa, DistilBERT and ELECTRA have other model types
(and RoBERTa other position ids), and are refused by `model_type`.
"""

import re

from keras_llm.models.bert import encoder_config
from keras_llm.pretrained._config import ConfigReader
from keras_llm.pretrained._tensors import layer_norm, linear, stored

NAME = "BERT"
MODEL_TYPE = "bert"
# Hugging Face's head models keep the encoder under `bert.`; `BertModel`
# and sentence-transformers' files have it at the top.
PREFIX = "bert."
PARTS = ("body", "pooler", "mlm", "nsp", "classifier", "tagger", "qa")
BASE_PARTS = ("body", "pooler")  # the base model's: prefixed in head architectures

# Hugging Face architecture: the parts its file has. Which keras_llm task each
# architecture is, and which one a task writes (the first it lists), is the
# registry's (`keras_llm.models.registry`, `hugging_face`).
FILE_PARTS = {
    "BertModel": ("body", "pooler"),
    "BertForMaskedLM": ("body", "mlm"),
    "BertForPreTraining": ("body", "pooler", "mlm", "nsp"),
    "BertForSequenceClassification": ("body", "pooler", "classifier"),
    "BertForTokenClassification": ("body", "tagger"),
    "BertForQuestionAnswering": ("body", "qa"),
}
BASE_ARCHITECTURE = "BertModel"

# keras_llm task (the registry's name): the parts of its model.
TASK_PARTS = {
    "encoder": ("body", "pooler"),
    "masked_lm": ("body", "pooler", "mlm", "nsp"),
    "classifier": ("body", "pooler", "classifier"),
    "tagger": ("body", "tagger"),
    "question_answerer": ("body", "qa"),
}

# Parts whose tensor names say what they are: loaded from any checkpoint
# that has them (bert-base-uncased is a BertForMaskedLM whose file also
# holds the pooler and the next-sentence head). The classifier and the
# tagger share the names `classifier.*`: only the architecture tells them
# apart, so they load only from a checkpoint of their own architecture.
NAMED_PARTS = ("pooler", "mlm", "nsp")

# Tensors Hugging Face itself skips: position and segment id buffers, and
# the masked-LM decoder's copies of the word embeddings and of
# `cls.predictions.bias`, which it ties.
IGNORED = re.compile(
    r"embeddings\.(position_ids|token_type_ids)|cls\.predictions\.decoder\.(weight|bias)"
)
IGNORED_DOC = (
    "`embeddings.position_ids` and `embeddings.token_type_ids` (buffers), "
    "`cls.predictions.decoder.weight` and `.bias` (tied copies of the word embeddings "
    "and of `cls.predictions.bias`)"
)


def arguments(config, where, task):
    """The builder's size arguments from `config` for `task` (a registry name); refuses what the builders cannot compute."""
    reader = ConfigReader(config, where)
    reader.expect("hidden_act", ("gelu",), "gelu",
                  "keras_llm's BERT uses the exact (erf) GELU, Hugging Face's \"gelu\"")
    reader.expect("position_embedding_type", ("absolute",), "absolute",
                  "keras_llm's BERT learns absolute position embeddings")
    reader.expect("is_decoder", (False,), False,
                  "keras_llm's BERT is a bidirectional encoder, with no causal mask")
    reader.expect("add_cross_attention", (False,), False,
                  "keras_llm's BERT has no cross-attention")
    if task == "masked_lm":
        reader.expect("tie_word_embeddings", (True,), True,
                      "keras_llm's masked-LM head projects with the word embeddings (tied)")
    reader.divisible("hidden_size", "num_attention_heads")
    return dict(
        vocabulary_size=reader.size("vocab_size"),
        num_layers=reader.size("num_hidden_layers"),
        num_heads=reader.size("num_attention_heads"),
        hidden_dim=reader.size("hidden_size"),
        intermediate_dim=reader.size("intermediate_size"),
        max_sequence_length=reader.size("max_position_embeddings"),
        num_segments=reader.size("type_vocab_size", 2),
        layer_norm_epsilon=reader.epsilon("layer_norm_eps", 1e-12),
        # One rate for all dropouts: Hugging Face's attention dropout
        # (attention_probs_dropout_prob) is the same 0.1 in every BERT.
        dropout=reader.rate("hidden_dropout_prob", 0.1),
    )


def tensors(arguments):
    """Every tensor of every part, for the builder `arguments`' `num_layers` blocks."""
    num_layers = arguments["num_layers"]
    table = [
        stored("embeddings.word_embeddings.weight", "body",
               "embeddings/token_embedding/embeddings"),
        stored("embeddings.position_embeddings.weight", "body",
               "embeddings/position_embedding/embeddings"),
        stored("embeddings.token_type_embeddings.weight", "body", "segment_embedding/embeddings"),
        *layer_norm("embeddings.LayerNorm", "body", "embeddings_layer_norm"),
    ]
    for i in range(num_layers):
        hf, block = f"encoder.layer.{i}", f"transformer_layer_{i}"
        for projection in ("query", "key", "value"):
            table += linear(f"{hf}.attention.self.{projection}", "body",
                            f"{block}/self_attention_{projection}")
        table += [
            *linear(f"{hf}.attention.output.dense", "body", f"{block}/self_attention_output"),
            *layer_norm(f"{hf}.attention.output.LayerNorm", "body",
                        f"{block}/self_attention_layer_norm"),
            *linear(f"{hf}.intermediate.dense", "body", f"{block}/feedforward_intermediate_dense"),
            *linear(f"{hf}.output.dense", "body", f"{block}/feedforward_output_dense"),
            *layer_norm(f"{hf}.output.LayerNorm", "body", f"{block}/feedforward_layer_norm"),
        ]
    return table + [
        *linear("pooler.dense", "pooler", "pooled_dense"),
        *linear("cls.predictions.transform.dense", "mlm", "mlm_dense"),
        *layer_norm("cls.predictions.transform.LayerNorm", "mlm", "mlm_layer_norm"),
        stored("cls.predictions.bias", "mlm", "mlm_output_bias/bias"),
        *linear("cls.seq_relationship", "nsp", "nsp_dense"),
        *linear("classifier", "classifier", "logits"),
        *linear("classifier", "tagger", "tagger_logits"),
        *linear("qa_outputs", "qa", "qa_logits"),
    ]


def save_arguments(model):
    """The builder arguments of a BERT model: its builder configuration (`encoder_config`)."""
    return encoder_config(model)


def config(architecture, arguments, tokenizer):
    """Hugging Face's `config.json` of `architecture` for a model of the builder `arguments`."""
    return {
        "architectures": [architecture],
        "model_type": MODEL_TYPE,
        "vocab_size": arguments["vocabulary_size"],
        "hidden_size": arguments["hidden_dim"],
        "num_hidden_layers": arguments["num_layers"],
        "num_attention_heads": arguments["num_heads"],
        "intermediate_size": arguments["intermediate_dim"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": arguments["dropout"],
        "attention_probs_dropout_prob": arguments["dropout"],
        "max_position_embeddings": arguments["max_sequence_length"],
        "type_vocab_size": arguments["num_segments"],
        "layer_norm_eps": arguments["layer_norm_epsilon"],
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
        "pad_token_id": getattr(tokenizer, "pad_token_id", None) or 0,
        "tie_word_embeddings": True,
        "dtype": "float32",
    }

