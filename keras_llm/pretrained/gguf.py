"""GGUF files (llama.cpp's format) of the `llama` architecture: config and float32 tensors.

`read_gguf(path)` gives what a Hugging Face `LlamaForCausalLM` directory
holds: a config dict under Hugging Face's names and the weights, dequantized
with the `gguf` package and renamed to Hugging Face's tensor names, with
llama.cpp's row permutation of the query and key projections undone as
`transformers`' GGUF loader undoes it (`LlamaTensorProcessor`); the file is
read by `_gguf_reader.GGUFFile` (metadata with `struct`, tensors left in a
memory map until dequantized). The chat
template (`tokenizer.chat_template`) comes with them. `read_gguf_tokenizer`
gives the byte-level BPE tokenizer the metadata describes (`tokenizer.ggml.*`).
`model_with_kept_blocks` builds the model whose Q4_0/Q4_1 projections keep
the file's 4-bit blocks (`from_pretrained(..., keep_quantized=True)`).
"""

import logging
import os
import struct

import keras
import numpy as np

from keras_llm.compression.quantize import collected_once
from keras_llm.pretrained import _llama
from keras_llm.pretrained._gguf_reader import GGUFFile

from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import (
    CoreOpsBytePairTokenizer,
    bytes_to_unicode,
)

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
# llama.cpp's names of byte-level BPE pre-tokenizers -> keras_llm's, with what
# else the original tokenizer.json says: Llama 3 takes a word that is a token
# whole (`ignore_merges`), Qwen2 normalizes to NFC (GGUF files do not say it;
# transformers' and llama.cpp's readers skip it, Qwen2's tokenizer.json has it).
_PRE_TOKENIZERS = {
    "gpt-2": {"pre_tokenizer": "gpt2"},
    "llama-bpe": {"pre_tokenizer": "llama3", "ignore_merges": True},
    "qwen2": {"pre_tokenizer": "qwen2", "normalization": "NFC"},
    "smollm": {"pre_tokenizer": "smollm"},
}
# tokenizer.ggml.token_type values: llama.cpp's control and user-defined tokens are added tokens.
_CONTROL, _USER_DEFINED = 3, 4
logger = logging.getLogger("keras_llm")
# The quantization types read (`gguf.quants.dequantize` handles each).
_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
          "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def _field(reader, key, default=None):
    return reader.metadata.get(key, default)


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
    path = os.fspath(path)
    reader = _open(path)
    config, tensors = _config_and_tensors(reader, path)
    tensors = {name: np.asarray(tensor) for name, tensor in tensors.items()}
    return config, tensors, _field(reader, "tokenizer.chat_template")


def _open(path):
    """The `GGUFFile` of `path`; a file it cannot read is an error naming it."""
    try:
        return GGUFFile(os.fspath(path))
    except (ValueError, OSError, UnicodeDecodeError, struct.error) as error:
        raise ValueError(f"{path}: not a readable GGUF file (truncated or damaged?): {error}") from None


def _config_and_tensors(reader, path):
    """`read_gguf`'s config and tensors (each dequantized when read), from an open reader."""
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
        heads_of_rows = {"q_proj": heads, "k_proj": kv_heads}.get(name.split(".")[-2])
        tensors[name] = _Dequantized(path, tensor, heads_of_rows)
    _check_shapes(path, config, tensors)
    return config, tensors


class _Dequantized:
    """A GGUF tensor, dequantized to float32 only when NumPy reads it (`np.asarray`).

    `from_pretrained` assigns the weights one tensor at a time, so a load
    holds the model's variables and one float32 tensor rather than every
    dequantized tensor at once (the file itself stays memory-mapped).
    `shape` is Hugging Face's (rows first), known without reading the data.
    """

    def __init__(self, path, tensor, heads):
        self.shape = tuple(int(n) for n in reversed(tensor.shape))
        self._path, self._tensor, self._heads = path, tensor, heads

    def __array__(self, dtype=None, copy=None):
        import gguf

        tensor = self._tensor
        try:
            weights = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), np.float32)
        except (ValueError, IndexError) as error:
            raise ValueError(f"{self._path}: cannot read the tensor {tensor.name!r}: {error}") from None
        weights = weights.reshape(self.shape)
        if self._heads:  # a query or key projection: llama.cpp's row order undone
            weights = _unpermute(weights, self._heads)
        return weights if dtype is None else weights.astype(dtype, copy=False)


