"""Extractive question answering: SQuAD-style examples as windows of `[CLS] question [SEP] context [SEP]`."""

import numbers

import tensorflow as tf

from keras_llm._checks import check_int
from keras_llm.data._pipeline import (
    TOKENIZE_CHUNK,
    bucketing,
    check_positive,
    column,
    shuffled,
    special_ids,
)
from keras_llm.data.fine_tuning import _batch, _examples
from keras_llm.tokenizers.string_tokenizer import assert_that

# Hugging Face's question-answering defaults: windows of 384 tokens that
# overlap by 128 (run_qa.py and the pipeline), questions of at most 64
# tokens (the pipeline's max_question_len) and answers of at most 30
# (run_qa.py's max_answer_length; the pipeline's max_answer_len is 15).
QUESTION_ANSWERING_DEFAULTS = dict(
    sequence_length=384, doc_stride=128, max_question_length=64, max_answer_length=30
)


def check_window_settings(function, sequence_length, doc_stride, max_question_length):
    """Errors naming the setting unless every window has room for at least one new context token."""
    check_positive(sequence_length=sequence_length, max_question_length=max_question_length)
    check_int("doc_stride", doc_stride, 0, where=function)
    room = sequence_length - 3 - max_question_length
    if doc_stride >= room:
        raise ValueError(
            f"{function}: `doc_stride` must be less than sequence_length - 3 - max_question_length "
            f"= {room} (the context tokens that a window holds beside the longest question), so "
            f"that each window moves on. Received: doc_stride={doc_stride}, "
            f"sequence_length={sequence_length}, max_question_length={max_question_length}"
        )


def _check_offsets_tokenizer(function, tokenizer):
    if not callable(getattr(tokenizer, "tokenize_with_offsets", None)):
        raise ValueError(
            f"{function}: question answering needs a tokenizer with `tokenize_with_offsets` (where "
            "each token is in the context), such as keras_llm.tokenizers.WordPieceTokenizer. "
            f"Received: tokenizer={type(tokenizer).__name__}"
        )


def _windows(question_ids, context_ids, context_offsets, cls_id, sep_id, sequence_length, doc_stride):
    """Ragged windows `[CLS] question [SEP] context[first : first + room] [SEP]`, as Hugging Face cuts them.

    `question_ids`, `context_ids`: `[B, None]` int32; `context_offsets`: a
    tuple of `[B, None]` int64 values per context token (byte starts and
    ends), carried into each window with -1 outside the context. A window
    holds `room = sequence_length - 3 - len(question)` context tokens and the
    next one starts `room - doc_stride` tokens later, until one reaches the
    context's end: Hugging Face tokenizers' `return_overflowing_tokens=True,
    stride=doc_stride, truncation="only_second"` (`doc_stride` is the
    overlap, as in Hugging Face; BERT's run_squad.py meant the step). An
    empty context gives one window with no context tokens.

    Returns:
        A dict of `[N, None]` ragged `token_ids`, `segment_ids` and each of
        `offsets`, `[N]` `example` (the row of each window's question) and
        `context_start` (the position of its first context token).
    """
    question_length = question_ids.row_lengths()  # [B] int64
    context_length = context_ids.row_lengths()
    room = sequence_length - 3 - question_length  # > doc_stride: check_window_settings
    step = room - doc_stride
    extra = tf.maximum(context_length - room, 0)
    num_windows = 1 + (extra + step - 1) // step  # [B]
    example = tf.repeat(tf.range(tf.size(num_windows, out_type=tf.int64)), num_windows)  # [N]
    first = tf.ragged.range(num_windows).flat_values * tf.gather(step, example)  # [N]
    length = tf.minimum(tf.gather(room, example), tf.gather(context_length, example) - first)
    start = tf.gather(context_ids.row_starts(), example) + first
    index = tf.ragged.range(start, start + length)  # [N, None] into the flat context tokens
    in_windows = lambda values: index.with_flat_values(tf.gather(values.flat_values, index.flat_values))
    rows = tf.size(example)
    question = tf.gather(question_ids, example)  # [N, None]
    context = in_windows(context_ids)  # [N, None]
    token_ids = tf.concat(
        [column(rows, cls_id), question, column(rows, sep_id), context, column(rows, sep_id)], axis=1
    )
    segment_ids = tf.concat(
        [column(rows, 0), tf.zeros_like(question), column(rows, 0), tf.ones_like(context),
         column(rows, 1)],
        axis=1,
    )
    none = column(rows, tf.constant(-1, tf.int64))  # no offset: not a context token
    question_none = tf.cast(tf.zeros_like(question), tf.int64) - 1
    offsets = [
        tf.concat([none, question_none, none, in_windows(values), none], axis=1)
        for values in context_offsets
    ]
    return dict(
        token_ids=token_ids,
        segment_ids=segment_ids,
        offsets=offsets,
        example=example,
        context_start=tf.gather(question_length, example) + 2,
    )


