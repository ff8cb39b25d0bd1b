"""AdamW that clips the gradient of the global batch, not each replica's share."""

import keras
import tensorflow as tf


def _replicas_in_sync():
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


@keras.saving.register_keras_serializable(package="keras_llm")
class AdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` whose gradient clipping sees the whole global batch.

    Keras's optimizer clips before it all-reduces: under a `tf.distribute`
    strategy with N replicas, each replica clips its own partial gradient to
    `global_clipnorm`, so the update depends on how the batch was split (it
    differs from one device's whenever clipping is active and the replicas'
    gradients differ, e.g. through unequal padding). This class moves the
    clipping after the all-reduce, as in one-device training: the replicas'
    gradients are summed, the sum is clipped to its global norm, then applied.
    The communication is the same single all-reduce. On one replica it is
    Keras's AdamW unchanged.

    It overrides two methods of Keras 3's TensorFlow optimizer
    (`_clip_gradients`, `_backend_update_step`); `tests/distribute` checks
    that MirroredStrategy over two devices then equals one device.

    Example:

    ```python
    import keras_llm

    optimizer = keras_llm.training.AdamW(learning_rate=1e-3, global_clipnorm=1.0)
    assert optimizer.global_clipnorm == 1.0
    ```
    """

    def _clip_gradients(self, grads):
        if _replicas_in_sync() > 1:
            return grads  # clipped in _backend_update_step, after the all-reduce
        return super()._clip_gradients(grads)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if _replicas_in_sync() == 1:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        grads_and_vars = self._all_reduce_sum_gradients(zip(grads, variables))
        summed = super()._clip_gradients([g for g, _ in grads_and_vars])
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step,
            self._distribution_strategy,
            list(zip(summed, variables)),
            learning_rate,
        )
