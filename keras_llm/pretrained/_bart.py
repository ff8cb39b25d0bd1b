"""BART checkpoints (model_type "bart"): config.json <-> `build_seq2seq` arguments, tensors <-> variables.

Covers Hugging Face's `BartModel` and `BartForConditionalGeneration` (the
same tensors: the language-model head is the transposed shared embedding).
BART is the Transformer of `build_seq2seq` with learned positions, a
LayerNorm after each side's embeddings, the exact GELU and unscaled
embeddings (`scale_embedding=False` in the released checkpoints), all of
which the builder takes as arguments.
"""

import re

import numpy as np

from keras_llm.pretrained._config import ConfigReader
from keras_llm.pretrained._tensors import Tensor, layer_norm, linear, stored

NAME = "BART"
MODEL_TYPE = "bart"
PREFIX = "model."  # BartForConditionalGeneration's; BartModel has its tensors at the top
PARTS = ("body",)
BASE_PARTS = ("body",)
# Both architectures have the same tensors: the registry's `seq2seq_lm`, which
# writes BartForConditionalGeneration.
FILE_PARTS = {"BartModel": ("body",), "BartForConditionalGeneration": ("body",)}
BASE_ARCHITECTURE = "BartModel"
TASK_PARTS = {"seq2seq_lm": ("body",)}
NAMED_PARTS = ()

# Tied copies of `shared.weight` that some files also store, and the
# logits bias, which `check_tensors` requires to be zero.
IGNORED = re.compile(r"(encoder|decoder)\.embed_tokens\.weight|lm_head\.weight|final_logits_bias")
IGNORED_DOC = (
    "`encoder.embed_tokens.weight`, `decoder.embed_tokens.weight` and `lm_head.weight` (tied "
    "copies of `shared.weight`), `final_logits_bias` (checked to be zero)"
)

# BART's learned positions start at row 2 of its table (`BartLearnedPositionalEmbedding`'s
# offset, a fairseq legacy): the rows keras_llm uses are the table from row 2 on.
_POSITION_OFFSET = 2


def arguments(config, where, task):
    """`build_seq2seq`'s arguments from `config`; refuses what the builder cannot compute."""
    reader = ConfigReader(config, where)
    reader.expect("activation_function", ("gelu",), "gelu",
                  "keras_llm's BART uses the exact (erf) GELU")
    reader.expect("tie_word_embeddings", (True,), True,
                  "keras_llm's encoder-decoder projects to the vocabulary with the shared table")
    reader.expect("add_bias_logits", (False,), False, "keras_llm's logits have no bias")
    reader.expect("add_final_layer_norm", (False,), False,
                  "keras_llm's post-norm stacks have no final LayerNorm")
    reader.expect("normalize_before", (False,), False, "BART is post-norm")
    for encoder, decoder in (("encoder_attention_heads", "decoder_attention_heads"),
                             ("encoder_ffn_dim", "decoder_ffn_dim")):
        if reader.size(encoder) != reader.size(decoder):
            raise ValueError(
                f"{where}: {encoder}={config[encoder]} and {decoder}={config[decoder]} differ; "
                "keras_llm's encoder and decoder blocks have the same sizes."
            )
    reader.divisible("d_model", "encoder_attention_heads")
    scale = config.get("scale_embedding", False)
    if not isinstance(scale, bool):
        raise ValueError(f"{where}: scale_embedding must be true or false. Received: {scale!r}")
    return dict(
        vocabulary_size=reader.size("vocab_size"),
        num_layers=reader.size("encoder_layers"),
        num_decoder_layers=reader.size("decoder_layers"),
        num_heads=reader.size("encoder_attention_heads"),
        hidden_dim=reader.size("d_model"),
        intermediate_dim=reader.size("encoder_ffn_dim"),
        max_sequence_length=reader.size("max_position_embeddings"),
        # One rate for all dropouts, as the other families (BART's dropout is 0.1).
        dropout=reader.rate("dropout", 0.1),
        layer_norm_epsilon=1e-5,  # torch.nn.LayerNorm's, which BART does not configure
        position_embedding="learned",
        normalize_first=False,
        activation="gelu",
        scale_embeddings=scale,
        embedding_layer_norm=True,
    )


def check_tensors(read, names, where):
    """Refuses a checkpoint whose `final_logits_bias` is not zero (the builder has no bias)."""
    if "final_logits_bias" in names:
        bias = read(names["final_logits_bias"])
        if np.any(bias != 0):
            raise ValueError(
                f"{where}: final_logits_bias is not zero (largest |value| "
                f"{np.abs(bias).max():.3g}); keras_llm's encoder-decoder has no logits bias."
            )


def _positions(name, path):
    """A learned position table stored with BART's two extra leading rows."""
    return Tensor(
        name,
        "body",
        (path,),
        lambda array, shapes: [array[_POSITION_OFFSET:].reshape(shapes[0])],
        lambda arrays: np.concatenate(
            [np.zeros((_POSITION_OFFSET, arrays[0].shape[-1]), arrays[0].dtype), arrays[0]]
        ),
    )


