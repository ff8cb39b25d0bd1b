"""`TaskModel`: a functional model that says what it is, and the tokenizer it carries."""

import keras

from keras_llm._graph_checks import CheckedSteps
from keras_llm.models import registry

# The tasks of keras_llm's models, as `model.task` names them (the registry's).
TASKS = tuple(registry.TASKS)

# A padded vocabulary: checkpoints round their embedding tables up to one of
# these multiples (GPU-friendly matmuls, e.g. GPT-2's 50257 ids as 50304).
_PADDING_MULTIPLES = (8, 16, 32, 64, 128)


def is_padded_vocabulary(size, model_size):
    """Whether a table of `model_size` rows is a `size`-token vocabulary padded for hardware.

    Checkpoints round their tables up to a multiple of 8 to 128 (GPT-2's
    50,257 ids as 50,304), or give a multiple of 128 a few hundred spare rows
    (Qwen2.5: 151,936 rows for 151,665 tokens): at most 1/256 of the table.
    An 8-token tokenizer on a 99-row table is neither.
    """
    if size >= model_size:
        return False
    rounded = any(-(-size // m) * m == model_size for m in _PADDING_MULTIPLES)
    spare = model_size % 128 == 0 and (model_size - size) * 256 <= model_size
    return rounded or spare


def check_tokenizer(model, tokenizer, argument="tokenizer"):
    """`tokenizer`, checked to give `model`'s ids; a clear error naming `argument` if not.

    A tokenizer fits a model when it has the model's vocabulary size. A
    smaller one fits a model whose vocabulary is the tokenizer's padded for
    hardware (`is_padded_vocabulary`), except a masked LM (its fill-mask
    export ranks every id, so every id must be named): the decoders' loops
    never pick an id past the tokenizer (`keras_llm.generation.Generator`).
    When the model carries a tokenizer, another one must have the same
    special tokens.

    Raises:
        TypeError: `tokenizer` is not a tokenizer.
        ValueError: its vocabulary or special tokens do not fit the model.
    """
    size = getattr(tokenizer, "vocabulary_size", None)
    if not callable(getattr(tokenizer, "tokenize", None)) or not isinstance(size, int):
        raise TypeError(
            f"`{argument}` must be a keras_llm tokenizer (keras_llm.tokenizers: `tokenize`, "
            f"`vocabulary_size`). Received: {argument}={tokenizer!r}"
        )
    task = registry.get_task(model)
    model_size = model.vocabulary_size
    padding_allowed = task.name != "masked_lm"
    if size != model_size and not (padding_allowed and is_padded_vocabulary(size, model_size)):
        expected = (
            f"the model's {model_size} token ids, or fewer padded up to them: "
            f"{task.description} takes a checkpoint's padded table (rounded up to a multiple of "
            "8 to 128, or with spare rows up to 1/256 of a multiple of 128)"
            if padding_allowed else
            f"exactly the model's {model_size} token ids: {task.description} ranks every id"
        )
        raise ValueError(
            f"`{argument}` must have {expected}. Received: "
            f"{argument}={type(tokenizer).__name__} with {size} token ids"
        )
    carried = getattr(model, "tokenizer", None)
    if carried is not None and carried is not tokenizer:
        mine = registry.special_tokens(task.name, carried)
        given = registry.special_tokens(task.name, tokenizer)
        if mine != given:
            raise ValueError(
                f"`{argument}`'s special tokens {given} differ from those of the tokenizer "
                f"the model carries, {mine}. Received: {argument}={type(tokenizer).__name__}"
            )
    return tokenizer


def tokenizer_of(model, tokenizer, missing):
    """`tokenizer` checked against `model` (`check_tokenizer`), else the one `model` carries.

    Args:
        model: A model of keras_llm's builders.
        tokenizer: A tokenizer, or None for `model.tokenizer`.
        missing: The caller's sentence for a model that carries none (why it
            needs one, what to do); the error adds what was received.

    Raises:
        ValueError: `tokenizer` is None and so is `model.tokenizer`, or
            `tokenizer` does not fit the model.
    """
    if tokenizer is not None:
        return check_tokenizer(model, tokenizer)
    carried = getattr(model, "tokenizer", None)
    if carried is None:
        raise ValueError(f"{missing} Received: tokenizer=None, model={model.name!r}")
    return carried


class BuildsOptimizerFirst:
    """A `keras.Model` mixin: the optimizer's variables exist before `fit` traces its step.

    Keras 3.15's TensorFlow trainer builds the optimizer ahead of the step
    only under an explicit distribution strategy (`_maybe_symbolic_build`);
    otherwise its first `apply` creates the slots inside the step's
    `tf.function`, which then traces the whole step a second time (TensorFlow
    retraces a function that created variables). On a small GPT that second
    trace is more than half of the first `fit`'s time. Building the
    optimizer here, in the model's strategy scope as Keras's symbolic build
    does, traces once. It can go when Keras builds it ahead in every case.
    """

    def make_train_function(self, force=False):
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force=force)


class CarriesTokenizer:
    """What a keras_llm model carries besides its graph: its tokenizer and builder config.

    `model.tokenizer` is the tokenizer the model was built, imported or
    trained with (None if it was never given one); assigning it checks it
    against the model (`check_tokenizer`). It is not a tracked sublayer
    (it has no weights); the model's config holds it, so it comes back from
    `keras.saving.load_model` with the model. `model.builder_config` is
    the builder's resolved arguments (sizes, options): what
    `keras_llm.save_pretrained` writes a checkpoint's config from.
    """

    @property
    def tokenizer(self):
        return self.__dict__.get("_carried_tokenizer")

    def __setattr__(self, name, value):
        if name == "tokenizer":
            if isinstance(value, dict):  # a serialized tokenizer, from a config
                value = keras.saving.deserialize_keras_object(value)
            if value is not None:
                check_tokenizer(self, value)
            # Past Keras's attribute tracking: a tokenizer is no sublayer of
            # the model (it has no weights, and its config travels in the model's).
            object.__setattr__(self, "_carried_tokenizer", value)
        else:
            super().__setattr__(name, value)

    def _tokenizer_config(self):
        tokenizer = self.tokenizer
        return None if tokenizer is None else keras.saving.serialize_keras_object(tokenizer)


@keras.saving.register_keras_serializable(package="keras_llm")
class TaskModel(BuildsOptimizerFirst, CheckedSteps, CarriesTokenizer, keras.Model):
    """A functional `keras.Model` that records its task, vocabulary and context.

    The BERT builders return one, so that `keras_llm.export` and the CLI
    read what a model is (`task`) and its sizes (`vocabulary_size`,
    `max_sequence_length`) from the model instead of guessing them from its
    layer names. The three are saved in the `.keras` config.

    Args:
        inputs, outputs, name: As for a functional `keras.Model`.
        task: One of `keras_llm.models.task_model.TASKS`.
        vocabulary_size: Number of token ids of the model's inputs.
        max_sequence_length: The longest input, in tokens.
        tokenizer: The tokenizer it carries (`model.tokenizer`), or None.
        config: The builder's resolved arguments (`model.builder_config`).

    Example:

    ```python
    import keras_llm

    model = keras_llm.build_bert_classifier("bert_tiny", vocabulary_size=100, num_classes=2)
    assert (model.task, model.vocabulary_size, model.max_sequence_length) == (
        "classifier", 100, 512
    )
    ```
    """

    def __init__(
        self, inputs, outputs, name=None, *, task, vocabulary_size, max_sequence_length,
        tokenizer=None, config=None, lora=None, quantization=None, **kwargs,
    ):
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {', '.join(TASKS)}. Received: task={task!r}")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.task = task
        self.vocabulary_size = vocabulary_size
        self.max_sequence_length = max_sequence_length
        self.builder_config = dict(config or {})
        self.tokenizer = tokenizer
        from keras_llm.compression.quantize import restore_quantization
        from keras_llm.training.lora import restore_lora  # training imports the models

        restore_lora(self, lora)  # the adapters a `.keras` config recorded, before its weights
        restore_quantization(self, quantization)

    def get_config(self):
        # The functional graph's config, plus what the model is; Keras's
        # functional loader passes the extra keys back to __init__.
        return {
            **super().get_config(),
            "task": self.task,
            "vocabulary_size": self.vocabulary_size,
            "max_sequence_length": self.max_sequence_length,
            "config": self.builder_config,
            "tokenizer": self._tokenizer_config(),
            **_lora_config(self),
            **_quantization_config(self),
        }


def _quantization_config(model):
    """`{"quantization": settings}` of a weights-only int8 model (`keras_llm.quantize`), else `{}`."""
    from keras_llm.compression.quantize import quantization_config

    config = quantization_config(model)
    return {} if config is None else {"quantization": config}


def _lora_config(model):
    """`{"lora": settings}` of a model with LoRA adapters (`keras_llm.training.lora`), else `{}`."""
    from keras_llm.training.lora import lora_config

    config = lora_config(model)
    return {} if config is None else {"lora": config}
