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

    A subclass's `__init__` builds its graph, then sets `self._config` (its
    architecture arguments), `self._layer_dtype` (its layers' dtype policy)
    and `self._decoder_blocks` (the causal blocks that cache keys and
    values); it defines `task` and `call_with_cache`. The model
    carries its tokenizer (`model.tokenizer`, see `CarriesTokenizer`).
    """

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
