"""Every training default of keras_llm, in one place.

The builders call `compile_model` with these values, so a freshly built model
trains well with a bare `model.fit(dataset)`. To change anything, call
`keras_llm.compile_model(model, task, **overrides)` again, or
`model.compile(...)` with your own objects.

| setting | value | why |
|---|---|---|
| optimizer | AdamW, beta_1 0.9, beta_2 0.999, epsilon 1e-6 | BERT and GPT-2 |
| weight decay | 0.01, none on LayerNorm, biases, embeddings | BERT's recipe |
| gradient clipping | global norm 1.0, of the gradient summed over replicas | BERT, GPT-2, nanoGPT |
| learning rate | linear warm-up for `warmup_steps`, then linear decay to 10% of the peak at `total_steps`, then constant | BERT (decay to a floor rather than zero so a longer `fit` still learns) |
| peak learning rate | causal LM 6e-4, BERT pre-training 1e-4, fine-tuning (classification, tagging, QA) 5e-5 | nanoGPT/GPT-3 small, BERT, BERT fine-tuning |
| steps | `warmup_steps=100`, `total_steps=10000` | pass the real `total_steps` when you know it |
| loss | sparse cross-entropy on logits, averaged over the tokens whose sample weight is non-zero | padding never counts |
| loss scaling | dynamic, for `mixed_float16` models only | float16's small range |
| metrics | accuracy (and perplexity for language models), weighted by the same sample weights | |

Padding is excluded through Keras's standard `sample_weight`: datasets for
language models yield `(inputs, labels, sample_weight)` with the padding mask
as the weight, as keras-hub's preprocessors do.
"""

import keras
import tensorflow as tf

from keras_llm.training.optimizer import AdamW

TRAINING_DEFAULTS = {
    "beta_1": 0.9,
    "beta_2": 0.999,
    "epsilon": 1e-6,
    "weight_decay": 0.01,
    "global_clipnorm": 1.0,
    "warmup_steps": 100,
    "total_steps": 10_000,
    "final_learning_rate_fraction": 0.1,
}

# Names (regex-matched against variable names) that get no weight decay.
NO_WEIGHT_DECAY = ["bias", "gamma", "beta", "embeddings"]

PEAK_LEARNING_RATE = {
    "causal_lm": 6e-4,
    # The peak of the Transformer paper's schedule for its base model
    # (d^-0.5 * warmup^-0.5 = 512^-0.5 * 4000^-0.5).
    "seq2seq_lm": 7e-4,
    "bert_pretraining": 1e-4,
    "classification": 5e-5,
    "token_tagging": 5e-5,
    "question_answering": 5e-5,
}


