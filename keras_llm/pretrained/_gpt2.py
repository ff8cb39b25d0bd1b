"""GPT-2 checkpoints (model_type "gpt2"): config.json <-> builder arguments, tensors <-> variables.

Covers Hugging Face's `GPT2Model` and `GPT2LMHeadModel` (the same tensors:
the language-model head is the transposed token embedding).
"""

import re

from keras_llm.pretrained._config import ConfigReader
from keras_llm.pretrained._tensors import fused, layer_norm, stored

NAME = "GPT-2"
MODEL_TYPE = "gpt2"
PREFIX = "transformer."  # GPT2LMHeadModel's; GPT2Model has its tensors at the top
PARTS = ("body",)
BASE_PARTS = ("body",)

# The language-model head is the transposed token embedding (tied), so both
# architectures have the same tensors and load as the same model (the
# registry's `causal_lm`, which writes GPT2LMHeadModel).
FILE_PARTS = {"GPT2Model": ("body",), "GPT2LMHeadModel": ("body",)}
BASE_ARCHITECTURE = "GPT2Model"
TASK_PARTS = {"causal_lm": ("body",)}
NAMED_PARTS = ()

# Tensors Hugging Face itself skips: older files' causal-mask buffers, and
# `lm_head.weight`, a copy of `wte.weight` that it ties.
IGNORED = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)|lm_head\.weight")
IGNORED_DOC = (
    "`h.N.attn.bias` and `h.N.attn.masked_bias` (causal-mask buffers), `lm_head.weight` "
    "(a tied copy of `wte.weight`)"
)

# Hugging Face's names of the tanh-approximated GELU GPT-2 was trained with.
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def arguments(config, where, task):
    """The builder's size arguments from `config`; refuses what `build_gpt` cannot compute."""
    reader = ConfigReader(config, where)
    reader.expect("activation_function", _TANH_GELU, "gelu_new",
                  "keras_llm's GPT uses the tanh-approximated GELU of GPT-2")
    reader.expect("scale_attn_weights", (True,), True,
                  "keras_llm's attention divides the scores by sqrt(head_dim)")
    reader.expect("scale_attn_by_inverse_layer_idx", (False,), False,
                  "keras_llm's attention scales every layer's scores alike")
    reader.expect("reorder_and_upcast_attn", (False,), False,
                  "keras_llm's attention has one order of operations")
    reader.expect("add_cross_attention", (False,), False, "keras_llm's GPT has no cross-attention")
    reader.expect("tie_word_embeddings", (True,), True,
                  "keras_llm's GPT projects to the vocabulary with the token embeddings (tied)")
    reader.divisible("n_embd", "n_head")
    hidden_dim = reader.size("n_embd")
    inner = config.get("n_inner")
    return dict(
        vocabulary_size=reader.size("vocab_size"),
        num_layers=reader.size("n_layer"),
        num_heads=reader.size("n_head"),
        hidden_dim=hidden_dim,
        # Hugging Face's n_inner=None means 4 * n_embd.
        intermediate_dim=4 * hidden_dim if inner is None else reader.size("n_inner"),
        max_sequence_length=reader.size("n_positions"),
        layer_norm_epsilon=reader.epsilon("layer_norm_epsilon", 1e-5),
        # One rate for all dropouts: GPT-2's three (resid, embd, attn) are all 0.1.
        dropout=reader.rate("resid_pdrop", 0.1),
    )


def _conv1d(name, layer):
    # GPT-2's Conv1D stores [in, out], as Keras does.
    return [stored(f"{name}.weight", "body", f"{layer}/kernel"),
            stored(f"{name}.bias", "body", f"{layer}/bias")]


def tensors(arguments):
    """Every tensor, for the builder `arguments`' `num_layers` blocks."""
    num_layers = arguments["num_layers"]
    table = [
        stored("wte.weight", "body", "embeddings/token_embedding/embeddings"),
        stored("wpe.weight", "body", "embeddings/position_embedding/embeddings"),
    ]
    for i in range(num_layers):
        hf, block = f"h.{i}", f"transformer_layer_{i}"
        attention = [f"{block}/self_attention_{p}" for p in ("query", "key", "value")]
        table += [
            # Pre-norm: ln_1 normalizes the attention's input, ln_2 the MLP's.
            *layer_norm(f"{hf}.ln_1", "body", f"{block}/self_attention_layer_norm"),
            # [D, 3 * D] -> three [D, D]; bias [3 * D] -> three [D]
            fused(f"{hf}.attn.c_attn.weight", "body", [f"{p}/kernel" for p in attention]),
            fused(f"{hf}.attn.c_attn.bias", "body", [f"{p}/bias" for p in attention]),
            *_conv1d(f"{hf}.attn.c_proj", f"{block}/self_attention_output"),
            *layer_norm(f"{hf}.ln_2", "body", f"{block}/feedforward_layer_norm"),
            *_conv1d(f"{hf}.mlp.c_fc", f"{block}/feedforward_intermediate_dense"),
            *_conv1d(f"{hf}.mlp.c_proj", f"{block}/feedforward_output_dense"),
        ]
    return table + layer_norm("ln_f", "body", "final_layer_norm")


def save_arguments(model):
    """The `build_gpt` arguments of a GPT: its builder configuration."""
    return model.builder_config


def config(architecture, arguments, tokenizer):
    """Hugging Face's `config.json` of `architecture` for a model of the builder `arguments`."""
    end = getattr(tokenizer, "end_token_id", None)
    return {
        "architectures": [architecture],
        "model_type": MODEL_TYPE,
        "vocab_size": arguments["vocabulary_size"],
        "n_positions": arguments["max_sequence_length"],
        "n_embd": arguments["hidden_dim"],
        "n_layer": arguments["num_layers"],
        "n_head": arguments["num_heads"],
        "n_inner": arguments["intermediate_dim"],
        "activation_function": "gelu_new",
        "resid_pdrop": arguments["dropout"],
        "embd_pdrop": arguments["dropout"],
        "attn_pdrop": arguments["dropout"],
        "layer_norm_epsilon": arguments["layer_norm_epsilon"],
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        # GPT2Config's defaults are GPT-2's own <|endoftext|> (50256):
        # another vocabulary's end token, or none.
        "bos_token_id": end,
        "eos_token_id": end,
        "dtype": "float32",
    }