# The 4-bit block types `from_pretrained(..., keep_quantized=True)` keeps as they are:
# bytes per block of 32 values (a float16 scale d, Q4_1's float16 minimum m, 16 bytes of
# 4-bit values, the first 16 in the low nibbles), and whether the block has m.
_KEPT = {"Q4_0": (18, False), "Q4_1": (20, True)}
BLOCK_SIZE = 32


def kept_blocks(tensor):
    """A Q4_0 or Q4_1 tensor's blocks as `OffsetDense`'s int4 variables, with no rounding.

    A block of 32 values is `d * (q - 8)` (Q4_0) or `d * q + m` (Q4_1) with
    `q` in 0..15; as Keras's int4 kernel (values in -8..7, zero point 0) with
    `scale = d` and `offset = m + 8 d` (Q4_0: 0), `(q - 8) * d + offset`
    is the same value.

    Args:
        tensor: One of `read_gguf`'s tensors (a `_Dequantized`) of type Q4_0
            or Q4_1, Hugging Face's `[out, in]` (query and key rows in
            Hugging Face's order).

    Returns:
        `(values, scale, offset)`: int8 `[in, out]` in -8..7, float32
        `[in / 32, out]` twice.
    """
    source = tensor._tensor
    size, has_minimum = _KEPT[source.tensor_type.name]
    rows, columns = tensor.shape
    blocks = np.asarray(source.data).reshape(rows, columns // BLOCK_SIZE, size)
    scale = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)  # [out, G]
    minimum = (blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
               if has_minimum else None)
    packed = blocks[..., size - BLOCK_SIZE // 2:]  # [out, G, 16]
    values = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).astype(np.int8) - 8
    values = values.reshape(rows, columns)  # [out, in]
    offset = np.zeros_like(scale) if minimum is None else minimum + 8 * scale
    if tensor._heads:  # llama.cpp's row order undone, as for the float tensors
        values, scale, offset = (_unpermute(a, tensor._heads) for a in (values, scale, offset))
    return values.T, scale.T, offset.T


def is_kept(tensor):
    """Whether `kept_blocks` reads `tensor` (a `read_gguf` tensor): Q4_0 and Q4_1 blocks."""
    return isinstance(tensor, _Dequantized) and tensor._tensor.tensor_type.name in _KEPT


def model_with_kept_blocks(config, tensors, path):
    """`_llama.model_from_hf`'s model whose Q4_0/Q4_1 projections hold the file's blocks.

    What `keras_llm.from_pretrained(path, keep_quantized=True)` loads: `config`
    and `tensors` are `_config_and_tensors`'s.

    Only the attention and feed-forward projections (`OffsetDense`) are
    kept; a 4-bit token table or LM head is dequantized as usual.
    """
    # The projections are the table's `.../kernel` variables (the token table's are
    # `embeddings` and `reverse_embeddings`).
    table = {t.name: t for t in _llama.tensors(_llama.arguments(config, path))
             if t.variables[0].endswith("/kernel") and is_kept(tensors.get(t.name))}
    # The kept tensors are not dequantized: zeros (a view, no memory) stand in until quantized.
    model = _llama.model_from_hf(
        config, {name: np.broadcast_to(np.float32(0), tensor.shape) if name in table else tensor
                 for name, tensor in tensors.items()}, path)
    if not table:
        logger.warning("%s: keep_quantized=True, but the file holds no Q4_0/Q4_1 projections: "
                       "every weight is float32", path)
        return model
    layers = {layer.path: layer for layer in model._flatten_layers()}
    chosen = {}  # layer path -> (layer, tensor)
    for name, tensor in table.items():
        layer = layers[tensor.variables[0].rpartition("/")[0]]
        chosen[layer.path] = (layer, tensors[name])
    int4 = keras.quantizers.Int4QuantizationConfig(block_size=BLOCK_SIZE)
    with collected_once():
        model.quantize(None, config=int4, filters=lambda layer: layer.path in chosen)
    for layer, tensor in chosen.values():
        values, scale, offset = kept_blocks(tensor)
        layer._kernel.assign(keras.quantizers.pack_int4(values, axis=-1)[0])
        layer.kernel_scale.assign(scale)
        layer.kernel_zero.assign(np.zeros(scale.shape, "int8"))
        layer.kernel_offset.assign(offset)
    return model


