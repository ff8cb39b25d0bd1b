"""From start and end logits to answers: the span decoder and `answer_questions`, in core TensorFlow ops."""

import tensorflow as tf

from keras_llm._checks import is_positive_int
from keras_llm.data._pipeline import model_inputs, special_id
from keras_llm.data.question_answering import (
    QUESTION_ANSWERING_DEFAULTS,
    _check_offsets_tokenizer,
    _tokenized_windows,
    check_window_settings,
)


def check_max_answer_length(function, max_answer_length):
    if not is_positive_int(max_answer_length):
        raise ValueError(
            f"{function}: `max_answer_length` must be a positive int (tokens). "
            f"Received: max_answer_length={max_answer_length!r}"
        )


def _best_spans(start_logits, end_logits, context_mask, max_answer_length):
    """`best_spans`, with the log of each score (-inf where a row has no span)."""
    start_logits = tf.cast(start_logits, tf.float32)  # [N, T]
    end_logits = tf.cast(end_logits, tf.float32)
    mask = tf.cast(context_mask, tf.bool)
    rows, length = tf.shape(start_logits)[0], tf.shape(start_logits)[1]
    minus_infinity = tf.constant(float("-inf"))
    # The softmax runs over the context and [CLS], as in Hugging Face's
    # pipeline: a window where the model points at [CLS] (trained so where
    # the window holds no answer) gives its spans low scores.
    normalized = mask | (tf.range(length) == 0)[None, :]

    def log_softmax(logits):
        logits = tf.where(normalized, logits, minus_infinity)
        return logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)

    log_start, log_end = log_softmax(start_logits), log_softmax(end_logits)
    # Only spans up to max_answer_length tokens: a [T, L] band of ends per
    # start, not all [T, T] pairs (384 x 30 instead of 384 x 384 per window).
    end_of = tf.range(length)[:, None] + tf.range(max_answer_length)[None, :]  # [T, L]
    inside = end_of < length
    end_of = tf.minimum(end_of, tf.maximum(length - 1, 0))
    pairs = log_start[:, :, None] + tf.gather(log_end, end_of, axis=1)  # [N, T, L]
    valid = inside[None] & mask[:, :, None] & tf.gather(mask, end_of, axis=1)
    pairs = tf.reshape(tf.where(valid, pairs, minus_infinity), [rows, -1])  # [N, T * L]
    # A column of -inf: argmax has something to take in a row of no tokens.
    pairs = tf.concat([pairs, tf.fill([rows, 1], minus_infinity)], axis=1)
    # The first maximum: ties go to the earliest start, then the shortest span.
    best = tf.argmax(pairs, axis=-1, output_type=tf.int32)
    log_score = tf.reduce_max(pairs, axis=-1)
    found = log_score > minus_infinity
    start = best // max_answer_length
    end = start + best % max_answer_length
    return tf.where(found, start, -1), tf.where(found, end, -1), log_score


def best_spans(start_logits, end_logits, context_mask, max_answer_length=30):
    """The most likely answer span of each row of start and end logits.

    Among spans `start <= end` with `end - start + 1 <= max_answer_length`
    whose tokens are both in the context (`context_mask`), the one with the
    largest `start_logit + end_logit`. Its score is the probability Hugging
    Face's question-answering pipeline gives it: the product of the start's
    and the end's softmax probabilities, each softmax taken over the row's
    context tokens and its first token (`[CLS]`; the question, the other
    specials and padding are left out). A model trained to point at `[CLS]`
    where a window holds no answer so gives that window's spans low scores,
    and comparing scores picks among a context's windows. Ties go to the
    earliest start, then the earliest end. Core TensorFlow ops: usable
    eagerly, in a `tf.function` and in a SavedModel.

    Args:
        start_logits: `[N, T]` floats (a window per row).
        end_logits: `[N, T]` floats.
        context_mask: `[N, T]` bool or 0/1: where the context's tokens are.
        max_answer_length: The longest span, in tokens (default 30, as
            Hugging Face's run_qa.py; its pipeline's default is 15).

    Returns:
        `(start, end, score)`: int32 `[N]` token positions (inclusive) and
        float32 `[N]` scores in [0, 1]; a row with no context token gives
        -1, -1 and 0.

    Example:

    ```python
    import numpy as np
    from keras_llm.evaluation import best_spans

    start_logits = np.array([[9.0, 1.0, 2.0, 0.0, 5.0]], "float32")
    end_logits = np.array([[9.0, 0.0, 1.0, 4.0, 0.0]], "float32")
    in_context = np.array([[0, 1, 1, 1, 1]])  # position 0 is [CLS]
    start, end, score = best_spans(start_logits, end_logits, in_context, max_answer_length=2)
    # 2 -> 3 scores 2 + 4; 4 -> 4 scores 5 + 0; 1 -> 3 (1 + 4) is 3 tokens long.
    assert (int(start[0]), int(end[0])) == (2, 3)
    # Softmaxes over [CLS] and the context: here, the whole row.
    p_start = np.exp(start_logits[0]) / np.exp(start_logits[0]).sum()
    p_end = np.exp(end_logits[0]) / np.exp(end_logits[0]).sum()
    np.testing.assert_allclose(score[0], p_start[2] * p_end[3], rtol=1e-5)
    ```
    """
    check_max_answer_length("best_spans", max_answer_length)
    start, end, log_score = _best_spans(start_logits, end_logits, context_mask, max_answer_length)
    return start, end, tf.exp(log_score)


