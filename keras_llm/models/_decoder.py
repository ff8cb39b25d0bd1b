"""What the models that decode share: their config and their empty key/value caches."""

import keras
from keras import ops

from keras_llm._graph_checks import CheckedSteps
from keras_llm.layers._dtype_policy import dtype_policy_config
from keras_llm.models.task_model import (
    BuildsOptimizerFirst,
    CarriesTokenizer,
    _lora_config,
    _quantization_config,
)


class DecoderModel(BuildsOptimizerFirst, CheckedSteps, CarriesTokenizer, keras.Model):
    """A functional model built from its constructor arguments, with the decoding interface.

    A decoder-only subclass's `__init__` makes its layers and hands them to
    `_build_decoder`, which builds the graph and records what decoding reads;
    the subclass defines `task`. A model of another layout (the seq2seq) builds
    its own graph, then sets `self._config` (its architecture arguments),
    `self._layer_dtype` (its layers' dtype policy) and `self._decoder_blocks`
    (the causal blocks that cache keys and values), and defines
    `call_with_cache`. The model carries its tokenizer (`model.tokenizer`,
    see `CarriesTokenizer`).
    """

    def _build_decoder(self, config, dtype, embedding, make_block, make_final_norm, *,
                       make_embedding_dropout=None, **kwargs):
        """Builds `{token_ids, padding_mask}` -> logits `[B, T, V]` from a decoder's layers.

        `embedding` maps ids to `[B, T, D]` and, called with `reverse=True`,
        vectors to logits (tied or not); `make_block(i)` makes the `i`-th
        causal block of `config["num_layers"]`; `make_final_norm()` the norm of
        the last block's output (pre-norm blocks leave the residual stream
        un-normalized); `make_embedding_dropout()` a dropout after the
        embedding, if any. Each layer is made just before it is first called,
        so seeded initial weights follow the order of the layers (the
        initializers and dropouts draw their seeds when made and built).
        `config` is the builder's architecture arguments, `dtype` the layers'
        policy.
        """
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = embedding(token_ids)  # [B, T, D]
        if make_embedding_dropout is not None:
            x = make_embedding_dropout()(x)
        blocks = []
        for i in range(config["num_layers"]):
            blocks.append(make_block(i))
            x = blocks[-1](x, padding_mask=padding_mask)
        final_norm = make_final_norm()
        logits = embedding(final_norm(x), reverse=True)  # [B, T, V]
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask},
            outputs=logits,
            **kwargs,
        )
        self._config = config
        self._layer_dtype = dtype
        self.vocabulary_size = config["vocabulary_size"]
        self.max_sequence_length = config["max_sequence_length"]
        self._embedding = embedding
        self._embedding_before_blocks = embedding  # for GPTQ/AWQ (below)
        self._decoder_blocks = blocks
        self._final_norm = final_norm

    def _embed(self, token_ids, cache_index):
        """`[B, T, D]` vectors of `token_ids` at positions `cache_index...`.

        Positions that are rotations inside attention need no index here; a
        decoder with position embeddings overrides this.
        """
        return self._embedding(token_ids)

    def call_with_cache(self, token_ids, cache, cache_index, context=None):
        """`(logits, cache)`: float32 logits `[B, T, V]` of tokens at `cache_index...`.

        `context` is what a seq2seq model's `encode` returns; a decoder-only
        model has no source, and takes None (the argument keeps one interface).
        """
        x = self._embed(token_ids, cache_index)  # [B, T, D]
        x, cache = self._blocks_with_cache(x, cache, cache_index)
        logits = self._embedding(self._final_norm(x), reverse=True)  # [B, T, V]
        return ops.cast(logits, "float32"), cache

    @property
    def builder_config(self):
        """The builder's resolved architecture arguments."""
        return dict(self._config)

    def empty_cache(self, batch_size, cache_length):
        """Zero key/value caches: per decoder block a pair of `[batch_size, N, cache_length, H]`.

        `N` is the number of heads a block caches (`_cache_heads`).
        """
        return [
            tuple(
                ops.zeros(
                    (batch_size, self._cache_heads(block), cache_length, block.head_dim),
                    block.compute_dtype,
                )
                for _ in range(2)
            )
            for block in self._decoder_blocks
        ]

    def _cache_heads(self, block):
        """The heads whose keys and values `block` caches: all of its heads."""
        return block.num_heads

    def _blocks_with_cache(self, x, cache, cache_index):
        """`x` `[B, T, D]` through the decoder blocks, each reading and writing its cache.

        Returns `(x, cache)`: the last block's output and the updated caches.
        """
        updated = []
        for block, block_cache in zip(self._decoder_blocks, cache):
            x, block_cache = block(x, cache=block_cache, cache_index=cache_index)
            updated.append(block_cache)
        return x, updated

    def get_quantization_layer_structure(self, mode):
        """Keras's hook for `model.quantize("gptq" or "awq")`: the token embedding, then the blocks.

        GPTQ and AWQ calibrate one block at a time on the previous block's
        outputs, calling each block on a sequence alone (no padding, causal),
        so a causal decoder's blocks are the whole structure. A model whose
        blocks read more than their input (a seq2seq decoder's encoder
        outputs) sets no `_embedding_before_blocks`, and gets None.
        """
        embedding = getattr(self, "_embedding_before_blocks", None)
        if mode not in ("gptq", "awq") or embedding is None:
            return None
        return {"pre_block_layers": [embedding], "sequential_blocks": list(self._decoder_blocks)}

    def get_config(self):
        # The constructor's arguments (a `.keras` file rebuilds the graph from
        # them), with the layers' dtype policy: the functional model's own is
        # always float32.
        return {
            "name": self.name,
            "trainable": self.trainable,
            # With the policies of its quantized layers (`keras_llm.quantize`), if any.
            "dtype": dtype_policy_config(self, self._layer_dtype),
            **self._config,
            "tokenizer": self._tokenizer_config(),
            **_lora_config(self),
            **_quantization_config(self),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        tokenizer = config.pop("tokenizer", None)
        lora = config.pop("lora", None)
        quantization = config.pop("quantization", None)
        model = cls(**config)
        model.tokenizer = tokenizer
        from keras_llm.compression.quantize import restore_quantization
        from keras_llm.training.lora import restore_lora  # training imports the models

        restore_lora(model, lora)  # the adapters a `.keras` config recorded, before its weights
        restore_quantization(model, quantization)
        return model
