"""Llama, Mistral and Qwen2 checkpoints (`build_llama`): config.json and tensors, both ways.

Covers Hugging Face's `LlamaForCausalLM`, `MistralForCausalLM` and
`Qwen2ForCausalLM` (the registry's `build_llama` architectures). One table of
tensors (`tensors`) serves both ways: `model_from_hf` reads a checkpoint's
(the directory reader and the GGUF reader call it), `save_pretrained` writes
one. The function other readers call:

    model_from_hf(config: dict, tensors: Mapping[str, np.ndarray], where: str,
                  tokenizer=None) -> keras_llm.models.Llama

`config` is a Hugging Face `config.json` dict (`model_type` "llama",
"mistral" or "qwen2"); `tensors` maps Hugging Face names
("model.layers.0.self_attn.q_proj.weight", PyTorch `[out, in]` layout, the
query/key rows in Hugging Face's rotate-half order) to float arrays; `where`
names the source in errors.
"""

import numpy as np

from keras_llm.models.llama import build_llama
from keras_llm.pretrained._config import ConfigReader
from keras_llm.pretrained._tensors import stored, transposed

NAME = "Llama"
# model_type -> the architecture of its causal LM.
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM"}
MODEL_TYPES = tuple(ARCHITECTURES)
PREFIX = ""  # the names are the causal LM's, "model." included
PARTS = ("body",)
BASE_PARTS = ("body",)
BASE_ARCHITECTURE = None  # only the causal LMs are read and written
FILE_PARTS = {architecture: ("body",) for architecture in ARCHITECTURES.values()}
TASK_PARTS = {"causal_lm": ("body",)}


def arguments(config, where):
    """`build_llama`'s arguments from a Hugging Face config; refuses what it cannot compute."""
    reader = ConfigReader(config, where)
    model_type = reader.expect("model_type", MODEL_TYPES, None, "not a Llama-family config")
    reader.expect("hidden_act", ("silu",), "silu", "keras_llm's Llama uses SwiGLU with SiLU")
    reader.expect("mlp_bias", (False,), False, "keras_llm's SwiGLU has no biases")
    if model_type == "llama":
        reader.expect("attention_bias", (False,), False,
                      "keras_llm's Llama has q/k/v biases only as Qwen2 does, no output bias")
    if model_type == "qwen2":
        reader.expect("use_sliding_window", (False,), False,
                      "sliding-window attention is not implemented")
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    partial = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise ValueError(
            f"{where}: partial_rotary_factor={partial!r} is not supported: keras_llm's "
            "RotaryEmbedding rotates every dimension of each head. Supported: 1.0."
        )
    window = config.get("sliding_window") if model_type == "mistral" else None
    length = reader.size("max_position_embeddings")
    if window is not None:  # full attention equals sliding-window attention within the window
        length = min(length, reader.size("sliding_window"))
    return dict(
        vocabulary_size=reader.size("vocab_size"),
        num_layers=reader.size("num_hidden_layers"),
        num_heads=reader.size("num_attention_heads"),
        num_key_value_heads=reader.size(
            "num_key_value_heads", config.get("num_attention_heads")),
        hidden_dim=reader.size("hidden_size"),
        intermediate_dim=reader.size("intermediate_size"),
        max_sequence_length=length,
        head_dim=config.get("head_dim"),
        attention_bias=model_type == "qwen2",
        # LlamaConfig's, MistralConfig's and Qwen2Config's default, for a file that omits it.
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(theta),
        rope_scaling=rope if rope.get("rope_type", rope.get("type", "default")) != "default"
        else None,
        layer_norm_epsilon=reader.epsilon("rms_norm_eps", 1e-6),
        sliding_window=window,
    )


def tensors(arguments):
    """Every tensor of a model of the `build_llama` `arguments`, Hugging Face's names first."""
    table = [stored("model.embed_tokens.weight", "body", "token_embedding/embeddings")]
    for i in range(arguments["num_layers"]):
        hf, ours = f"model.layers.{i}.", f"llama_block_{i}/"
        for a, b in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output")):
            # nn.Linear's [out, in]; the query/key rows in rotate-half order, as ours.
            table.append(transposed(f"{hf}self_attn.{a}_proj.weight", "body",
                                    f"{ours}self_attention/{b}/kernel"))
            if arguments["attention_bias"] and a != "o":  # Qwen2's q/k/v biases
                table.append(stored(f"{hf}self_attn.{a}_proj.bias", "body",
                                    f"{ours}self_attention/{b}/bias"))
        for a in ("gate", "up", "down"):
            table.append(transposed(f"{hf}mlp.{a}_proj.weight", "body",
                                    f"{ours}feedforward/{a}_dense/kernel"))
        table += [
            stored(f"{hf}input_layernorm.weight", "body", f"{ours}self_attention_layer_norm/scale"),
            stored(f"{hf}post_attention_layernorm.weight", "body",
                   f"{ours}feedforward_layer_norm/scale"),
        ]
    table.append(stored("model.norm.weight", "body", "final_norm/scale"))
    if not arguments["tie_word_embeddings"]:
        table.append(transposed("lm_head.weight", "body", "token_embedding/reverse_embeddings"))
    return table


