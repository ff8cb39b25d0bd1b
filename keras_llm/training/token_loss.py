"""The language-model loss: cross-entropy averaged over the global batch's real tokens."""

import keras
import tensorflow as tf
from keras import ops

from keras_llm._graph_checks import check_in_range


@keras.saving.register_keras_serializable(package="keras_llm")
class TokenCrossEntropy(keras.losses.Loss):
    """Sparse cross-entropy on logits, averaged over tokens with non-zero weight.

    `sum(weight * loss) / sum(weight)`, where both sums run over the whole
    global batch: under a `tf.distribute` strategy, each replica divides its
    sum by the all-reduced sum of weights, so a batch gives the same update
    on one device or on many even when its replicas hold different amounts
    of padding. Keras's
    `reduction="mean_with_sample_weight"` divides by each replica's own sum
    instead, which differs whenever padding is unevenly split. The loss is
    computed in float32 whatever the logits' dtype.

    With `label_smoothing` e > 0 each token's target is `(1 - e) one_hot(y)
    + e / V` (the Transformer paper's e = 0.1), as Keras's
    `CategoricalCrossentropy(label_smoothing=e)` smooths, without building
    the one-hot labels.

    Integer labels outside `[0, V)` (V: the logits' last dimension) are an
    error naming `labels` and listing them (`ValueError` eagerly, an
    `InvalidArgumentError` in a graph), where the cross-entropy would raise
    on a CPU or give a NaN loss on a GPU. Inside an XLA-compiled step the
    check is the model's (`keras_llm._graph_checks.CheckedSteps`): XLA
    drops assertions.

    Example:

    ```python
    import numpy as np
    import keras_llm

    loss = keras_llm.training.TokenCrossEntropy()
    logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1]]], "float32"))
    value = loss(np.array([[0, 0]]), logits, sample_weight=np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(value, -np.log(0.5), rtol=1e-6)  # padding ignored
    ```
    """

    def __init__(self, label_smoothing=0.0, name="token_cross_entropy", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not (
            0.0 <= label_smoothing < 1.0
        ):
            raise ValueError(
                "`label_smoothing` must be a number in [0, 1). "
                f"Received: label_smoothing={label_smoothing!r}"
            )
        self.label_smoothing = float(label_smoothing)

    def _losses(self, y_true, y_pred):
        """Each token's loss: cross-entropy against the label smoothed towards uniform."""
        if not self.label_smoothing:
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        # (1 - e) one_hot(y) + e / V as the target (Szegedy et al. 2016, as
        # Keras's CategoricalCrossentropy smooths), without a [B, T, V] one-hot.
        log_probs = ops.log_softmax(y_pred, axis=-1)
        labels = ops.cast(y_true, "int32")[..., None]
        picked = ops.squeeze(ops.take_along_axis(log_probs, labels, axis=-1), -1)
        smoothing = self.label_smoothing
        return -(1.0 - smoothing) * picked - smoothing * ops.mean(log_probs, axis=-1)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, "float32")
        y_true = tf.convert_to_tensor(y_true)
        if y_true.dtype.is_integer and y_pred.shape[-1] is not None:
            y_true = check_in_range(y_true, "labels", y_pred.shape[-1], what="labels",
                                    unit="label(s)", where=" (the classes of the logits)")
        losses = self._losses(y_true, y_pred)
        weights = (
            ops.ones_like(losses) if sample_weight is None else ops.cast(sample_weight, "float32")
        )
        weights = ops.reshape(weights, ops.shape(losses))
        total = ops.sum(losses * weights)
        count = ops.sum(weights)
        replica = tf.distribute.get_replica_context()
        replicas = 1 if replica is None else replica.num_replicas_in_sync
        if replicas > 1:
            count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
        # This replica's share of the global mean: summed over replicas (as
        # the gradients are) it is the global mean. Keras's own losses scale
        # by 1 / replicas inside their reduction and undo it for the logged
        # loss; this share already is that scaled value.
        return ops.divide_no_nan(total, count)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
