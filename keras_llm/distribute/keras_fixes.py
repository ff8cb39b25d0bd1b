"""Fixes for Keras 3's `model.fit` under multi-worker `MultiWorkerMirroredStrategy`.

Keras 3.15's TensorFlow trainer fails on two or more workers
(tensorflow/tensorflow#72388, open since Keras 3.0):

1. Its step functions average the logs across workers with
   `strategy.reduce("MEAN", value, axis=0)`, and the logs are scalars (metric
   results), which have no axis 0: "Invalid reduction dimension 0 for input
   with 0 dimensions".
2. Before the first step, `_maybe_symbolic_build` averages a whole input
   batch across workers only to read its shapes and dtypes, and the
   multi-worker reduction cannot take a dict of inputs (keras_llm's models
   take `{"token_ids", "padding_mask"}`).

`install()` patches both: scalars are averaged across workers with
`axis=None` (everything else as before), and the symbolic build reads
this worker's own batch. `get_strategy("multi_worker")` installs them; they
change nothing for one worker or for other strategies.
"""

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as _trainer

_PATCHED = "_keras_llm_multi_worker_fixes"


def _is_multi_worker(strategy):
    return _trainer._collective_all_reduce_multi_worker(strategy)


def install():
    """Installs the fixes once per process (idempotent)."""
    if getattr(_trainer, _PATCHED, False):
        return
    reduce_per_replica = _trainer.reduce_per_replica
    maybe_symbolic_build = _trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_scalars_too(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not _is_multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)

        def mean(value):
            axis = 0 if value.shape.rank else None  # scalars: no batch axis
            return strategy.reduce("MEAN", value, axis=axis)

        return tree.map_structure(mean, values)

    def symbolic_build_from_local_batch(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not _is_multi_worker(strategy):
            return maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    _trainer.reduce_per_replica = reduce_scalars_too
    _trainer.TensorFlowTrainer._maybe_symbolic_build = symbolic_build_from_local_batch
    setattr(_trainer, _PATCHED, True)
