"""Knowledge distillation: a student trained on a frozen teacher's softened outputs.

Built on Keras's own `keras.distillation.Distiller` (Keras >= 3.12), which
runs the frozen teacher in inference mode and trains the student. keras_llm
adds what it lacks for keras_llm's models:

- the loss of Hinton et al. (2015), with its `alpha` and temperature `T`:

      loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
             + (1 - alpha) * CE(labels, s)

  Keras writes the same loss with `student_loss_weight = 1 - alpha` (its
  `Distiller`) and `LogitsDistillation(temperature=T)`; `distill` maps
  `alpha` to it. The KL is computed from log-softmaxes (exact), where
  Keras's `KLDivergence` clips probabilities at 1e-7, which biases it over
  a vocabulary of tens of thousands of tokens;
- padding masked out: Keras's `Distiller` passes no sample weights to its
  losses, so a causal LM's (or a tagger's) padded positions would count.
  Here the per-token KL and cross-entropy are averaged over the tokens whose
  sample weight (the dataset's third element, as `causal_lm_dataset` yields
  it; else the inputs' `padding_mask`) is non-zero, as
  `keras_llm.training.TokenCrossEntropy` averages;
- checks that teacher and student can be distilled at all (same task, same
  vocabulary, same classes), each an error naming the argument.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_llm._checks import check_int, is_finite_real
from keras_llm.layers import TransformerBlock
from keras_llm.models import registry
from keras_llm.models.task_model import BuildsOptimizerFirst
from keras_llm.training.defaults import (
    COMPILE_DEFAULTS,
    PEAK_LEARNING_RATE,
    TRAINING_DEFAULTS,
    default_jit_compile,
    make_optimizer,
)

# The training defaults (`COMPILE_DEFAULTS` keys) of the tasks that distill:
# one output of class or token logits, trained with sparse labels.
DISTILLABLE = ("classification", "token_tagging", "causal_lm")
PER_TOKEN = ("token_tagging", "causal_lm")  # [B, T, V] logits, [B, T] labels and weights


def _weighted_mean(values, weights):
    """`sum(w * v) / sum(w)` over every position; the plain mean without weights."""
    if weights is None:
        return ops.mean(values)
    weights = ops.reshape(ops.cast(weights, "float32"), ops.shape(values))
    return ops.divide_no_nan(ops.sum(values * weights), ops.sum(weights))


class LogitsDistillation(keras.distillation.DistillationLoss):
    """`T^2 KL(softmax(t / T) || softmax(s / T))`, averaged over examples or real tokens.

    The distillation term of Hinton et al. (2015): the teacher's logits `t`
    and the student's `s`, both `[B, C]` (classes) or `[B, T, V]` (tokens),
    softened by the temperature `T`; the `T^2` keeps its gradient's scale
    independent of `T`. The KL is computed in float32 from log-softmaxes.
    With `sample_weight` (`[B]` or `[B, T]`) it is the weighted mean, so
    padded tokens (weight 0) do not count.

    Args:
        temperature: `T`, a positive number.

    Example:

    ```python
    import numpy as np
    from keras_llm.training.distillation import LogitsDistillation

    loss = LogitsDistillation(temperature=2.0)
    teacher = np.array([[2.0, 0.0]], "float32")
    # The same logits: nothing to learn.
    assert abs(float(loss.compute_loss(teacher, teacher))) < 1e-7
    ```
    """

    def __init__(self, temperature=2.0):
        if not is_finite_real(temperature) or temperature <= 0:
            raise ValueError(
                f"`temperature` must be a positive number. Received: temperature={temperature!r}"
            )
        self.temperature = float(temperature)
        # Keras's Distiller reads these to pick features; None: the final outputs.
        self.teacher_layer_name = self.student_layer_name = None

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        """The loss of `teacher_outputs` against `student_outputs`, a scalar."""
        temperature = self.temperature
        # Softmax over V in float32, whatever the compute dtype: a bfloat16
        # log-softmax over 50k logits loses the tail the student learns from.
        teacher = ops.cast(teacher_outputs, "float32") / temperature
        student = ops.cast(student_outputs, "float32") / temperature
        teacher_log_probs = ops.log_softmax(teacher, axis=-1)
        student_log_probs = ops.log_softmax(student, axis=-1)
        kl = ops.sum(  # [B] or [B, T]
            ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1
        )
        return temperature**2 * _weighted_mean(kl, sample_weight)

    def get_config(self):
        return {"temperature": self.temperature}


class HiddenStateDistillation(keras.distillation.FeatureDistillation):
    """Mean squared error between a teacher layer's and a student layer's hidden states.

    Both layers output `[B, T, D]` with the same width `D`; the squared
    error is averaged over `D` and then over the real tokens (the inputs'
    `padding_mask`, passed as `sample_weight`). Layers of different widths
    are refused by `distill` (a projection between them would be trained
    with the student but not be part of it).

    Args:
        teacher_layer_name: The name of the teacher's layer.
        student_layer_name: The name of the student's layer.

    Example:

    ```python
    import numpy as np
    from keras_llm.training.distillation import HiddenStateDistillation

    loss = HiddenStateDistillation("transformer_layer_1", "transformer_layer_0")
    teacher = np.ones((1, 3, 4), "float32")
    student = np.zeros((1, 3, 4), "float32")
    mask = np.array([[1, 1, 0]])
    assert abs(float(loss.compute_loss(teacher, student, sample_weight=mask)) - 1.0) < 1e-7
    ```
    """

    def __init__(self, teacher_layer_name, student_layer_name):
        super().__init__(
            loss="mse", teacher_layer_name=teacher_layer_name, student_layer_name=student_layer_name
        )

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        """The loss of `teacher_outputs` against `student_outputs`, a scalar."""
        difference = ops.cast(teacher_outputs, "float32") - ops.cast(student_outputs, "float32")
        return _weighted_mean(ops.mean(ops.square(difference), axis=-1), sample_weight)


class _Distiller(BuildsOptimizerFirst, keras.distillation.Distiller):
    """Keras's `Distiller`, with the padding mask passed to each loss.

    Keras's `compute_loss` calls the student loss and the distillation
    losses without sample weights; this one passes the batch's weights
    (`per_token`: else the inputs' `padding_mask`) to both, and the
    `padding_mask` to the hidden-state losses. Everything else (the frozen
    teacher in inference mode, the feature extractors, the loss trackers)
    is Keras's.
    """

    def __init__(self, *args, per_token=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_token = per_token

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        padding_mask = x.get("padding_mask") if isinstance(x, dict) else None
        weights = sample_weight
        if weights is None and self.per_token:
            weights = padding_mask
        student_loss = 0.0
        if self.student_loss_weight > 0.0 and y is not None:
            student_loss = self._student_loss(y, y_pred, sample_weight=weights)
        distillation_loss = 0.0
        if self.student_loss_weight < 1.0:
            teacher_features = self._extract_all_teacher_features(x)
            student_features = self._extract_all_student_features(x, y_pred)
            for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
                if isinstance(loss, HiddenStateDistillation):
                    value = loss.compute_loss(
                        teacher_features[loss.teacher_layer_name],
                        student_features[loss.student_layer_name],
                        sample_weight=padding_mask,
                    )
                else:
                    value = loss.compute_loss(
                        teacher_features["final_output"], y_pred, sample_weight=weights
                    )
                distillation_loss = distillation_loss + weight * value
        total_loss = (
            self.student_loss_weight * student_loss
            + (1.0 - self.student_loss_weight) * distillation_loss
        )
        self.student_loss_tracker.update_state(student_loss)
        self.distillation_loss_tracker.update_state(distillation_loss)
        self.total_loss_tracker.update_state(total_loss)
        return total_loss


def _task_key(model, argument):
    """The training-defaults key of `model`'s task; an error naming `argument` if it cannot distill."""
    try:
        task = registry.get_task(model)
    except ValueError as error:
        raise ValueError(
            f"`{argument}` must be a keras_llm model (its `task` says what it is). {error}"
        ) from None
    if task.compile not in DISTILLABLE:
        raise ValueError(
            f"`{argument}` must be a classifier, a tagger or a causal LM (their logits are "
            f"distilled); it is {task.description}. Received: {argument}={model.name!r} with "
            f"task={task.name!r}"
        )
    return task.compile


def _transformer_blocks(model):
    """The model's transformer blocks, in order: its decoder blocks, or its TransformerBlocks."""
    blocks = getattr(model, "_decoder_blocks", None)  # the decoders' own list (DecoderModel)
    if blocks is None:
        blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    return list(blocks)


def _feature_losses(teacher, student, feature_layers):
    """`HiddenStateDistillation`s for `feature_layers`, their widths checked."""
    if feature_layers is None:
        return []
    if feature_layers == "last":
        pairs = []
        for model, argument in ((teacher, "teacher"), (student, "student")):
            blocks = _transformer_blocks(model)
            if not blocks:
                raise ValueError(
                    f"feature_layers='last': `{argument}` ({model.name!r}) has no transformer "
                    "block to take hidden states from. Received: feature_layers='last'"
                )
            pairs.append(blocks[-1].name)
        feature_layers = [tuple(pairs)]
    if isinstance(feature_layers, str) or not isinstance(feature_layers, (list, tuple)) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(n, str) for n in p)
        for p in feature_layers
    ):
        raise ValueError(
            "`feature_layers` must be None, 'last' or a list of (teacher layer name, student "
            f"layer name) pairs. Received: feature_layers={feature_layers!r}"
        )
    losses = []
    for teacher_name, student_name in feature_layers:
        widths = []
        for model, argument, name in (
            (teacher, "teacher", teacher_name), (student, "student", student_name)
        ):
            try:
                output = model.get_layer(name).output
            except ValueError:
                raise ValueError(
                    f"`feature_layers`: `{argument}` ({model.name!r}) has no layer {name!r}. "
                    f"Received: feature_layers={feature_layers!r}"
                ) from None
            widths.append(output.shape[-1] if len(output.shape) == 3 else None)
        if None in widths or widths[0] != widths[1]:
            raise ValueError(
                "`feature_layers`: hidden-state distillation needs two [batch, tokens, width] "
                f"outputs of the same width; teacher layer {teacher_name!r} gives width "
                f"{widths[0]}, student layer {student_name!r} width {widths[1]}. Received: "
                f"feature_layers={feature_layers!r}"
            )
        losses.append(HiddenStateDistillation(teacher_name, student_name))
    return losses


