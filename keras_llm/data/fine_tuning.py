"""Fine-tuning batches: classification and token tagging, padded and bucketed by length."""

import tensorflow as tf

from keras_llm.data._pipeline import (
    TOKENIZE_CHUNK,
    add_specials,
    as_dataset,
    bucketing,
    check_positive,
    padded_batches,
    shuffled,
    special_ids,
)


def _label_range(label_spec, label_names, num_classes, function, what):
    """`num_classes` from the arguments and the labels' dtype; errors name what is missing."""
    if label_spec.dtype == tf.string:
        if not label_names:
            raise ValueError(
                f"{function}: the {what}s are strings; pass `label_names` (the list whose "
                f"index is each {what}'s id). Received: label_names={label_names!r}"
            )
    elif not label_spec.dtype.is_integer:
        raise ValueError(
            f"{function}: the {what}s must be ints (or strings, with `label_names`). "
            f"Received: {what}s of dtype {label_spec.dtype.name}"
        )
    if label_names:
        if num_classes is not None and num_classes != len(label_names):
            raise ValueError(
                f"{function}: `num_classes` must be len(label_names)={len(label_names)} "
                f"when both are given. Received: num_classes={num_classes!r}"
            )
        return len(label_names)
    if num_classes is None:
        raise ValueError(
            f"{function}: pass `num_classes` (the model's; each {what} must be an int in "
            f"[0, num_classes)) or `label_names`. Received: num_classes=None"
        )
    check_positive(num_classes=num_classes)
    return num_classes


def _label_ids(labels, examples, label_names, num_classes, function, what, words=None):
    """[N] int or string labels -> [N] int32 ids, or an error naming the first bad one.

    `examples[i]` is label i's example in `data` (counted from 0, before
    shuffling), and `words[i]` its word, for tags: the error says where the
    label is. Without the check a label >= num_classes fails deep inside
    `fit` ("Graph execution error").
    """
    if labels.dtype == tf.string:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(label_names)), tf.range(len(label_names), dtype=tf.int64)
            ),
            default_value=-1,
        )
        ids = table.lookup(labels)
        # Names unquoted: the assertion's message escapes quotes.
        expected = f"one of label_names=[{', '.join(map(str, label_names))}]"
    else:
        ids = tf.cast(labels, tf.int64)  # range-checked before the cast to int32
        expected = f"an int in [0, {num_classes}) (num_classes={num_classes})"
    bad = tf.where(tf.logical_or(ids < 0, ids >= num_classes))[:1, 0]  # the first, if any
    where = ["has", what, tf.gather(labels, bad)]
    if words is not None:
        where += ["at word", tf.gather(words, bad)]
    check = tf.debugging.Assert(
        tf.size(bad) == 0,
        [f"{function}: example", tf.gather(examples, bad), "of `data` (counting from 0)"]
        + where + [f"; expected {expected}"],
    )
    with tf.control_dependencies([check]):
        return tf.cast(ids, tf.int32)


def _examples(structure):
    """Batched examples (ragged rows of one length per example) -> a dataset of them."""
    lengths = next(
        t.row_lengths() for t in tf.nest.flatten(structure) if isinstance(t, tf.RaggedTensor)
    )
    dense = tf.nest.map_structure(
        lambda t: t.to_tensor() if isinstance(t, tf.RaggedTensor) else t, structure
    )
    return tf.data.Dataset.from_tensor_slices((dense, lengths)).map(
        lambda example, length: tf.nest.map_structure(
            lambda t: t[:length] if t.shape.rank else t, example
        )
    )