def read_gguf_tokenizer(path):
    """The tokenizer a GGUF file's metadata describes, with its chat template and special tokens.

    Reads llama.cpp's byte-level BPE (`tokenizer.ggml.model` "gpt2"): the
    tokens (`tokenizer.ggml.tokens`, their ids their places), the merges, the
    pre-tokenizer (`tokenizer.ggml.pre`: "gpt-2", "llama-bpe", "qwen2",
    "smollm"), control and user-defined tokens (`token_type` 3 and 4) as
    added tokens found whole in text, `bos_token_id`, `eos_token_id`,
    `add_bos_token` and `tokenizer.chat_template`. Tokens are taken as
    `transformers`' GGUF reader takes them (a token outside GPT-2's byte
    symbols is spelled in them; a control token outside them is not matched
    in text).

    Args:
        path: A `.gguf` file.

    Returns:
        A `CoreOpsBytePairTokenizer`, or None when the file has no tokenizer.

    Raises:
        ValueError: naming the file: another tokenizer model (SentencePiece's
            "llama", ...), a pre-tokenizer not read, or tokens and merges that
            do not make a byte-level BPE.

    Example:

    ```python
    import os, tempfile
    import gguf
    from keras_llm.pretrained.gguf import read_gguf_tokenizer
    from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values()) + ["Ġt", "<|eot|>"]
    path = os.path.join(tempfile.mkdtemp(), "tokenizer.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_merges(["Ġ t"])
    writer.add_token_types([1] * 257 + [3])
    writer.add_eos_token_id(257)
    writer.write_header_to_file(); writer.write_kv_data_to_file(); writer.close()
    tokenizer = read_gguf_tokenizer(path)
    assert tokenizer(" t<|eot|>").numpy().tolist() == [256, 257]
    assert tokenizer.end_token_id == 257 and tokenizer.pre_tokenizer == "llama3"
    ```
    """
    path = os.fspath(path)
    return _tokenizer_of(_open(path), path)


def _tokenizer_of(reader, path):
    """`read_gguf_tokenizer`'s tokenizer, from an open reader."""
    model = _field(reader, "tokenizer.ggml.model")
    if model is None:
        return None
    if model != "gpt2":
        raise ValueError(
            f"{path}: keras_llm reads byte-level BPE tokenizers (tokenizer.ggml.model 'gpt2'). "
            f"Received: tokenizer.ggml.model={model!r}"
        )
    pre = _field(reader, "tokenizer.ggml.pre", "gpt-2")
    if pre not in _PRE_TOKENIZERS:
        raise ValueError(
            f"{path}: keras_llm reads the byte-level BPE pre-tokenizers "
            f"{', '.join(_PRE_TOKENIZERS)}. Received: tokenizer.ggml.pre={pre!r}"
        )
    tokens = list(_field(reader, "tokenizer.ggml.tokens", []))
    types = list(_field(reader, "tokenizer.ggml.token_type", [])) or [1] * len(tokens)
    symbols = bytes_to_unicode()
    alphabet = set(symbols.values())
    spelled = [t if set(t) <= alphabet else "".join(symbols[b] for b in t.encode()) for t in tokens]
    vocabulary = {token: token_id for token_id, token in enumerate(spelled)}
    if len(vocabulary) != len(spelled) or len(types) != len(tokens):
        raise ValueError(
            f"{path}: tokenizer.ggml.tokens must hold each token once, with one token_type each. "
            f"Received: {len(tokens)} tokens, {len(vocabulary)} distinct, {len(types)} types"
        )
    added = {t: kind == _CONTROL for t, kind in zip(tokens, types)
             if (kind == _CONTROL and set(t) <= alphabet) or (kind == _USER_DEFINED and t in vocabulary)}

    def token(key):
        token_id = _field(reader, f"tokenizer.ggml.{key}")
        return None if token_id is None or not 0 <= token_id < len(spelled) else spelled[token_id]

    try:
        return CoreOpsBytePairTokenizer(
            vocabulary, list(_field(reader, "tokenizer.ggml.merges", [])), added_tokens=added,
            chat_template=_field(reader, "tokenizer.chat_template"), bos_token=token("bos_token_id"),
            eos_token=token("eos_token_id"),
            add_bos_token=bool(_field(reader, "tokenizer.ggml.add_bos_token", False))
            and token("bos_token_id") is not None,
            **_PRE_TOKENIZERS[pre],
        )
    except ValueError as error:
        raise ValueError(f"{path}: its tokenizer: {error}") from None


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