def answer_questions(
    model,
    tokenizer,
    questions,
    contexts,
    *,
    sequence_length=None,
    doc_stride=128,
    max_question_length=64,
    max_answer_length=30,
):
    """Answers each question with a span of its context, as an exported question answerer serves it.

    Cuts each context into windows (`keras_llm.data.question_answering_windows`:
    `[CLS] question [SEP] window [SEP]`, windows overlapping by `doc_stride`
    tokens; questions truncated to `max_question_length` tokens), runs the
    model on every window, takes each window's best span (`best_spans`) and
    keeps the example's highest-scoring one, as Hugging Face's
    question-answering pipeline does. The answer is the context's own text
    from the span's first token's first byte to its last token's last byte
    (case, accents and inner spacing as written; the tokenizer's byte
    offsets, not the word pieces joined). Core TensorFlow ops: the export's
    `serving_default` calls this function.

    Args:
        model: A model from `keras_llm.build_bert_question_answerer`.
        tokenizer: Its tokenizer; it needs `tokenize_with_offsets` (WordPiece).
        questions: `[B]` strings.
        contexts: `[B]` strings, one per question.
        sequence_length: The longest window; default: the model's context,
            at most 384 (as Hugging Face's pipeline).
        doc_stride: Tokens that consecutive windows share.
        max_question_length: Questions keep at most this many tokens.
        max_answer_length: The longest answer, in tokens.

    Returns:
        A dict of `[B]` tensors: `answer` (string, `""` when the context has
        no token, e.g. is empty), `score` (float32: the span's start and end
        probabilities multiplied, in its window; 0 without an answer),
        `start` and `end` (int32: the answer's offsets in the context in
        characters, i.e. Unicode code points, so that in Python
        `context[start:end] == answer`; 0 and 0 without an answer). A
        context that is not valid UTF-8 is read with each ill-formed
        sequence replaced by U+FFFD, and answers and offsets refer to that
        text.

    Example:

    ```python
    import keras_llm
    from keras_llm.evaluation import answer_questions

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "who", "sat", "the", "cat", "on", "mat"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    model = keras_llm.build_bert_question_answerer(
        "bert_tiny", vocabulary_size=len(vocab), max_sequence_length=16
    )
    context = "The  Cat sat on the mat"
    out = answer_questions(model, tokenizer, ["who sat?"], [context], doc_stride=4,
                           max_question_length=4)
    start, end = int(out["start"][0]), int(out["end"][0])
    assert out["answer"].numpy()[0].decode() == context[start:end]
    assert 0.0 < float(out["score"][0]) <= 1.0
    ```
    """
    function = "answer_questions"
    if sequence_length is None:
        sequence_length = min(
            QUESTION_ANSWERING_DEFAULTS["sequence_length"],
            model.max_sequence_length,
        )
    check_window_settings(function, sequence_length, doc_stride, max_question_length)
    check_max_answer_length(function, max_answer_length)
    _check_offsets_tokenizer(function, tokenizer)
    cls_id = special_id(tokenizer, None, "cls_token_id")
    sep_id = special_id(tokenizer, None, "sep_token_id")
    pad_id = getattr(tokenizer, "pad_token_id", None) or 0
    # Answers are substrings of the contexts: valid UTF-8 in, valid UTF-8 out
    # (ill-formed bytes become U+FFFD, which the tokenizer drops anyway).
    questions, contexts = (
        tf.strings.unicode_transcode(
            tf.reshape(tf.convert_to_tensor(x, tf.string), [-1]), "UTF-8", "UTF-8", errors="replace"
        )
        for x in (questions, contexts)
    )
    examples = tf.size(questions)
    windows = _tokenized_windows(
        tokenizer, questions, contexts, sequence_length, doc_stride, max_question_length,
        cls_id, sep_id, names=("question", "context"),
    )
    token_ids = windows["token_ids"]
    token_starts, token_ends = (model_inputs(offsets, -1) for offsets in windows["offsets"])
    outputs = model(
        {
            "token_ids": model_inputs(token_ids, pad_id),
            "segment_ids": model_inputs(windows["segment_ids"], 0),
            "padding_mask": model_inputs(tf.ones_like(token_ids), 0),
        },
        training=False,
    )
    start, end, log_score = _best_spans(
        outputs["start_logits"], outputs["end_logits"], token_starts >= 0, max_answer_length
    )  # [N] per window
    # Each example's best window: the first whose score is the example's
    # highest (an example's windows are consecutive rows).
    example = tf.cast(windows["example"], tf.int32)
    # -inf (no span) raised to the lowest float: the segment maximum starts there.
    ranked = tf.maximum(log_score, tf.float32.min)
    best_score = tf.math.unsorted_segment_max(ranked, example, examples)
    window = tf.range(tf.size(example))
    is_best = ranked >= tf.gather(best_score, example)
    chosen = tf.math.unsorted_segment_min(
        tf.where(is_best, window, tf.size(example)), example, examples
    )  # [B]
    start, end, log_score = (tf.gather(x, chosen) for x in (start, end, log_score))
    found = start >= 0
    pick = lambda offsets, position: tf.gather(
        tf.gather(offsets, chosen), tf.maximum(position, 0), batch_dims=1
    )
    byte_start = tf.where(found, pick(token_starts, start), 0)
    byte_end = tf.where(found, pick(token_ends, end), 0)
    answer = tf.strings.substr(contexts, byte_start, byte_end - byte_start)
    # Characters (code points) before the answer, and in it.
    before = tf.strings.substr(contexts, tf.zeros_like(byte_start), byte_start)
    char_start = tf.strings.length(before, unit="UTF8_CHAR")
    char_end = char_start + tf.strings.length(answer, unit="UTF8_CHAR")
    return {
        "answer": answer,
        "score": tf.where(found, tf.exp(log_score), 0.0),
        "start": char_start,
        "end": char_end,
    }
