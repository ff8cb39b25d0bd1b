"""`TaskModel`: a functional model that says what it is (what `keras_llm.export` serves)."""

import keras

# The tasks of keras_llm's models, as `model.task` names them.
TASKS = (
    "causal_lm",  # keras_llm.models.GPT
    "seq2seq_lm",  # keras_llm.models.Seq2SeqTransformer
    "encoder",  # build_bert
    "masked_lm",  # build_bert_pretrainer
    "classifier",  # build_bert_classifier
    "tagger",  # build_bert_tagger
    "question_answerer",  # build_bert_question_answerer
)


@keras.saving.register_keras_serializable(package="keras_llm")
class TaskModel(keras.Model):
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
        **kwargs,
    ):
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {', '.join(TASKS)}. Received: task={task!r}")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.task = task
        self.vocabulary_size = vocabulary_size
        self.max_sequence_length = max_sequence_length

    def get_config(self):
        # The functional graph's config, plus what the model is; Keras's
        # functional loader passes the extra keys back to __init__.
        return {
            **super().get_config(),
            "task": self.task,
            "vocabulary_size": self.vocabulary_size,
            "max_sequence_length": self.max_sequence_length,
        }
