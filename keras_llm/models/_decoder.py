"""What the models that decode share: their config and their empty key/value caches."""

import keras
from keras import ops

from keras_llm._graph_checks import CheckedSteps
from keras_llm.models.task_model import CarriesTokenizer


class DecoderModel(CheckedSteps, CarriesTokenizer, keras.Model):
    """A functional model built from its constructor arguments, with the decoding interface.

    A subclass's `__init__` builds its graph, then sets `self._config` (its
    architecture arguments), `self._layer_dtype` (its layers' dtype policy)
    and `self._decoder_blocks` (the causal `TransformerBlock`s that cache
    keys and values); it defines `task` and `call_with_cache`. The model
    carries its tokenizer (`model.tokenizer`, see `CarriesTokenizer`).
    """

    @property
    def builder_config(self):
        """The builder's resolved architecture arguments."""
        return dict(self._config)

    def empty_cache(self, batch_size, cache_length):
        """Zero key/value caches: per decoder block a pair of `[batch_size, N, cache_length, H]`."""
        return [
            tuple(
                ops.zeros(
                    (batch_size, block.num_heads, cache_length, block.head_dim),
                    block.compute_dtype,
                )
                for _ in range(2)
            )
            for block in self._decoder_blocks
        ]

    def get_config(self):
        # The constructor's arguments (a `.keras` file rebuilds the graph from
        # them), with the layers' dtype policy: the functional model's own is
        # always float32.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self._layer_dtype),
            **self._config,
            "tokenizer": self._tokenizer_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        tokenizer = config.pop("tokenizer", None)
        model = cls(**config)
        model.tokenizer = tokenizer
        return model