def _tokenized_windows(tokenizer, questions, contexts, sequence_length, doc_stride,
                       max_question_length, cls_id, sep_id, names=None):
    """Tokenizes, truncates questions, cuts windows; offsets are the context tokens' byte starts and ends.

    With `names` (what the caller calls its questions and contexts), first
    checks that there is one context per question.
    """
    if names is not None:
        check = assert_that(
            tf.equal(tf.size(questions), tf.size(contexts)),
            f"`{names[0]}` and `{names[1]}` must have one string each per example. "
            "Received: {} questions and {} contexts",
            tf.size(questions), tf.size(contexts),
        )
        with tf.control_dependencies([check]):
            questions = tf.identity(questions)
    # One call for both: the tokenizer's graph is large, and a tf.data
    # function traces it once instead of twice (seconds per pipeline).
    ids, starts, ends = tokenizer.tokenize_with_offsets(tf.concat([questions, contexts], axis=0))
    count = tf.size(questions)
    ids = tf.cast(ids, tf.int32)
    return _windows(
        ids[:count, :max_question_length], ids[count:],
        (tf.cast(starts[count:], tf.int64), tf.cast(ends[count:], tf.int64)), cls_id, sep_id,
        sequence_length, doc_stride,
    )


def question_answering_windows(
    questions,
    contexts,
    tokenizer,
    *,
    sequence_length=384,
    doc_stride=128,
    max_question_length=64,
    cls_token_id=None,
    sep_token_id=None,
    pad_token_id=None,
):
    """Model inputs for questions about contexts, long contexts cut into overlapping windows.

    Each question (its first `max_question_length` tokens: a longer one is
    truncated) is paired with windows of its context: `[CLS] question [SEP]
    window [SEP]`, segment ids 0 then 1, at most `sequence_length` tokens.
    Windows overlap by `doc_stride` tokens and the last one ends at the
    context's end, as Hugging Face's tokenizers cut them
    (`return_overflowing_tokens=True, stride=doc_stride,
    truncation="only_second"`, as its run_qa.py and question-answering
    pipeline call them; the tests compare the ids window by window). An
    empty context gives one window with no context tokens. Runs in core
    TensorFlow ops (eagerly, in a `tf.function` or in a SavedModel).

    Args:
        questions: `[B]` strings.
        contexts: `[B]` strings, one per question.
        tokenizer: A tokenizer with `tokenize_with_offsets` (WordPiece).
        sequence_length: The longest window, specials included.
        doc_stride: Tokens that consecutive windows of a context share
            (Hugging Face's meaning of `stride`; BERT's run_squad.py used the
            name for the step between window starts). Must be less than
            `sequence_length - 3 - max_question_length`.
        max_question_length: Questions keep at most this many tokens.
        cls_token_id, sep_token_id, pad_token_id: Default to the tokenizer's.

    Returns:
        A dict of tensors for `N` windows: `token_ids`, `segment_ids`,
        `padding_mask` (int32 `[N, T]`, `T` the longest window, padded with
        the pad id, 0 and 0), `example_index` (int32 `[N]`, the question of
        each window; an example's windows are consecutive, in context
        order), and `token_starts`, `token_ends` (int64 `[N, T]`: where each
        context token is in its context, in bytes of the UTF-8 string, so
        that `tf.strings.substr(context, start, end - start)` is its
        original text; -1 for the question, specials and padding).

    Example:

    ```python
    import keras_llm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "who", "sat", "the", "cat", "on", "mat"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    windows = keras_llm.data.question_answering_windows(
        ["who sat"], ["The cat sat on the mat"], tokenizer,
        sequence_length=9, doc_stride=1, max_question_length=2,
    )
    # 4 context tokens per window, the next window 3 tokens on.
    assert windows["token_ids"].numpy().tolist() == [
        [2, 4, 5, 3, 6, 7, 5, 8, 3],
        [2, 4, 5, 3, 8, 6, 9, 3, 0],
    ]
    assert windows["example_index"].numpy().tolist() == [0, 0]
    assert windows["token_starts"].numpy()[1, 4:7].tolist() == [12, 15, 19]  # "on the mat"
    ```
    """
    function = "question_answering_windows"
    check_window_settings(function, sequence_length, doc_stride, max_question_length)
    _check_offsets_tokenizer(function, tokenizer)
    cls_id, sep_id, pad_id = special_ids(
        tokenizer, cls_token_id=cls_token_id, sep_token_id=sep_token_id, pad_token_id=pad_token_id
    )
    questions = tf.reshape(tf.convert_to_tensor(questions, tf.string), [-1])
    contexts = tf.reshape(tf.convert_to_tensor(contexts, tf.string), [-1])
    windows = _tokenized_windows(
        tokenizer, questions, contexts, sequence_length, doc_stride, max_question_length,
        cls_id, sep_id, names=("questions", "contexts"),
    )
    token_ids = windows["token_ids"]
    starts, ends = windows["offsets"]
    return dict(
        token_ids=token_ids.to_tensor(pad_id),
        segment_ids=windows["segment_ids"].to_tensor(0),
        padding_mask=tf.ones_like(token_ids).to_tensor(0),
        example_index=tf.cast(windows["example"], tf.int32),
        token_starts=starts.to_tensor(-1),
        token_ends=ends.to_tensor(-1),
    )


