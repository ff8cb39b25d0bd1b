"""Reusable Keras layers: attention blocks, embeddings and position encodings.

One public layer per file. Every layer is registered as serializable under the
`keras_llm>` package, so models that use them save to `.keras` and load with
`keras.saving.load_model` once `keras_llm` is imported, with `safe_mode` on.
"""

from keras_llm.layers.grouped_query_attention import GroupedQueryAttention
from keras_llm.layers.llama_block import LlamaBlock
from keras_llm.layers.offset_dense import OffsetDense
from keras_llm.layers.position_embedding import PositionEmbedding
from keras_llm.layers.positional_encoding import PositionalEncoding
from keras_llm.layers.rms_norm import RMSNorm
from keras_llm.layers.rotary_embedding import RotaryEmbedding
from keras_llm.layers.swiglu_feed_forward import SwiGLUFeedForward
from keras_llm.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_llm.layers.transformer_block import TransformerBlock, gelu_approximate

__all__ = [
    "GroupedQueryAttention",
    "LlamaBlock",
    "OffsetDense",
    "PositionEmbedding",
    "PositionalEncoding",
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLUFeedForward",
    "TokenAndPositionEmbedding",
    "TransformerBlock",
    "gelu_approximate",
]