def _check_pair(teacher, student, key):
    """Errors unless the student can learn the teacher's outputs: same ids in, same classes out."""
    student_key = _task_key(student, "student")
    if student_key != key:
        raise ValueError(
            "`teacher` and `student` must be models of the same task. Received: teacher="
            f"{teacher.name!r} ({registry.get_task(teacher).name}), student={student.name!r} "
            f"({registry.get_task(student).name})"
        )
    if teacher.vocabulary_size != student.vocabulary_size:
        raise ValueError(
            "`teacher` and `student` must read (and a causal LM predict) the same token ids: "
            "build the student with the teacher's tokenizer. Received: teacher vocabulary_size="
            f"{teacher.vocabulary_size}, student vocabulary_size={student.vocabulary_size}"
        )
    if key != "causal_lm":
        classes = [model.outputs[0].shape[-1] for model in (teacher, student)]
        if classes[0] != classes[1]:
            raise ValueError(
                "`teacher` and `student` must have the same classes. Received: teacher with "
                f"{classes[0]} classes, student with {classes[1]}"
            )
        names = [list(getattr(m, "label_names", None) or []) for m in (teacher, student)]
        if all(names) and names[0] != names[1]:
            raise ValueError(
                "`teacher` and `student` must name their classes alike, in the same order. "
                f"Received: teacher label_names={names[0]}, student label_names={names[1]}"
            )
    carried = [getattr(m, "tokenizer", None) for m in (teacher, student)]
    if None not in carried:
        specials = [registry.special_tokens(key_task, tok) for key_task, tok in
                    zip((registry.get_task(teacher).name,) * 2, carried)]
        if specials[0] != specials[1]:
            raise ValueError(
                "`teacher` and `student` carry tokenizers with different special tokens: "
                f"teacher {specials[0]}, student {specials[1]}. Give the student the teacher's "
                "tokenizer."
            )