def _squad_record(record, i):
    """One SQuAD-style dict -> (question, context, answer text, answer start in characters or -1)."""
    where = f"data[{i}]"
    if not isinstance(record, dict) or not {"question", "context"} <= set(record):
        raise ValueError(
            f"{where}: expected a dict with `question`, `context` and `answers` ({{'text': [...], "
            f"'answer_start': [...]}}) or `answer_text` and `answer_start`. Received: {record!r:.120}"
        )
    question, context = record["question"], record["context"]
    if "answers" in record:
        answers = record["answers"]
        if not isinstance(answers, dict) or not {"text", "answer_start"} <= set(answers):
            raise ValueError(
                f"{where}: `answers` must be a dict of lists `text` and `answer_start` (SQuAD's "
                f"format in Hugging Face datasets and TFDS). Received: answers={answers!r:.120}"
            )
        texts, starts = list(answers["text"]), list(answers["answer_start"])
        if len(texts) != len(starts):
            raise ValueError(
                f"{where}: `answers` must have one `answer_start` per `text`. Received: "
                f"{len(texts)} texts and {len(starts)} starts"
            )
        # The first answer trains, as Hugging Face's run_qa.py; none: unanswerable (SQuAD v2).
        text, start = (texts[0], starts[0]) if texts else ("", -1)
    elif "answer_text" in record and "answer_start" in record:
        text, start = record["answer_text"], record["answer_start"]
    else:
        raise ValueError(
            f"{where}: no answer; expected `answers` ({{'text': [...], 'answer_start': [...]}}) or "
            f"`answer_text` and `answer_start`. The record has {sorted(record)}."
        )
    if not all(isinstance(s, str) for s in (question, context, text)):
        raise ValueError(
            f"{where}: `question`, `context` and the answer text must be strings. Received: "
            f"{question!r:.60}, {context!r:.60}, {text!r:.60}"
        )
    is_int = isinstance(start, numbers.Integral) and not isinstance(start, bool)
    if not is_int or start < -1 or (start >= 0 and context[start : start + len(text)] != text):
        there = context[start : start + len(text)] if is_int and start >= 0 else None
        raise ValueError(
            f"{where}: `answer_start` must be the answer's offset in the context, counted in "
            f"characters (context[answer_start:answer_start + len(text)] == text), or -1 for no "
            f"answer. Received: answer_start={start!r} and text={text!r:.60}, but the context has "
            f"{there!r:.60} there"
        )
    return question, context, text, int(start)


