"""GGUF files (llama.cpp's format) of the `llama` architecture: config and float32 tensors.

`read_gguf(path)` gives what a Hugging Face `LlamaForCausalLM` directory
holds: a config dict under Hugging Face's names and the weights, dequantized
with the `gguf` package and renamed to Hugging Face's tensor names, with
llama.cpp's row permutation of the query and key projections undone as
`transformers`' GGUF loader undoes it (`LlamaTensorProcessor`). The chat
template (`tokenizer.chat_template`) comes with them.
"""

import os

import numpy as np

# GGUF tensor names -> Hugging Face names ("{}" is the layer index).
_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{}.attn_norm.weight": "model.layers.{}.input_layernorm.weight",
    "blk.{}.ffn_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "blk.{}.attn_q.weight": "model.layers.{}.self_attn.q_proj.weight",
    "blk.{}.attn_k.weight": "model.layers.{}.self_attn.k_proj.weight",
    "blk.{}.attn_v.weight": "model.layers.{}.self_attn.v_proj.weight",
    "blk.{}.attn_output.weight": "model.layers.{}.self_attn.o_proj.weight",
    "blk.{}.ffn_gate.weight": "model.layers.{}.mlp.gate_proj.weight",
    "blk.{}.ffn_up.weight": "model.layers.{}.mlp.up_proj.weight",
    "blk.{}.ffn_down.weight": "model.layers.{}.mlp.down_proj.weight",
}
# The quantization types read (`gguf.quants.dequantize` handles each).
_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
          "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def _field(reader, key, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _hf_name(path, name):
    if name in _NAMES:
        return _NAMES[name]
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit():
        key = ".".join(["blk", "{}"] + parts[2:])
        if key in _NAMES:
            return _NAMES[key].format(parts[1])
    if name.startswith("rope_freqs"):
        return None  # llama.cpp's copy of the rope scaling factors; the config declares them
    raise ValueError(f"{path}: the tensor {name!r} is not one of the Llama layout's tensors.")


def _unpermute(weights, heads):
    """Undoes llama.cpp's interleaving of each head's rotary halves (rows of q or k)."""
    rows = weights.shape[0]
    w = weights.reshape(heads, rows // heads // 2, 2, *weights.shape[1:])
    return w.swapaxes(2, 1).reshape(weights.shape)


def read_gguf(path):
    """The config, weights and chat template of a Llama-architecture GGUF file.

    Args:
        path: A `.gguf` file whose `general.architecture` is `llama`.

    Returns:
        `(config, tensors, chat_template)`: `config` a dict with Hugging
        Face's `LlamaConfig` keys (`vocab_size`, `hidden_size`,
        `intermediate_size`, `num_hidden_layers`, `num_attention_heads`,
        `num_key_value_heads`, `max_position_embeddings`, `rope_theta`,
        `rope_scaling`, `rms_norm_eps`, `tie_word_embeddings`, `head_dim`);
        `tensors` a dict from Hugging Face's tensor names to float32 NumPy
        arrays; `chat_template` the file's Jinja template or None.

    Raises:
        ValueError: naming the file and the problem: not a GGUF file or
            truncated, another architecture, a quantization type not read,
            or tensors whose shapes disagree with the config.

    Example:

    ```python
    import os, tempfile
    import gguf, numpy as np
    from keras_llm.pretrained.gguf import read_gguf

    path = os.path.join(tempfile.mkdtemp(), "tiny.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    for key, value in [("block_count", 0), ("embedding_length", 4), ("feed_forward_length", 8),
                       ("attention.head_count", 2), ("context_length", 16)]:
        writer.add_uint32(f"llama.{key}", value)
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    writer.add_tensor("token_embd.weight", np.ones((10, 4), np.float32))
    writer.add_tensor("output_norm.weight", np.ones(4, np.float32))
    writer.write_header_to_file(); writer.write_kv_data_to_file(); writer.write_tensors_to_file()
    writer.close()
    config, tensors, _ = read_gguf(path)
    assert config["vocab_size"] == 10 and config["tie_word_embeddings"]
    ```
    """
    import gguf

    path = os.fspath(path)
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, OSError) as error:
        raise ValueError(f"{path}: not a readable GGUF file (truncated or damaged?): {error}") from None
    architecture = _field(reader, "general.architecture")
    if architecture != "llama":
        raise ValueError(
            f"{path}: keras_llm reads GGUF files of the `llama` architecture. "
            f"Received: general.architecture={architecture!r}"
        )
    types = {t.tensor_type.name for t in reader.tensors}
    unread = sorted(types - set(_TYPES))
    if unread:
        raise ValueError(
            f"{path}: holds tensors of quantization types keras_llm does not read: "
            f"{', '.join(unread)}. Expected: {', '.join(_TYPES)}."
        )
    names = {t.name for t in reader.tensors}
    if "token_embd.weight" not in names:
        raise ValueError(f"{path}: has no `token_embd.weight` tensor, which a Llama model needs.")
    embedding = next(t for t in reader.tensors if t.name == "token_embd.weight")

    def key(name, default=None):
        return _field(reader, f"llama.{name}", default)

    hidden = int(key("embedding_length"))
    heads = int(key("attention.head_count"))
    kv_heads = int(key("attention.head_count_kv", heads))
    config = {
        "model_type": "llama",
        "vocab_size": int(key("vocab_size", int(embedding.shape[-1]))),
        "hidden_size": hidden,
        "intermediate_size": int(key("feed_forward_length")),
        "num_hidden_layers": int(key("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": int(key("attention.key_length", hidden // heads)),
        "max_position_embeddings": int(key("context_length")),
        "rope_theta": float(key("rope.freq_base", 10000.0)),
        "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon")),
        "tie_word_embeddings": "output.weight" not in names,
        "rope_scaling": None,
    }
    scaling = key("rope.scaling.type")
    if scaling not in (None, "none"):
        config["rope_scaling"] = {"rope_type": scaling, "factor": float(key("rope.scaling.factor"))}
    tensors = {}
    for tensor in reader.tensors:
        name = _hf_name(path, tensor.name)
        if name is None:
            continue
        try:
            # One tensor at a time: the file is memory-mapped, only this float copy is made.
            weights = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), np.float32)
        except (ValueError, IndexError) as error:
            raise ValueError(f"{path}: cannot read the tensor {tensor.name!r}: {error}") from None
        if name.endswith("q_proj.weight"):
            weights = _unpermute(weights, heads)
        elif name.endswith("k_proj.weight"):
            weights = _unpermute(weights, kv_heads)
        tensors[name] = weights
    _check_shapes(path, config, tensors)
    return config, tensors, _field(reader, "tokenizer.chat_template")


def _check_shapes(path, config, tensors):
    hidden, head_dim = config["hidden_size"], config["head_dim"]
    expected = {"model.embed_tokens.weight": (config["vocab_size"], hidden),
                "model.norm.weight": (hidden,)}
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}."
        expected.update({
            p + "self_attn.q_proj.weight": (config["num_attention_heads"] * head_dim, hidden),
            p + "self_attn.k_proj.weight": (config["num_key_value_heads"] * head_dim, hidden),
            p + "mlp.gate_proj.weight": (config["intermediate_size"], hidden),
        })
    for name, shape in expected.items():
        found = tensors.get(name)
        if found is None or tuple(found.shape) != shape:
            raise ValueError(
                f"{path}: the metadata's config disagrees with the tensors: {name} should be "
                f"{shape}. Received: {None if found is None else tuple(found.shape)}"
            )