def model_from_hf(config, tensors, where, tokenizer=None):
    """A `build_llama` model holding a Hugging Face Llama/Mistral/Qwen2 checkpoint's weights.

    Args:
        config: The checkpoint's `config.json` as a dict.
        tensors: {Hugging Face name: array}; a tied checkpoint may include
            `lm_head.weight` (a copy, skipped).
        where: What the checkpoint is (a path), for errors.
        tokenizer: The tokenizer the model carries, or None.

    Returns:
        A compiled `keras_llm.models.Llama`.

    Raises:
        ValueError: a setting keras_llm does not compute, a missing or
            unknown tensor, or a shape that disagrees with the config, named.

    Example:

    ```python
    import numpy as np
    import keras_llm
    from keras_llm.pretrained._llama import arguments, model_from_hf, tensors

    config = {"model_type": "llama", "vocab_size": 32, "hidden_size": 8,
              "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "max_position_embeddings": 16,
              "tie_word_embeddings": True}
    built = arguments(config, "example")
    reference = keras_llm.build_llama(**built)
    values = {v.path: np.asarray(v) for v in reference.weights}
    weights = {t.name: t.to_hf([values[p] for p in t.variables]) for t in tensors(built)}
    model = model_from_hf(config, weights, "example")
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))
    ```
    """
    built = arguments(config, where)
    table = _table(built)
    ignored = {"lm_head.weight"} if built["tie_word_embeddings"] else set()
    unknown = sorted(n for n in tensors if n not in table and n not in ignored
                     and not n.endswith("rotary_emb.inv_freq"))
    missing = sorted(n for n in table if n not in tensors)
    if unknown or missing:
        raise ValueError(
            f"{where}: the tensors disagree with the config: "
            + "; ".join(f"{what}: {', '.join(n[:8])}{' ...' if len(n) > 8 else ''}"
                        for what, n in (("unknown", unknown), ("missing", missing)) if n)
        )
    model = build_llama(**built, tokenizer=tokenizer)
    variables = {v.path: v for v in model.weights}
    shapes = {}
    for name, tensor in table.items():  # every shape before any weight
        shapes[name] = [tuple(variables[p].shape) for p in tensor.variables]
        expected = tensor.to_hf([np.empty(shape, np.float32) for shape in shapes[name]]).shape
        if tuple(np.shape(tensors[name])) != tuple(expected):
            raise ValueError(
                f"{where}: {name} has shape {list(np.shape(tensors[name]))}, but the config "
                f"needs {list(expected)}."
            )
    # One tensor at a time, read (a GGUF tensor is dequantized here), converted
    # and assigned: a load holds the variables and one tensor's copies, not a
    # second model's worth of arrays.
    for name, tensor in table.items():
        values = tensor.to_keras(np.asarray(tensors[name], np.float32), shapes[name])
        for path, value in zip(tensor.variables, values):
            variables[path].assign(value)
    return model


def _table(arguments):
    return {tensor.name: tensor for tensor in tensors(arguments)}


# -- save_pretrained ----------------------------------------------------------


def save_arguments(model):
    """The `build_llama` arguments of a Llama-layout model: its builder configuration."""
    return model.builder_config


def architecture(arguments):
    """The architecture a model of the `build_llama` `arguments` is written as.

    Qwen2's has the q/k/v biases (Llama's `attention_bias` also biases the
    output projection); Mistral's declares a window, and a head width that
    `hidden_size / num_attention_heads` does not give (Llama's config
    requires that division); else Llama's.

    Raises:
        ValueError: what no architecture writes (biases and a window),
            naming the arguments.
    """
    divisible = arguments["hidden_dim"] % arguments["num_heads"] == 0
    if arguments["attention_bias"]:
        if arguments["sliding_window"] is not None:
            raise ValueError(
                "save_pretrained: attention_bias=True is written as Qwen2ForCausalLM, whose "
                "sliding window applies to some layers only; build the model with "
                "sliding_window=None (the same attention: the window is never shorter than the "
                f"context). Received: attention_bias=True, "
                f"sliding_window={arguments['sliding_window']!r}"
            )
        return ARCHITECTURES["qwen2"]
    if arguments["sliding_window"] is not None or not divisible:
        return ARCHITECTURES["mistral"]
    return ARCHITECTURES["llama"]


def config(architecture, arguments, tokenizer):
    """Hugging Face's `config.json` of `architecture` for a model of the `build_llama` `arguments`.

    Rotary settings are written as transformers 4 writes them (`rope_theta`,
    `rope_scaling`), which transformers 5 reads into its `rope_parameters`.
    """
    model_type = next(t for t, a in ARCHITECTURES.items() if a == architecture)
    head_dim = arguments["head_dim"] or arguments["hidden_dim"] // arguments["num_heads"]
    config = {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": arguments["vocabulary_size"],
        "hidden_size": arguments["hidden_dim"],
        "intermediate_size": arguments["intermediate_dim"],
        "num_hidden_layers": arguments["num_layers"],
        "num_attention_heads": arguments["num_heads"],
        "num_key_value_heads": arguments["num_key_value_heads"],
        "max_position_embeddings": arguments["max_sequence_length"],
        "hidden_act": "silu",
        "rms_norm_eps": arguments["layer_norm_epsilon"],
        "rope_theta": arguments["rope_theta"],
        "rope_scaling": (None if arguments["rope_scaling"] is None
                         else dict(arguments["rope_scaling"])),
        "tie_word_embeddings": arguments["tie_word_embeddings"],
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": getattr(tokenizer, "start_token_id", None),
        "eos_token_id": getattr(tokenizer, "end_token_id", None),
        "pad_token_id": getattr(tokenizer, "pad_token_id", None),
        "dtype": "float32",
    }
    if model_type == "llama":
        config.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    elif model_type == "mistral":
        config["sliding_window"] = arguments["sliding_window"]
    else:
        config.update(use_sliding_window=False, sliding_window=None,
                      max_window_layers=arguments["num_layers"])
    # Qwen2Config has no `head_dim` (its attention reads one where a file has it).
    if model_type != "qwen2" or head_dim != arguments["hidden_dim"] // arguments["num_heads"]:
        config["head_dim"] = head_dim
    return config