def _squad_dataset(data):
    """`data` (a list of dicts or a dataset of dicts) -> a dataset of (question, context, text, start)."""
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("`data` is empty; expected at least one example.")
        columns = list(zip(*(_squad_record(record, i) for i, record in enumerate(data))))
        return tf.data.Dataset.from_tensor_slices(
            tuple(tf.constant(c, dtype) for c, dtype in zip(columns, [tf.string] * 3 + [tf.int32]))
        )
    if not isinstance(data, tf.data.Dataset):
        raise TypeError(
            "`data` must be a list of SQuAD-style dicts or a tf.data.Dataset of them (e.g. "
            f"tfds.load('squad')). Received: data={type(data).__name__}"
        )
    spec = data.element_spec
    keys = set(spec) if isinstance(spec, dict) else set()
    if not {"question", "context"} <= keys or not (
        "answers" in keys or {"answer_text", "answer_start"} <= keys
    ):
        raise ValueError(
            "`data` must give dicts with `question`, `context` and `answers` ({'text': [...], "
            f"'answer_start': [...]}}) or `answer_text` and `answer_start`. Received elements: {spec}"
        )

    def flat(example):
        if "answers" in example:
            texts, starts = example["answers"]["text"], example["answers"]["answer_start"]
            some = tf.size(texts) > 0
            text = tf.cond(some, lambda: texts[0], lambda: tf.constant(""))
            start = tf.cond(some, lambda: tf.cast(starts[0], tf.int32), lambda: tf.constant(-1))
        else:
            text, start = example["answer_text"], tf.cast(example["answer_start"], tf.int32)
        return example["question"], example["context"], text, start

    return data.map(flat)


