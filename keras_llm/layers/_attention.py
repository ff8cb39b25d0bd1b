"""Attention helpers the blocks share: masks and the key/value cache write.

Core ops only (the decoding loop exports to any TF Serving build) and
static shapes (XLA compiles them).
"""

import keras
from keras import ops


def merge_masks(
    query_length, key_length, key_padding_mask=None, attention_mask=None, causal=False
):
    """Returns a `[B or 1, T, S]` bool mask (True = may attend), or None."""
    mask = None
    if key_padding_mask is not None:
        mask = ops.cast(key_padding_mask, "bool")[:, None, :]  # [B, 1, S]
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")  # [B, T, S]
        mask = attention_mask if mask is None else ops.logical_and(mask, attention_mask)
    if causal:
        rows = ops.arange(query_length)[:, None]
        columns = ops.arange(key_length)[None, :]
        causal_mask = (rows >= columns)[None, :, :]  # [1, T, S]
        mask = causal_mask if mask is None else ops.logical_and(mask, causal_mask)
    return mask


def cache_mask(cache_length, cache_index, length):
    """`[1, T, C]`: the tokens at `cache_index...` attend to cache positions up to their own."""
    positions = ops.arange(cache_length, dtype="int32")  # [C]
    query_positions = ops.cast(cache_index, "int32") + ops.arange(length, dtype="int32")  # [T]
    return (positions[None, :] <= query_positions[:, None])[None]


def write_cache(cache, key, value, cache_index, heads, head_dim):
    """`cache` (2 x `[B, N, C, H]`) with `key`, `value` `[B, T, N, H]` written at `cache_index...`.

    `heads` is N (the key/value heads) and `head_dim` H, as Python ints.
    """
    new = [ops.transpose(part, (0, 2, 1, 3)) for part in (key, value)]  # 2 x [B, N, T, H]
    length = key.shape[1]
    first = ops.cast(cache_index, "int32")
    if isinstance(length, int) and length == 1:
        # One token: a scatter, which XLA does in place. updates =
        # [B * N, H] at (b, head, first).
        batch = ops.shape(cache[0])[0]
        rows = ops.repeat(ops.arange(batch, dtype="int32"), heads)
        head = ops.tile(ops.arange(heads, dtype="int32"), [batch])
        indices = ops.stack([rows, head, ops.full_like(rows, first)], axis=1)  # [B * N, 3]
        return tuple(
            ops.scatter_update(old, indices, ops.reshape(part, (-1, head_dim)))
            for old, part in zip(cache, new)
        )
    # A prompt: padded to the cache length and merged.
    length = ops.shape(key)[1]
    cache_length = ops.shape(cache[0])[2]
    positions = ops.arange(cache_length, dtype="int32")
    written = ops.logical_and(positions >= first, positions < first + length)
    written = written[None, None, :, None]  # [1, 1, C, 1]
    widths = [[0, 0], [0, 0], [first, cache_length - first - length], [0, 0]]
    return tuple(
        ops.where(written, ops.pad(part, widths), old) for old, part in zip(cache, new)
    )


def output_spec(layer, inputs, cache, return_attention_scores):
    """`compute_output_spec` of a self-attention layer or block over `inputs` `[B, T, D]`.

    The outputs are `inputs`' shape; with `cache`, the updated cache's
    tensors follow (their own shapes); with `return_attention_scores`, the
    float32 probabilities `[B, layer.num_heads, T, T]` do.
    """
    outputs = keras.KerasTensor(inputs.shape, dtype=layer.compute_dtype)
    if cache is not None:
        return outputs, tuple(keras.KerasTensor(c.shape, dtype=c.dtype) for c in cache)
    if return_attention_scores:
        batch, length = inputs.shape[0], inputs.shape[1]
        return outputs, keras.KerasTensor((batch, layer.num_heads, length, length), dtype="float32")
    return outputs
