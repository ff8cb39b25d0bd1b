"""Llama, Mistral and Qwen2 checkpoints: a Hugging Face config and tensors -> `build_llama`.

The function other readers (the GGUF reader) call:

    model_from_hf(config: dict, tensors: Mapping[str, np.ndarray], where: str,
                  tokenizer=None) -> keras_llm.models.Llama

`config` is a Hugging Face `config.json` dict (`model_type` "llama",
"mistral" or "qwen2"); `tensors` maps Hugging Face names
("model.layers.0.self_attn.q_proj.weight", PyTorch `[out, in]` layout, the
query/key rows in Hugging Face's rotate-half order) to float arrays; `where`
names the source in errors. Not yet plugged into `from_pretrained` /
`save_pretrained` (issue 24).
"""

import numpy as np

from keras_llm.models.llama import build_llama
from keras_llm.pretrained._config import ConfigReader

MODEL_TYPES = ("llama", "mistral", "qwen2")


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
        tie_word_embeddings=bool(config.get("tie_word_embeddings", model_type == "qwen2")),
        rope_theta=float(theta),
        rope_scaling=rope if rope.get("rope_type", rope.get("type", "default")) != "default"
        else None,
        layer_norm_epsilon=reader.epsilon("rms_norm_eps", 1e-6),
        sliding_window=window,
    )


def variable_names(arguments):
    """{Hugging Face tensor name: (Keras variable path, transposed?)} of a model's weights."""
    names = {"model.embed_tokens.weight": ("token_embedding/embeddings", False),
             "model.norm.weight": ("final_norm/scale", False)}
    if not arguments["tie_word_embeddings"]:
        names["lm_head.weight"] = ("token_embedding/reverse_embeddings", True)
    for i in range(arguments["num_layers"]):
        hf, ours = f"model.layers.{i}.", f"llama_block_{i}/"
        for a, b in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output")):
            names[f"{hf}self_attn.{a}_proj.weight"] = (f"{ours}self_attention/{b}/kernel", True)
            if arguments["attention_bias"] and a != "o":
                names[f"{hf}self_attn.{a}_proj.bias"] = (f"{ours}self_attention/{b}/bias", False)
        for a in ("gate", "up", "down"):
            names[f"{hf}mlp.{a}_proj.weight"] = (f"{ours}feedforward/{a}_dense/kernel", True)
        names[f"{hf}input_layernorm.weight"] = (f"{ours}self_attention_layer_norm/scale", False)
        names[f"{hf}post_attention_layernorm.weight"] = (
            f"{ours}feedforward_layer_norm/scale", False)
    return names


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
    from keras_llm.pretrained._llama import arguments, model_from_hf, variable_names

    config = {"model_type": "llama", "vocab_size": 32, "hidden_size": 8,
              "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "max_position_embeddings": 16,
              "tie_word_embeddings": True}
    built = arguments(config, "example")
    reference = keras_llm.build_llama(**built)
    values = {v.path: np.asarray(v) for v in reference.weights}
    tensors = {name: values[path].T if transposed else values[path]
               for name, (path, transposed) in variable_names(built).items()}
    model = model_from_hf(config, tensors, "example")
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))
    ```
    """
    built = arguments(config, where)
    names = variable_names(built)
    ignored = {"lm_head.weight"} if built["tie_word_embeddings"] else set()
    unknown = sorted(n for n in tensors if n not in names and n not in ignored
                     and not n.endswith("rotary_emb.inv_freq"))
    missing = sorted(n for n in names if n not in tensors)
    if unknown or missing:
        raise ValueError(
            f"{where}: the tensors disagree with the config: "
            + "; ".join(f"{what}: {', '.join(n[:8])}{' ...' if len(n) > 8 else ''}"
                        for what, n in (("unknown", unknown), ("missing", missing)) if n)
        )
    model = build_llama(**built, tokenizer=tokenizer)
    variables = {v.path: v for v in model.weights}
    arrays = {}
    for name, (path, transpose) in names.items():  # every shape before any weight
        array = np.asarray(tensors[name], np.float32)
        array = array.T if transpose else array
        if tuple(array.shape) != tuple(variables[path].shape):
            raise ValueError(
                f"{where}: {name} has shape {list(np.shape(tensors[name]))}, but the config "
                f"needs {list(variables[path].shape)[::-1] if transpose else list(variables[path].shape)}."
            )
        arrays[path] = array
    for path, array in arrays.items():
        variables[path].assign(array)
    return model