def _attention(hf, layer):
    table = []
    for part, projection in (("q", "query"), ("k", "key"), ("v", "value")):
        table += linear(f"{hf}.{part}_proj", "body", f"{layer}_{projection}")
    return table + linear(f"{hf}.out_proj", "body", f"{layer}_output")


def tensors(arguments):
    """Every tensor of a checkpoint with `arguments`' encoder and decoder layers."""
    table = [stored("shared.weight", "body", "target_embedding/embeddings")]
    decoder_layers = arguments.get("num_decoder_layers") or arguments["num_layers"]
    for side, layers in (("encoder", arguments["num_layers"]), ("decoder", decoder_layers)):
        table += [
            _positions(f"{side}.embed_positions.weight", f"{side}_position_embedding/embeddings"),
            *layer_norm(f"{side}.layernorm_embedding", "body", f"{side}_embedding_layer_norm"),
        ]
        for i in range(layers):
            hf, block = f"{side}.layers.{i}", f"{side}_layer_{i}"
            table += [
                *_attention(f"{hf}.self_attn", f"{block}/self_attention"),
                *layer_norm(f"{hf}.self_attn_layer_norm", "body",
                            f"{block}/self_attention_layer_norm"),
            ]
            if side == "decoder":
                table += [
                    *_attention(f"{hf}.encoder_attn", f"{block}/cross_attention"),
                    *layer_norm(f"{hf}.encoder_attn_layer_norm", "body",
                                f"{block}/cross_attention_layer_norm"),
                ]
            table += [
                *linear(f"{hf}.fc1", "body", f"{block}/feedforward_intermediate_dense"),
                *linear(f"{hf}.fc2", "body", f"{block}/feedforward_output_dense"),
                *layer_norm(f"{hf}.final_layer_norm", "body", f"{block}/feedforward_layer_norm"),
            ]
    return table


# What `build_seq2seq` must have been given for its model to be a BART, and BART's values.
_BART_SETTINGS = dict(
    position_embedding="learned", embedding_layer_norm=True, activation="gelu",
    normalize_first=False, tie_embeddings=True, target_vocabulary_size=None,
    layer_norm_epsilon=1e-5,
)
_SIZES = ("vocabulary_size", "num_layers", "num_decoder_layers", "num_heads", "hidden_dim",
          "intermediate_dim", "max_sequence_length", "dropout", "scale_embeddings")


def save_arguments(model):
    """The `build_seq2seq` arguments of a BART-shaped model, from its builder configuration.

    A seq2seq model built with other settings (sinusoidal positions, pre-norm,
    ReLU, ...) has no BART equivalent: an error names the first that differs.
    """
    config = model.builder_config
    for name, value in _BART_SETTINGS.items():
        if config.get(name) != value:
            raise ValueError(
                f"save_pretrained writes encoder-decoders as BART, which has {name}={value!r}; "
                f"this model has {name}={config.get(name)!r}. Received: model={model.name!r}"
            )
    arguments = {name: config[name] for name in _SIZES}
    arguments["num_decoder_layers"] = arguments["num_decoder_layers"] or arguments["num_layers"]
    return {**arguments, **_BART_SETTINGS}


def config(architecture, arguments, tokenizer):
    """Hugging Face's `config.json` of `architecture` for a model of the builder `arguments`.

    The special tokens are those keras_llm trains and decodes with
    (`keras_llm.data.seq2seq.seq2seq_specials` of `tokenizer`), else BART's
    (`<s>` 0, `<pad>` 1, `</s>` 2, decoding from `</s>`).
    """
    from keras_llm.data.seq2seq import seq2seq_specials

    specials = {} if tokenizer is None else seq2seq_specials(tokenizer, needed=())
    end = specials.get("end_token_id", 2)
    start = specials.get("start_token_id", 2)
    return {
        "architectures": [architecture],
        "model_type": MODEL_TYPE,
        "vocab_size": arguments["vocabulary_size"],
        "d_model": arguments["hidden_dim"],
        "encoder_layers": arguments["num_layers"],
        "decoder_layers": arguments["num_decoder_layers"],
        "encoder_attention_heads": arguments["num_heads"],
        "decoder_attention_heads": arguments["num_heads"],
        "encoder_ffn_dim": arguments["intermediate_dim"],
        "decoder_ffn_dim": arguments["intermediate_dim"],
        "max_position_embeddings": arguments["max_sequence_length"],
        "activation_function": "gelu",
        "dropout": arguments["dropout"],
        "attention_dropout": arguments["dropout"],
        "activation_dropout": 0.0,  # keras_llm has no dropout inside the feed-forward network
        "scale_embedding": arguments["scale_embeddings"],
        "tie_word_embeddings": True,
        "pad_token_id": specials.get("pad_token_id", 1),
        "bos_token_id": start,
        "eos_token_id": end,
        "decoder_start_token_id": start,
        "forced_eos_token_id": end,
        "init_std": 0.02,
        "dtype": "float32",
    }