def _distiller(
    teacher, student, *, temperature, alpha, feature_layers=None, feature_weight=1.0,
    learning_rate=None, total_steps=TRAINING_DEFAULTS["total_steps"], jit_compile="auto",
):
    """The compiled `_Distiller` of `distill`, its settings and models checked first.

    Building it freezes `teacher` (`distill` restores its `trainable`).
    """
    if not is_finite_real(temperature) or temperature <= 0:
        raise ValueError(
            f"`temperature` must be a positive number. Received: temperature={temperature!r}"
        )
    if not is_finite_real(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}")
    if not is_finite_real(feature_weight) or feature_weight < 0:
        raise ValueError(
            "`feature_weight` must be a non-negative number. "
            f"Received: feature_weight={feature_weight!r}"
        )
    key = _task_key(teacher, "teacher")
    _check_pair(teacher, student, key)
    losses = [LogitsDistillation(temperature)] + _feature_losses(teacher, student, feature_layers)
    distiller = _Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=losses,
        distillation_loss_weights=[1.0] + [float(feature_weight)] * (len(losses) - 1),
        student_loss_weight=1.0 - float(alpha),
        per_token=key in PER_TOKEN,
        name="distiller",
    )
    defaults = COMPILE_DEFAULTS[key](0.0)  # the task's loss and metrics
    optimizer = make_optimizer(
        learning_rate or PEAK_LEARNING_RATE[key], total_steps=total_steps,
        warmup_steps=min(TRAINING_DEFAULTS["warmup_steps"], max(1, total_steps // 10)),
    )
    distiller.compile(
        optimizer=optimizer,
        loss=defaults["loss"],
        metrics=defaults.get("metrics"),
        weighted_metrics=defaults.get("weighted_metrics"),
        jit_compile=default_jit_compile(key) if jit_compile == "auto" else jit_compile,
    )
    return distiller


def _total_steps(dataset, epochs, steps_per_epoch):
    """The optimizer schedule's length: epochs x steps, where known; else the default."""
    if steps_per_epoch is None and isinstance(dataset, tf.data.Dataset):
        cardinality = int(dataset.cardinality())
        steps_per_epoch = cardinality if cardinality > 0 else None
    if steps_per_epoch is None:
        return TRAINING_DEFAULTS["total_steps"]
    return max(2, epochs * steps_per_epoch)


def distill(
    teacher,
    student,
    dataset,
    *,
    temperature=2.0,
    alpha=0.5,
    epochs=1,
    validation_data=None,
    steps_per_epoch=None,
    learning_rate=None,
    feature_layers=None,
    feature_weight=1.0,
    jit_compile="auto",
    callbacks=None,
    verbose="auto",
):
    """Trains `student` on `dataset` to match the frozen `teacher`'s logits (and labels).

    The loss (Hinton et al., 2015; Keras's `Distiller` with
    `student_loss_weight = 1 - alpha`) is

        alpha * (T^2 KL(softmax(t / T) || softmax(s / T)) + feature_weight * MSE)
        + (1 - alpha) * CE(labels, s)

    with `t`, `s` the teacher's and student's logits and `T` the
    temperature. A classifier's terms are averaged over examples; a causal
    LM's (and a tagger's) over the tokens whose sample weight is non-zero
    (the dataset's third element, else the inputs' `padding_mask`), so
    padding never counts. `MSE` is the hidden-state term, present only with
    `feature_layers`. The teacher runs in inference mode and is frozen
    (its `trainable` is restored afterwards); only the student's weights
    change.

    The student is trained with keras_llm's training defaults for its task
    (`keras_llm.training.make_optimizer`: AdamW, warm-up and linear decay
    over `epochs x steps_per_epoch` steps, peak `PEAK_LEARNING_RATE` of the
    task unless `learning_rate`) and its metrics. Afterwards the student is
    compiled with that optimizer (its state included: it is saved with the
    student, and `student.fit` continues from it) and its task's loss and
    metrics.

    Args:
        teacher: A trained keras_llm classifier (`build_bert_classifier`,
            `from_pretrained(..., task="classify")`), tagger or causal LM
            (`build_gpt`, `build_llama`).
        student: A model of the same task, the same token ids
            (`vocabulary_size`, special tokens) and the same classes.
        dataset: A `tf.data.Dataset` of `(inputs, labels)` or `(inputs,
            labels, sample_weight)` batches, as `keras_llm.data`'s pipelines
            give them; with `alpha=1`, labels are not used.
        temperature: `T > 0`; 1 leaves the teacher's distribution as is,
            higher values soften it (2 to 4 are usual for BERT students).
        alpha: The weight of the distillation term, in `[0, 1]`: 0 is
            plain training on the labels, 1 learns from the teacher alone.
        epochs: Passes over `dataset` (or of `steps_per_epoch` batches).
        validation_data: As for `fit`; reported as `val_*` in the history.
        steps_per_epoch: Batches per epoch; default: all of `dataset`.
        learning_rate: The peak learning rate; default: the task's.
        feature_layers: Hidden-state distillation as well: None (off),
            `"last"` (the last transformer block of each model) or a list
            of `(teacher layer name, student layer name)` pairs; each pair
            must output `[batch, tokens, width]` of the same width (a
            MiniLM-L6 teacher, width 384, and `bert_mini`, 256, cannot).
            Keras's `Distiller` then runs the student a second time to
            extract its features: a step costs about one more forward pass.
        feature_weight: The weight of each hidden-state term.
        jit_compile: As for `keras_llm.compile_model`.
        callbacks, verbose: As for `fit`.

    Returns:
        `(student, history)`: the same `student` object, trained, and the
        `keras.callbacks.History` of the run, whose `history` holds per
        epoch `total_loss`, `student_loss` (the cross-entropy),
        `distillation_loss` (the teacher term, before `alpha`), the
        task's metrics (`accuracy`) and their `val_` twins.

    Raises:
        ValueError: naming the argument, before anything is trained, when
            `temperature <= 0`, `alpha` is outside `[0, 1]`, the models are
            not of one distillable task or differ in vocabulary or classes,
            or `feature_layers` names a layer missing or of another width.

    Example:

    ```python
    import numpy as np
    import tensorflow as tf
    import keras_llm

    sizes = dict(vocabulary_size=50, max_sequence_length=8, num_classes=2)
    teacher = keras_llm.build_bert_classifier(
        num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, **sizes)
    student = keras_llm.build_bert_classifier(
        num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, **sizes)
    ids = np.random.default_rng(0).integers(1, 50, (16, 8)).astype("int32")
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids),
              "padding_mask": np.ones_like(ids)}
    dataset = tf.data.Dataset.from_tensor_slices((inputs, ids[:, 0] % 2)).batch(8)
    student, history = keras_llm.training.distill(
        teacher, student, dataset, temperature=2.0, alpha=0.5, epochs=1, verbose=0)
    assert set(history.history) >= {"distillation_loss", "student_loss", "accuracy"}
    ```
    """
    check_int("epochs", epochs, where="distill")
    if steps_per_epoch is not None:
        check_int("steps_per_epoch", steps_per_epoch, where="distill")
    if learning_rate is not None and (not is_finite_real(learning_rate) or learning_rate <= 0):
        raise ValueError(
            f"`learning_rate` must be a positive number. Received: learning_rate={learning_rate!r}"
        )
    teacher_trainable = teacher.trainable
    try:
        distiller = _distiller(
            teacher, student, temperature=temperature, alpha=alpha,
            feature_layers=feature_layers, feature_weight=feature_weight,
            learning_rate=learning_rate, total_steps=_total_steps(dataset, epochs, steps_per_epoch),
            jit_compile=jit_compile,
        )
        history = distiller.fit(
            dataset, epochs=epochs, steps_per_epoch=steps_per_epoch,
            validation_data=validation_data, callbacks=callbacks, verbose=verbose,
            shuffle=not isinstance(dataset, tf.data.Dataset),  # a Dataset is shuffled by its pipeline
        )
    finally:
        teacher.trainable = teacher_trainable
    # The student keeps the optimizer that trained it (its state is saved with
    # it, and `student.fit` continues), with its task's loss and metrics.
    defaults = COMPILE_DEFAULTS[_task_key(student, "student")](0.0)
    student.compile(optimizer=distiller.optimizer, jit_compile=distiller.jit_compile, **defaults)
    return student, history