@keras.saving.register_keras_serializable(package="keras_llm")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak`, then linear decay to a floor.

    lr(step) = peak * step / warmup_steps                     for step < warmup_steps
             = peak * (1 - (1 - f) * (step - w) / (total - w))  up to total_steps
             = peak * f                                         afterwards

    with `f = final_fraction`.

    Args:
        peak: The learning rate at the end of warm-up.
        warmup_steps: Steps of linear warm-up (0 for none).
        total_steps: The step at which the decay reaches the floor.
        final_fraction: The floor, as a fraction of `peak`.

    Example:

    ```python
    import keras_llm

    schedule = keras_llm.training.WarmupLinearDecay(
        peak=1e-3, warmup_steps=10, total_steps=110, final_fraction=0.1
    )
    assert abs(float(schedule(5)) - 5e-4) < 1e-9
    assert abs(float(schedule(60)) - 1e-3 * (1 - 0.9 * 0.5)) < 1e-9
    assert abs(float(schedule(500)) - 1e-4) < 1e-9
    ```
    """

    def __init__(self, peak, warmup_steps, total_steps, final_fraction=0.1):
        if peak <= 0:
            raise ValueError(f"`peak` must be positive. Received: peak={peak}")
        if warmup_steps < 0 or total_steps <= warmup_steps:
            raise ValueError(
                "Expected 0 <= warmup_steps < total_steps. Received: "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(
                "`final_fraction` must be in [0, 1]. "
                f"Received: final_fraction={final_fraction}"
            )
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        warmup = ops.cast(self.warmup_steps, "float32")
        warm = self.peak * step / ops.maximum(warmup, 1.0)
        progress = ops.clip(
            (step - warmup) / float(self.total_steps - self.warmup_steps), 0.0, 1.0
        )
        decayed = self.peak * (1.0 - (1.0 - self.final_fraction) * progress)
        return ops.where(step < warmup, warm, decayed)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "final_fraction": self.final_fraction,
        }


def make_optimizer(learning_rate, **overrides):
    """AdamW with keras_llm's defaults and the warm-up/decay schedule.

    Args:
        learning_rate: The peak learning rate.
        label_smoothing: The token loss's label smoothing (`causal_lm` and
            `seq2seq_lm`); default 0.1 for `seq2seq_lm` (the Transformer
            paper's), 0 for `causal_lm`.
        **overrides: Any key of `TRAINING_DEFAULTS`.

    Returns:
        A `keras_llm.training.AdamW` (Keras's AdamW, clipping the gradient
        summed over replicas) that applies no weight decay to LayerNorm
        parameters, biases or embeddings.

    Example:

    ```python
    import keras_llm

    optimizer = keras_llm.training.make_optimizer(1e-3, total_steps=500)
    assert optimizer.global_clipnorm == 1.0
    ```
    """
    unknown = set(overrides) - set(TRAINING_DEFAULTS)
    if unknown:
        raise ValueError(
            f"Unknown training settings {sorted(unknown)}. "
            f"Expected some of {sorted(TRAINING_DEFAULTS)}."
        )
    settings = {**TRAINING_DEFAULTS, **overrides}
    total_steps = settings["total_steps"]
    warmup_steps = min(settings["warmup_steps"], max(total_steps // 10, 0))
    schedule = WarmupLinearDecay(
        peak=learning_rate,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        final_fraction=settings["final_learning_rate_fraction"],
    )
    optimizer = AdamW(
        learning_rate=schedule,
        weight_decay=settings["weight_decay"],
        beta_1=settings["beta_1"],
        beta_2=settings["beta_2"],
        epsilon=settings["epsilon"],
        global_clipnorm=settings["global_clipnorm"],
    )
    optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer


def _token_loss(label_smoothing=0.0):
    # Mean over tokens with non-zero weight, not over all B*T positions: a
    # batch with much padding must not get a smaller loss and gradient; and
    # over the global batch, not per replica (see TokenCrossEntropy).
    from keras_llm.training.token_loss import TokenCrossEntropy

    return TokenCrossEntropy(label_smoothing)


def _lm_metrics():
    from keras_hub.metrics import Perplexity

    return [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        Perplexity(from_logits=True, name="perplexity"),
    ]


# Tasks whose keras_llm pipelines give every batch one shape (causal_lm_dataset's
# fixed windows, bert_pretraining_dataset's padded pairs): XLA compiles their step once.
def _accuracy():
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def _question_answering(label_smoothing):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return dict(
        # The mean of the start and end cross-entropies, as Hugging Face's
        # BertForQuestionAnswering.
        loss={"start_logits": loss, "end_logits": loss},
        loss_weights={"start_logits": 0.5, "end_logits": 0.5},
        metrics={name: [_accuracy()] for name in ("start_logits", "end_logits")},
    )


# The loss and metrics of each set of training defaults (the registry's
# `Task.compile`), given the label smoothing: `model.compile`'s arguments.
COMPILE_DEFAULTS = {
    "causal_lm": lambda smoothing: dict(
        loss=_token_loss(smoothing), weighted_metrics=_lm_metrics()
    ),
    "seq2seq_lm": lambda smoothing: dict(
        loss=_token_loss(smoothing), weighted_metrics=_lm_metrics()
    ),
    "bert_pretraining": lambda smoothing: dict(
        loss={"mlm_logits": _token_loss(), "nsp_logits": _token_loss()},
        weighted_metrics={"mlm_logits": _lm_metrics(), "nsp_logits": [_accuracy()]},
    ),
    "classification": lambda smoothing: dict(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[_accuracy()],
    ),
    # Trained with per-token sample weights (each word's first piece).
    "token_tagging": lambda smoothing: dict(loss=_token_loss(), weighted_metrics=[_accuracy()]),
    "question_answering": _question_answering,
}


def _compile_key(model, task):
    """The key of COMPILE_DEFAULTS for `task`: given, or the registry's for the model."""
    # Imported here: keras_llm.models imports this module (its builders compile).
    from keras_llm.models import registry

    if task is None or task in registry.TASKS or any(
        task == t.alias for t in registry.TASKS.values()
    ):
        key = registry.get_task(model if task is None else task).compile
        if key not in COMPILE_DEFAULTS:
            raise ValueError(
                f"{registry.get_task(model if task is None else task).description} has no "
                f"training objective to compile (put a head on it). Received: task={task!r}"
            )
        return key
    if task not in COMPILE_DEFAULTS:
        raise ValueError(
            f"Unknown task. Received: task={task!r}; expected one of "
            f"{sorted(COMPILE_DEFAULTS)} or a model task ({', '.join(registry.TASKS)})."
        )
    return task


FIXED_SHAPE_TASKS = ("causal_lm", "bert_pretraining")


def default_jit_compile(task, strategy=None):
    """Whether keras_llm trains `task` XLA-compiled: its `jit_compile="auto"`.

    True on one device (CPU or GPU) for the tasks whose batches all have one
    shape (`FIXED_SHAPE_TASKS`); otherwise Keras's `"auto"` (XLA on one GPU,
    off on CPUs and under multi-replica strategies; TPUs compile anyway).
    Measured on a 2-core CPU (benchmarks/RESULTS.md): XLA trains a GPT 1.35x
    to 1.65x faster per step and pays for its compile within the first
    epoch (`keras-llm train`: 356 s instead of 477 s); but XLA compiles once
    per batch shape, and the length-bucketed batches of the seq2seq and
    fine-tuning pipelines (a shape per bucket, and their last batches) made
    a seq2seq run's first 40 steps take 356 s instead of 28 s. Keras's own
    `"auto"` leaves XLA off on CPUs; Keras 3 cannot compile a multi-replica
    step (keras-team/keras#19005).

    Example:

    ```python
    from keras_llm.training import default_jit_compile

    assert default_jit_compile("causal_lm") is True
    assert default_jit_compile("classification") == "auto"
    ```
    """
    strategy = strategy or tf.distribute.get_strategy()
    if task in FIXED_SHAPE_TASKS and strategy.num_replicas_in_sync == 1:
        return True
    return "auto"


def compile_model(
    model, task=None, learning_rate=None, jit_compile="auto", label_smoothing=None, **overrides
):
    """Compiles `model` with keras_llm's training defaults for `task`.

    Args:
        model: A model from one of the builders.
        task: None (the default): the training defaults of the model's own
            task (`model.task`, looked up in `keras_llm.models.registry`);
            or a model task name (`"classifier"`), or one of `"causal_lm"` (outputs next-token logits), `"seq2seq_lm"`
            (outputs the decoder's next-token logits), `"bert_pretraining"`
            (outputs `mlm_logits` and `nsp_logits`), `"classification"`
            (outputs class logits), `"token_tagging"` (outputs per-token tag
            logits; trained with per-token sample weights) or
            `"question_answering"` (outputs `start_logits` and `end_logits`;
            the loss is the mean of their two cross-entropies, as in
            Hugging Face's `BertForQuestionAnswering`).
        learning_rate: Peak learning rate; defaults to `PEAK_LEARNING_RATE[task]`.
        jit_compile: `"auto"` (keras_llm's default, `default_jit_compile`:
            XLA on one device, CPU or GPU, for `causal_lm` and
            `bert_pretraining`, whose batches all have one shape; otherwise
            Keras's `"auto"`: XLA on one GPU only, never under multi-replica
            strategies), True or False. True is refused for multi-replica
            strategies other than TPUs, where Keras 3's XLA step fails
            (keras-team/keras#19005).
        label_smoothing: The token loss's label smoothing (`causal_lm` and
            `seq2seq_lm`); default 0.1 for `seq2seq_lm` (the Transformer
            paper's), 0 for `causal_lm`.
        **overrides: Any key of `TRAINING_DEFAULTS`.

    A model built with `precision="mixed_float16"` gets its optimizer
    wrapped in `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling).

    Returns:
        `model`, compiled.

    Example:

    ```python
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano")
    keras_llm.compile_model(model, "causal_lm", learning_rate=1e-3, total_steps=300)
    assert float(model.optimizer.learning_rate) == 0.0  # warm-up starts at 0
    ```
    """
    task = _compile_key(model, task)
    if label_smoothing is None:
        label_smoothing = 0.1 if task == "seq2seq_lm" else 0.0
    elif task not in ("causal_lm", "seq2seq_lm"):
        raise ValueError(
            "`label_smoothing` is for the token losses of causal_lm and seq2seq_lm. "
            f"Received: label_smoothing={label_smoothing!r} with task={task!r}"
        )
    strategy = model.distribute_strategy
    if (
        jit_compile is True
        and strategy.num_replicas_in_sync > 1
        and not isinstance(strategy, tf.distribute.TPUStrategy)
    ):
        raise ValueError(
            "jit_compile=True with a strategy of "
            f"{strategy.num_replicas_in_sync} replicas: Keras 3 compiles the whole "
            "distributed step with XLA, which then reads variables on other devices "
            "and fails (keras-team/keras#19005). Use jit_compile='auto' (which turns "
            "XLA off under tf.distribute) or False; TPUs compile with XLA anyway."
        )
    if jit_compile == "auto":
        jit_compile = default_jit_compile(task, strategy)
    optimizer = make_optimizer(learning_rate or PEAK_LEARNING_RATE[task], **overrides)
    if any(layer.dtype_policy.name == "mixed_float16" for layer in model.layers):
        # float16 gradients underflow: scale the loss up, the gradients back down.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        jit_compile=jit_compile,
        **COMPILE_DEFAULTS[task](label_smoothing),
    )
    return model