def question_answering_dataset(
    data,
    tokenizer,
    batch_size,
    *,
    sequence_length=384,
    doc_stride=128,
    max_question_length=64,
    seed=0,
    shuffle=True,
    shuffle_buffer=10_000,
    repeat=False,
    bucket=None,
    drop_remainder=False,
    cls_token_id=None,
    sep_token_id=None,
    pad_token_id=None,
):
    """Batches for `build_bert_question_answerer` from SQuAD-style examples.

    Each example is cut into windows as `question_answering_windows` cuts
    them (`[CLS] question [SEP] window [SEP]`, windows overlapping by
    `doc_stride` tokens; questions truncated to `max_question_length`
    tokens), and every window is a training example, as in Hugging Face's
    run_qa.py. A window's labels are the positions of the answer's first and
    last tokens: the last context token starting at or before the answer's
    first character and the first one ending at or after its last. A window
    that does not hold the whole answer, and every window of an example
    without an answer (SQuAD v2's unanswerable questions), points both labels
    at `[CLS]` (position 0), as run_qa.py does. The answer's offset is
    counted in characters (code points, SQuAD's convention) and converted to
    bytes to meet the tokenizer's byte offsets, so non-ASCII contexts are
    labelled right. Windows are shuffled (not only examples); bucketing as
    in `classification_dataset` (by default only when shuffling: unshuffled
    windows keep their order, each example's in a row).

    Args:
        data: A list of dicts, or a `tf.data.Dataset` of dicts (e.g. TFDS's
            `squad`), each with `question`, `context` and either `answers`
            (`{"text": [...], "answer_start": [...]}`, SQuAD's format in
            Hugging Face datasets and TFDS: the first answer is used; empty
            lists mean no answer) or `answer_text` and `answer_start`
            (-1: no answer). `answer_start` counts characters.
        tokenizer: A tokenizer with `tokenize_with_offsets` (WordPiece).
        batch_size: Windows per batch.
        sequence_length: The longest window, specials included.
        doc_stride: Tokens that consecutive windows share (Hugging Face's
            `stride`); less than `sequence_length - 3 - max_question_length`.
        max_question_length: Questions keep at most this many tokens.
        seed, shuffle, shuffle_buffer, repeat, bucket, drop_remainder,
        cls_token_id, sep_token_id, pad_token_id: As in
            `classification_dataset` (the shuffle buffer holds windows).

    Returns:
        A dataset of `({"token_ids", "segment_ids", "padding_mask"},
        {"start_logits": start, "end_logits": end})`, int32 `[B,
        padded_length]` and `[B]`. An answer that is not where
        `answer_start` says stops the iteration with an error naming its
        example (a list of dicts is checked before anything runs).

    Example:

    ```python
    import keras_llm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "where", "is", "the", "cat", "?",
             "on", "mat", "caf", "##e"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    context = "Café cat is on the mat"
    data = [{"question": "Where is the cat?", "context": context,
             "answers": {"text": ["the mat"], "answer_start": [15]}}]
    ds = keras_llm.data.question_answering_dataset(data, tokenizer, batch_size=1, shuffle=False)
    x, y = next(iter(ds))
    # [CLS] where is the cat ? [SEP] caf ##e cat is on the mat [SEP]
    assert x["token_ids"].numpy()[0, :15].tolist() == [2, 4, 5, 6, 7, 8, 3, 11, 12, 7, 5, 9, 6, 10, 3]
    assert (int(y["start_logits"][0]), int(y["end_logits"][0])) == (12, 13)
    ```
    """
    function = "question_answering_dataset"
    check_positive(batch_size=batch_size)
    bucket = bucketing(bucket, shuffle)
    check_window_settings(function, sequence_length, doc_stride, max_question_length)
    _check_offsets_tokenizer(function, tokenizer)
    cls_id, sep_id, pad_id = special_ids(
        tokenizer, cls_token_id=cls_token_id, sep_token_id=sep_token_id, pad_token_id=pad_token_id
    )
    data = _squad_dataset(data)

    def encode(index, example):
        questions, contexts, texts, answer_starts = example  # [C] each
        has_answer = answer_starts >= 0
        # The answer's characters -> bytes of the UTF-8 context.
        characters = tf.strings.length(contexts, unit="UTF8_CHAR")
        first_char = tf.clip_by_value(answer_starts, 0, characters)
        before = tf.strings.substr(contexts, tf.zeros_like(first_char), first_char, unit="UTF8_CHAR")
        byte_start = tf.strings.length(before)
        room = tf.strings.length(contexts) - byte_start
        found = tf.strings.substr(contexts, byte_start, tf.minimum(tf.strings.length(texts), room))
        bad = tf.where(has_answer & ((answer_starts > characters) | tf.not_equal(found, texts)))[:1, 0]
        check = tf.debugging.Assert(
            tf.size(bad) == 0,
            [f"{function}: example", tf.gather(index, bad), "of `data` (counting from 0) has "
             "answer_start", tf.gather(answer_starts, bad), "and text", tf.gather(texts, bad),
             "but its context has", tf.gather(found, bad), "there; answer_start must count "
             "characters of the context"],
        )
        with tf.control_dependencies([check]):
            byte_start = tf.cast(tf.identity(byte_start), tf.int64)
        byte_end = byte_start + tf.cast(tf.strings.length(texts), tf.int64)

        windows = _tokenized_windows(
            tokenizer, questions, contexts, sequence_length, doc_stride, max_question_length,
            cls_id, sep_id,
        )
        example_of = windows["example"]
        token_starts, token_ends = windows["offsets"]  # [N, None], -1 outside the context
        in_context = token_starts >= 0
        starts = tf.ragged.boolean_mask(token_starts, in_context)  # [N, None] context tokens
        ends = tf.ragged.boolean_mask(token_ends, in_context)
        answer_start = tf.gather(byte_start, example_of)[:, None]
        answer_end = tf.gather(byte_end, example_of)[:, None]
        # Offsets rise along the context: the first token's start is the
        # least, the last one's end the greatest (an empty window holds nothing).
        holds = (
            tf.gather(has_answer, example_of)
            & (tf.reduce_min(starts, axis=1) <= answer_start[:, 0])
            & (tf.reduce_max(ends, axis=1) >= answer_end[:, 0])
        )
        count = lambda condition: tf.reduce_sum(tf.cast(condition, tf.int64), axis=1)
        # The last token starting at or before the answer, the first ending at
        # or after it. (run_qa.py's loop runs past the window's last token when
        # the answer starts in it; here it stays in the context.)
        start = windows["context_start"] + count(starts <= answer_start) - 1
        end = windows["context_start"] + count(ends < answer_end)
        labels = {
            "start_logits": tf.cast(tf.where(holds, start, 0), tf.int32),
            "end_logits": tf.cast(tf.where(holds, end, 0), tf.int32),
        }
        ids = windows["token_ids"]
        x = {
            "token_ids": ids,
            "segment_ids": windows["segment_ids"],
            "padding_mask": tf.ones_like(ids),
        }
        return _examples((x, labels))

    windows = data.enumerate().batch(TOKENIZE_CHUNK).flat_map(encode)
    windows = shuffled(windows, shuffle, shuffle_buffer, seed, repeat)
    return _batch(windows, batch_size, sequence_length, bucket, drop_remainder, pad_id)