def _batch(examples, batch_size, sequence_length, bucket, drop_remainder, pad_id):
    """Pads `{"token_ids", ...}` examples into prefetched batches, bucketed by length or not."""
    # Zeros everywhere (padding mask, segment ids, labels, weights) but the ids.
    padding_values = tf.nest.map_structure(
        lambda spec: tf.constant(0, spec.dtype), examples.element_spec
    )
    padding_values[0]["token_ids"] = tf.constant(pad_id, tf.int32)
    batches = padded_batches(
        examples,
        batch_size,
        sequence_length,
        lambda x, *_: tf.shape(x["token_ids"])[0],
        tf.nest.map_structure(
            lambda spec: [sequence_length] if spec.shape.rank else [], examples.element_spec
        ),
        padding_values,
        bucket,
        drop_remainder,
        pad_to_bucket_boundary=True,
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def _prepared(data, tokenizer, batch_size, sequence_length, bucket, shuffle, specials):
    """The checks and defaults the BERT fine-tuning pipelines share.

    Returns `data` as a dataset, whether to bucket, and the `[CLS]`,
    `[SEP]` and padding ids (`specials` given, else the tokenizer's).
    """
    check_positive(batch_size=batch_size, sequence_length=sequence_length)
    bucket = bucketing(bucket, shuffle)
    ids = special_ids(tokenizer, **specials)
    return as_dataset(data, "data"), bucket, ids


def classification_dataset(
    data,
    tokenizer,
    batch_size,
    *,
    sequence_length=128,
    num_classes=None,
    label_names=None,
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
    """Batches for `build_bert_classifier` from `(text, label)` pairs.

    Each text becomes `[CLS] ids [SEP]`, truncated to `sequence_length`.
    With bucketing (by default when shuffling), examples are grouped by
    length into buckets whose padded lengths are 16, 32, 64, ... up to
    `sequence_length`, so short texts do not pay for long ones (`tf.data`'s
    `bucket_by_sequence_length`; each batch has one bucket's examples, and
    every example appears once per epoch, but not in the input order).
    Without it, batches keep the input order and are padded to
    `sequence_length` (static shapes, for TPUs): with `shuffle=False`,
    `model.predict(ds)` gives one row per example of `data`, in order.

    Args:
        data: A dataset of `(text, label)` (`load_texts(..., label_field=...)`).
            Labels are int ids, or strings listed in `label_names`.
        tokenizer: A WordPiece or SentencePiece tokenizer.
        batch_size: Examples per batch.
        sequence_length: The longest example, specials included.
        num_classes: The classifier's number of classes: every label must be
            in `[0, num_classes)`. Required for int labels unless
            `label_names` is given; defaults to `len(label_names)`.
        label_names: Names whose index is the label id; required for string labels.
        seed: The shuffling seed.
        shuffle, shuffle_buffer, repeat, drop_remainder: As for the other pipelines.
        bucket: Whether to bucket by length; None (the default): only when
            shuffling. `bucket=True` with `shuffle=False` buckets too, and
            the batches then leave the input order.
        cls_token_id, sep_token_id, pad_token_id: Default to the tokenizer's.

    Returns:
        A dataset of `({"token_ids", "segment_ids", "padding_mask"}, labels)`,
        int32, `[B, padded_length]` and `[B]`. A label outside `[0,
        num_classes)` (or not in `label_names`) stops the iteration with a
        `tf.errors.InvalidArgumentError` naming it and its example's index in
        `data` (in `fit`: "Graph execution error ... assertion failed: ...").

    Example:

    ```python
    import keras_llm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    data = keras_llm.data.load_texts(
        [{"text": "good film", "label": "pos"}, {"text": "bad", "label": "neg"}],
        label_field="label",
    )
    ds = keras_llm.data.classification_dataset(
        data, tokenizer, batch_size=2, label_names=["neg", "pos"], shuffle=False
    )
    x, y = next(iter(ds))
    assert x["token_ids"].numpy().tolist()[0][:5] == [2, 4, 6, 3, 0]
    assert y.numpy().tolist() == [1, 0] and x["token_ids"].shape == (2, 128)  # in order
    ```
    """
    data, bucket, (cls_id, sep_id, pad_id) = _prepared(
        data, tokenizer, batch_size, sequence_length, bucket, shuffle,
        dict(cls_token_id=cls_token_id, sep_token_id=sep_token_id, pad_token_id=pad_token_id),
    )
    if not isinstance(data.element_spec, tuple) or len(data.element_spec) != 2:
        raise ValueError(
            "`data` must give (text, label) pairs, e.g. load_texts(..., label_field=...). "
            f"Received elements: {data.element_spec}"
        )
    num_classes = _label_range(
        data.element_spec[1], label_names, num_classes, "classification_dataset", "label"
    )
    # Each example's index in `data`, so that a bad label's error says where it is.
    data = shuffled(data.enumerate(), shuffle, shuffle_buffer, seed, repeat)

    def encode(index, example):
        texts, labels = example
        ids = add_specials(tf.cast(tokenizer(texts), tf.int32), cls_id, sep_id, sequence_length)
        x = {
            "token_ids": ids,
            "segment_ids": tf.zeros_like(ids),
            "padding_mask": tf.ones_like(ids),
        }
        labels = _label_ids(
            labels, index, label_names, num_classes, "classification_dataset", "label"
        )
        return _examples((x, labels))

    examples = data.batch(TOKENIZE_CHUNK).flat_map(encode)
    return _batch(examples, batch_size, sequence_length, bucket, drop_remainder, pad_id)


def token_tagging_dataset(
    data,
    tokenizer,
    batch_size,
    *,
    sequence_length=128,
    num_classes=None,
    label_names=None,
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
    """Batches for token tagging (NER, POS) from `(words, tags)` pairs.

    Each example is a list of words and one tag per word (CoNLL style, as
    `load_texts` reads from a `.jsonl` file with list fields or a TFDS
    sequence feature). Every word is tokenized on its own; its tag goes to
    its first piece and the other pieces get tag 0 and weight 0, as BERT's NER
    fine-tuning does (Devlin et al. 2019, section 5.3). `[CLS]` and `[SEP]`
    have weight 0, and padding too. A word that tokenizes to nothing loses
    its tag. Bucketing as in `classification_dataset` (by default only when
    shuffling: unshuffled batches keep the input order).

    Args:
        data: A dataset of `(words, tags)`, string `[None]` and int (or
            string, with `label_names`) `[None]` of the same length.
        tokenizer: A WordPiece or SentencePiece tokenizer.
        batch_size: Examples per batch.
        sequence_length: The longest example in pieces, specials included.
        num_classes: The number of tags: every tag must be in `[0,
            num_classes)`. Required for int tags unless `label_names` is
            given; defaults to `len(label_names)`.
        label_names: Names whose index is the tag id; required for string tags.
        Other arguments as in `classification_dataset`.

    Returns:
        A dataset of `({"token_ids", "segment_ids", "padding_mask"}, tags,
        sample_weight)`, `[B, padded_length]` each (tags int32, weights float32).
        A tag outside `[0, num_classes)`, or an example without one tag per
        word, stops the iteration with an error naming the example's index.

    Example:

    ```python
    import keras_llm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "new", "york", "is", "big", "##ger"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    data = keras_llm.data.load_texts(
        [{"tokens": ["New", "York", "is", "bigger"], "tags": [1, 2, 0, 0]}],
        text_field="tokens", label_field="tags",
    )
    ds = keras_llm.data.token_tagging_dataset(
        data, tokenizer, batch_size=1, num_classes=3, shuffle=False
    )
    x, tags, weights = next(iter(ds))
    assert x["token_ids"].numpy()[0, :7].tolist() == [2, 4, 5, 6, 7, 8, 3]
    assert tags.numpy()[0, :7].tolist() == [0, 1, 2, 0, 0, 0, 0]
    assert weights.numpy()[0, :7].tolist() == [0, 1, 1, 1, 1, 0, 0]
    ```
    """
    data, bucket, (cls_id, sep_id, pad_id) = _prepared(
        data, tokenizer, batch_size, sequence_length, bucket, shuffle,
        dict(cls_token_id=cls_token_id, sep_token_id=sep_token_id, pad_token_id=pad_token_id),
    )
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2 or spec[0].shape.rank != 1:
        raise ValueError(
            "`data` must give (words, tags) pairs of 1-D tensors, e.g. load_texts(..., "
            f"text_field='tokens', label_field='tags') on list fields. Received elements: {spec}"
        )
    num_classes = _label_range(spec[1], label_names, num_classes, "token_tagging_dataset", "tag")

    def check(index, example):
        words, tags = example
        one_per_word = tf.debugging.Assert(
            tf.equal(tf.size(words), tf.size(tags)),
            ["token_tagging_dataset: example", index, "of `data` (counting from 0) has",
             tf.size(words), "words and", tf.size(tags), "tags; expected one tag per word"],
        )
        with tf.control_dependencies([one_per_word]):
            return index, (tf.identity(words), tf.identity(tags))

    # Each example's index in `data`, so that an error says where it is.
    data = shuffled(data.enumerate().map(check), shuffle, shuffle_buffer, seed, repeat)

    def encode(index, example):
        words, tags = example  # [C, None words] each
        tags = tf.RaggedTensor.from_row_splits(
            _label_ids(
                tags.flat_values,
                tf.gather(index, tags.value_rowids()),
                label_names,
                num_classes,
                "token_tagging_dataset",
                "tag",
                words=tf.ragged.range(tags.row_lengths()).flat_values,
            ),
            tags.row_splits,
        )
        pieces = tf.cast(tokenizer(words.flat_values), tf.int32)  # [W, None pieces]
        first = tf.equal(tf.ragged.range(pieces.row_lengths()).flat_values, 0)  # [N]
        # The word's tag on its first piece, 0 (with weight 0) on the others.
        piece_tags = tf.where(first, tf.gather(tags.flat_values, pieces.value_rowids()), 0)
        splits = tf.gather(pieces.row_splits, words.row_splits)  # example -> piece splits
        by_example = lambda values: tf.RaggedTensor.from_row_splits(values, splits)
        ids = add_specials(by_example(pieces.flat_values), cls_id, sep_id, sequence_length)
        labels = add_specials(by_example(piece_tags), 0, 0, sequence_length)
        weights = add_specials(by_example(tf.cast(first, tf.int32)), 0, 0, sequence_length)
        x = {
            "token_ids": ids,
            "segment_ids": tf.zeros_like(ids),
            "padding_mask": tf.ones_like(ids),
        }
        return _examples((x, labels, tf.cast(weights, tf.float32)))

    examples = data.ragged_batch(TOKENIZE_CHUNK).flat_map(encode)
    return _batch(examples, batch_size, sequence_length, bucket, drop_remainder, pad_id)
