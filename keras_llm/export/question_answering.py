"""The serving of a question answerer: a question and a context in, the answer's span out.

See `saved_models/README.md` for the signatures.
"""

import tensorflow as tf

from keras_llm._graph import graph_function
from keras_llm.data.question_answering import QUESTION_ANSWERING_DEFAULTS, check_window_settings
from keras_llm.evaluation.question_answering import (
    answer_questions,
    best_spans,
    check_max_answer_length,
)
from keras_llm.export.serving import (
    BERT_ID_SPECS,
    Serving,
    bert_logits,
    checked_bert_inputs,
    serving_tokenizer,
    specials_of,
)


def window_settings(context):
    """The default windows of a question answerer of `context` tokens, as Hugging Face's ratios.

    Windows are `min(384, context)` tokens (Hugging Face's pipeline). Its
    `doc_stride` 128 and `max_question_length` 64 are a third and a sixth
    of its 384-token windows; a shorter window keeps those ratios (rounded
    down, a question of at least 1 token), the stride then lowered where
    needed so that each window still moves on (`doc_stride <
    window - 3 - max_question_length`). A model of 384 tokens or more gets
    128 and 64 exactly. `max_answer_length` stays 30 (Hugging Face's
    run_qa.py).

    Args:
        context: The model's `max_sequence_length`.

    Returns:
        A dict of `sequence_length`, `doc_stride`, `max_question_length`,
        `max_answer_length`.

    Example:

    ```python
    from keras_llm.export.question_answering import window_settings

    assert window_settings(512) == dict(
        sequence_length=384, doc_stride=128, max_question_length=64, max_answer_length=30
    )
    assert window_settings(64) == dict(
        sequence_length=64, doc_stride=21, max_question_length=10, max_answer_length=30
    )
    ```
    """
    full = QUESTION_ANSWERING_DEFAULTS["sequence_length"]  # 384
    window = min(full, context)
    question = max(1, window * QUESTION_ANSWERING_DEFAULTS["max_question_length"] // full)
    stride = window * QUESTION_ANSWERING_DEFAULTS["doc_stride"] // full
    stride = max(0, min(stride, window - 4 - question))
    return dict(
        sequence_length=window, doc_stride=stride, max_question_length=question,
        max_answer_length=QUESTION_ANSWERING_DEFAULTS["max_answer_length"],
    )


class QuestionAnswererServing(Serving):
    """Signatures of a question-answering export: `serving_default` (`question`, `context`
    -> `answer`, `score`, `start`, `end`) and `answer_ids` (from ids: `start_logits`,
    `end_logits`, and the best span's `start_index`, `end_index`, `score`).

    `serving_default` is `keras_llm.evaluation.answer_questions` with the
    export's window settings (`window_settings` by default).

    Example:

    ```python
    import tensorflow as tf
    import keras_llm
    from keras_llm.export.question_answering import QuestionAnswererServing

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "who", "sat", "the", "cat"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocabulary)
    model = keras_llm.build_bert_question_answerer(
        "bert_tiny", vocabulary_size=len(vocabulary), max_sequence_length=64
    )
    module = QuestionAnswererServing.from_settings(model, tokenizer)  # windows of 64 tokens
    out = module.signatures()["serving_default"](tf.constant(["who sat"]), tf.constant(["the cat sat"]))
    assert out["answer"].shape == (1,)
    ```
    """

    def __init__(self, model, tokenizer, settings, specials):
        super().__init__(model, tokenizer)
        self._settings = settings
        self._sep_token_id = specials["sep_token_id"]

    @classmethod
    def from_settings(cls, model, tokenizer, *, max_answer_length=None, doc_stride=None,
                      max_question_length=None):
        """Checks the window settings (None: `window_settings(model.max_sequence_length)`'s)
        and builds the module."""
        given = dict(max_answer_length=max_answer_length, doc_stride=doc_stride,
                     max_question_length=max_question_length)
        settings = {
            **window_settings(model.max_sequence_length),
            **{k: v for k, v in given.items() if v is not None},
        }
        check_window_settings(
            "export", settings["sequence_length"], settings["doc_stride"],
            settings["max_question_length"],
        )
        check_max_answer_length("export", settings["max_answer_length"])
        if not callable(getattr(tokenizer, "tokenize_with_offsets", None)):
            raise ValueError(
                "A question-answering export needs a tokenizer with `tokenize_with_offsets` "
                "(answers are cut from the context at its tokens' offsets), such as "
                f"keras_llm.tokenizers.WordPieceTokenizer. Received: tokenizer={type(tokenizer).__name__}"
            )
        specials = specials_of(
            model.task, tokenizer, ("cls_token_id", "sep_token_id"), "A question-answering export"
        )
        return cls(model, serving_tokenizer(tokenizer), settings, specials)

    @graph_function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="question"),
            tf.TensorSpec([None], tf.string, name="context"),
        ]
    )
    def serve(self, question, context):
        return answer_questions(self.model, self.tokenizer, question, context, **self._settings)

    @graph_function(input_signature=BERT_ID_SPECS)
    def answer_ids(self, token_ids, segment_ids, padding_mask):
        token_ids, segment_ids, padding_mask = checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        )
        outputs = bert_logits(self.model, token_ids, segment_ids, padding_mask)
        start_logits = tf.cast(outputs["start_logits"], tf.float32)
        end_logits = tf.cast(outputs["end_logits"], tf.float32)
        # The context: segment 1, not padding, not its closing [SEP].
        context = (segment_ids == 1) & (padding_mask > 0) & (token_ids != self._sep_token_id)
        start, end, score = best_spans(
            start_logits, end_logits, context, self._settings["max_answer_length"]
        )
        return {
            "start_logits": start_logits,
            "end_logits": end_logits,
            "start_index": start,
            "end_index": end,
            "score": score,
        }

    def signatures(self):
        return {"serving_default": self.serve, "answer_ids": self.answer_ids}
