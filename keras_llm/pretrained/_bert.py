"""BERT checkpoints (`model_type` "bert"): config.json <-> builder arguments, tensors <-> variables.

Covers Hugging Face's `BertModel` and its heads, and every checkpoint with
BERT's layout: MiniLM, and sentence-transformers' files, whose names lack
the `bert.` prefix. RoBERTa, DistilBERT and ELECTRA have other model types
(and RoBERTa other position ids), and are refused by `model_type`.
"""

import re

from keras_llm.models import (
    build_bert,
    build_bert_classifier,
    build_bert_pretrainer,
    build_bert_question_answerer,
    build_bert_tagger,
)
from keras_llm.pretrained._config import ConfigReader
from keras_llm.pretrained._tensors import stored, transposed

NAME = "BERT"
MODEL_TYPE = "bert"
# Hugging Face's head models keep the encoder under `bert.`; `BertModel`
# and sentence-transformers' files have it at the top.
PREFIX = "bert."
PARTS = ("body", "pooler", "mlm", "nsp", "classifier", "tagger", "qa")
BASE_PARTS = ("body", "pooler")  # the base model's: prefixed in head architectures

# Hugging Face architecture: (the task it is, the parts its file has).
ARCHITECTURES = {
    "BertModel": ("backbone", ("body", "pooler")),
    "BertForMaskedLM": ("masked_lm", ("body", "mlm")),
    "BertForPreTraining": ("masked_lm", ("body", "pooler", "mlm", "nsp")),
    "BertForSequenceClassification": ("classify", ("body", "pooler", "classifier")),
    "BertForTokenClassification": ("tag", ("body", "tagger")),
    "BertForQuestionAnswering": ("qa", ("body", "qa")),
}
BASE_ARCHITECTURE = "BertModel"

# Task: (the builder, the parts of its model, the architecture it exports as).
TASKS = {
    "backbone": (build_bert, ("body", "pooler"), "BertModel"),
    "masked_lm": (build_bert_pretrainer, ("body", "pooler", "mlm", "nsp"), "BertForPreTraining"),
    "classify": (build_bert_classifier, ("body", "pooler", "classifier"),
                 "BertForSequenceClassification"),
    "tag": (build_bert_tagger, ("body", "tagger"), "BertForTokenClassification"),
    "qa": (build_bert_question_answerer, ("body", "qa"), "BertForQuestionAnswering"),
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
    """The builder's size arguments from `config`; refuses what the builders cannot compute."""
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


def _layer_norm(name, part, layer):
    return [stored(f"{name}.weight", part, f"{layer}/gamma"),
            stored(f"{name}.bias", part, f"{layer}/beta")]


def _linear(name, part, layer):
    return [transposed(f"{name}.weight", part, f"{layer}/kernel"),
            stored(f"{name}.bias", part, f"{layer}/bias")]


def tensors(arguments):
    """Every tensor of every part, for the builder `arguments`' `num_layers` blocks."""
    num_layers = arguments["num_layers"]
    table = [
        stored("embeddings.word_embeddings.weight", "body",
               "embeddings/token_embedding/embeddings"),
        stored("embeddings.position_embeddings.weight", "body",
               "embeddings/position_embedding/embeddings"),
        stored("embeddings.token_type_embeddings.weight", "body", "segment_embedding/embeddings"),
        *_layer_norm("embeddings.LayerNorm", "body", "embeddings_layer_norm"),
    ]
    for i in range(num_layers):
        hf, block = f"encoder.layer.{i}", f"transformer_layer_{i}"
        for projection in ("query", "key", "value"):
            table += _linear(f"{hf}.attention.self.{projection}", "body",
                             f"{block}/self_attention_{projection}")
        table += [
            *_linear(f"{hf}.attention.output.dense", "body", f"{block}/self_attention_output"),
            *_layer_norm(f"{hf}.attention.output.LayerNorm", "body",
                         f"{block}/self_attention_layer_norm"),
            *_linear(f"{hf}.intermediate.dense", "body", f"{block}/feedforward_intermediate_dense"),
            *_linear(f"{hf}.output.dense", "body", f"{block}/feedforward_output_dense"),
            *_layer_norm(f"{hf}.output.LayerNorm", "body", f"{block}/feedforward_layer_norm"),
        ]
    return table + [
        *_linear("pooler.dense", "pooler", "pooled_dense"),
        *_linear("cls.predictions.transform.dense", "mlm", "mlm_dense"),
        *_layer_norm("cls.predictions.transform.LayerNorm", "mlm", "mlm_layer_norm"),
        stored("cls.predictions.bias", "mlm", "embeddings/output_bias"),
        *_linear("cls.seq_relationship", "nsp", "nsp_dense"),
        *_linear("classifier", "classifier", "logits"),
        *_linear("classifier", "tagger", "tagger_logits"),
        *_linear("qa_outputs", "qa", "qa_logits"),
    ]


# The variable only each task's head has: how `describe` tells the models apart.
_HEAD_VARIABLES = {
    "masked_lm": "mlm_dense/kernel",
    "classify": "logits/kernel",
    "tag": "tagger_logits/kernel",
    "qa": "qa_logits/kernel",
}


def describe(model):
    """(task, builder arguments, num_classes) of a keras_llm BERT, or None for another model.

    The sizes come from the variables' shapes, the rates from the first
    block; `hugging_face.save_pretrained` then rebuilds the model from them
    and compares, so a model that differs anywhere is refused.
    """
    shapes = {v.path: tuple(v.shape) for v in model.weights}
    if "segment_embedding/embeddings" not in shapes:
        return None
    # A model with several heads is no builder's: the comparison with the
    # rebuilt model refuses it.
    task = next((task for task, path in _HEAD_VARIABLES.items() if path in shapes), "backbone")
    num_layers = 0
    while f"transformer_layer_{num_layers}/self_attention_query/kernel" in shapes:
        num_layers += 1
    if num_layers == 0 or "embeddings/token_embedding/embeddings" not in shapes:
        return None
    block = model.get_layer("transformer_layer_0")
    vocabulary_size, hidden_dim = shapes["embeddings/token_embedding/embeddings"]
    arguments = dict(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=block.num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=shapes["transformer_layer_0/feedforward_intermediate_dense/kernel"][1],
        max_sequence_length=shapes["embeddings/position_embedding/embeddings"][0],
        num_segments=shapes["segment_embedding/embeddings"][0],
        layer_norm_epsilon=block.layer_norm_epsilon,
        dropout=block.dropout,
    )
    num_classes = shapes[_HEAD_VARIABLES[task]][-1] if task in ("classify", "tag") else None
    return task, arguments, num_classes


def config(task, arguments, tokenizer):
    """Hugging Face's `config.json` for a model `describe` described."""
    return {
        "architectures": [TASKS[task][2]],
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

