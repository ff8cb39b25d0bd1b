"""GPT-2 checkpoints (model_type "gpt2"): config.json <-> builder arguments, tensors <-> variables.

Covers Hugging Face's `GPT2Model` and `GPT2LMHeadModel` (the same tensors:
the language-model head is the transposed token embedding).
"""

import re

from keras_llm.models import build_gpt
from keras_llm.pretrained._config import ConfigReader
from keras_llm.pretrained._tensors import fused, stored

NAME = "GPT-2"
MODEL_TYPE = "gpt2"
PREFIX = "transformer."  # GPT2LMHeadModel's; GPT2Model has its tensors at the top
PARTS = ("body",)
BASE_PARTS = ("body",)

# The language-model head is the transposed token embedding (tied), so both
# architectures have the same tensors and load as the same model.
ARCHITECTURES = {
    "GPT2Model": ("causal_lm", ("body",)),
    "GPT2LMHeadModel": ("causal_lm", ("body",)),
}
BASE_ARCHITECTURE = "GPT2Model"
TASKS = {"causal_lm": (build_gpt, ("body",), "GPT2LMHeadModel")}
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


def _layer_norm(name, layer):
    return [stored(f"{name}.weight", "body", f"{layer}/gamma"),
            stored(f"{name}.bias", "body", f"{layer}/beta")]


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
            *_layer_norm(f"{hf}.ln_1", f"{block}/self_attention_layer_norm"),
            # [D, 3 * D] -> three [D, D]; bias [3 * D] -> three [D]
            fused(f"{hf}.attn.c_attn.weight", "body", [f"{p}/kernel" for p in attention]),
            fused(f"{hf}.attn.c_attn.bias", "body", [f"{p}/bias" for p in attention]),
            *_conv1d(f"{hf}.attn.c_proj", f"{block}/self_attention_output"),
            *_layer_norm(f"{hf}.ln_2", f"{block}/feedforward_layer_norm"),
            *_conv1d(f"{hf}.mlp.c_fc", f"{block}/feedforward_intermediate_dense"),
            *_conv1d(f"{hf}.mlp.c_proj", f"{block}/feedforward_output_dense"),
        ]
    return table + _layer_norm("ln_f", "final_layer_norm")


def describe(model):
    """(task, builder arguments, None) of a keras_llm GPT, or None for another model.

    The sizes come from the variables' shapes, the rates from the first
    block; `hugging_face.save_pretrained` then rebuilds the model from them
    and compares, so a model that differs anywhere is refused.
    """
    shapes = {v.path: tuple(v.shape) for v in model.weights}
    if "final_layer_norm/gamma" not in shapes or "segment_embedding/embeddings" in shapes:
        return None
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
        layer_norm_epsilon=block.layer_norm_epsilon,
        dropout=block.dropout,
    )
    return "causal_lm", arguments, None


def config(task, arguments, tokenizer):
    """Hugging Face's `config.json` for a model `describe` described."""
    end = getattr(tokenizer, "end_token_id", None)
    return {
        "architectures": [TASKS[task][2]],
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
