"""Fine-tuning batches: classification and token tagging, padded and bucketed by length."""

import tensorflow as tf

from keras_llm.data._pipeline import (
    TOKENIZE_CHUNK,
    add_specials,
    as_dataset,
    check_positive,
    special_id,
)


def _label_ids(labels, label_names, argument):
    """int labels pass through; string labels map through `label_names`."""
    if labels.dtype != tf.string:
        return tf.cast(labels, tf.int32)
    if not label_names:
        raise ValueError(
            f"The {argument} are strings; pass `label_names` (the list whose index is each "
            "label's id)."
        )
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(label_names)), tf.range(len(label_names), dtype=tf.int32)
        ),
        default_value=-1,
    )
    ids = table.lookup(labels)
    check = tf.debugging.assert_non_negative(
        ids, message=f"A label is not in label_names={list(label_names)}"
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def _bucket_boundaries(sequence_length):
    """Powers of two from 16 below `sequence_length`, then `sequence_length` + 1."""
    boundaries, edge = [], 16
    while edge < sequence_length:
        boundaries.append(edge + 1)
        edge *= 2
    return boundaries + [sequence_length + 1]


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
    """Pads `{"token_ids", ...}` examples into batches, bucketed by length or not."""
    # Zeros everywhere (padding mask, segment ids, labels, weights) but the ids.
    padding_values = tf.nest.map_structure(
        lambda spec: tf.constant(0, spec.dtype), examples.element_spec
    )
    padding_values[0]["token_ids"] = tf.constant(pad_id, tf.int32)
    if not bucket:
        return examples.padded_batch(
            batch_size,
            padded_shapes=tf.nest.map_structure(
                lambda spec: [sequence_length] if spec.shape.rank else [], examples.element_spec
            ),
            padding_values=padding_values,
            drop_remainder=drop_remainder,
        )
    boundaries = _bucket_boundaries(sequence_length)
    return examples.bucket_by_sequence_length(
        lambda x, *_: tf.shape(x["token_ids"])[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=padding_values,
        pad_to_bucket_boundary=True,
        drop_remainder=drop_remainder,
    )


def _shuffled(dataset, shuffle, shuffle_buffer, seed, repeat):
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat() if repeat else dataset


def classification_dataset(
    data,
    tokenizer,
    batch_size,
    *,
    sequence_length=128,
    label_names=None,
    seed=0,
    shuffle=True,
    shuffle_buffer=10_000,
    repeat=False,
    bucket=True,
    drop_remainder=False,
    cls_token_id=None,
    sep_token_id=None,
    pad_token_id=None,
):
    """Batches for `build_bert_classifier` from `(text, label)` pairs.

    Each text becomes `[CLS] ids [SEP]`, truncated to `sequence_length`.
    With `bucket` (the default), examples are grouped by length into
    buckets whose padded lengths are 16, 32, 64, ... up to `sequence_length`,
    so short texts do not pay for long ones (`tf.data`'s
    `bucket_by_sequence_length`; each batch has one bucket's examples, and
    every example appears once per epoch). Without it, every batch is padded
    to `sequence_length` (static shapes, for TPUs).

    Args:
        data: A dataset of `(text, label)` (`load_texts(..., label_field=...)`).
            Labels are int ids, or strings listed in `label_names`.
        tokenizer: A WordPiece or SentencePiece tokenizer.
        batch_size: Examples per batch.
        sequence_length: The longest example, specials included.
        label_names: Names whose index is the label id; required for string labels.
        seed: The shuffling seed.
        shuffle, shuffle_buffer, repeat, drop_remainder: As for the other pipelines.
        bucket: Whether to bucket by length.
        cls_token_id, sep_token_id, pad_token_id: Default to the tokenizer's.

    Returns:
        A dataset of `({"token_ids", "segment_ids", "padding_mask"}, labels)`,
        int32, `[B, padded_length]` and `[B]`.

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
    assert y.numpy().tolist() == [1, 0] and x["token_ids"].shape == (2, 16)
    ```
    """
    check_positive(batch_size=batch_size, sequence_length=sequence_length)
    cls_id = special_id(tokenizer, cls_token_id, "cls_token_id")
    sep_id = special_id(tokenizer, sep_token_id, "sep_token_id")
    pad_id = special_id(tokenizer, pad_token_id, "pad_token_id")
    data = as_dataset(data, "data")
    if not isinstance(data.element_spec, tuple) or len(data.element_spec) != 2:
        raise ValueError(
            "`data` must give (text, label) pairs, e.g. load_texts(..., label_field=...). "
            f"Received elements: {data.element_spec}"
        )
    data = _shuffled(data, shuffle, shuffle_buffer, seed, repeat)

    def encode(texts, labels):
        ids = add_specials(tf.cast(tokenizer(texts), tf.int32), cls_id, sep_id, sequence_length)
        x = {
            "token_ids": ids,
            "segment_ids": tf.zeros_like(ids),
            "padding_mask": tf.ones_like(ids),
        }
        return _examples((x, _label_ids(labels, label_names, "labels")))

    examples = data.batch(TOKENIZE_CHUNK).flat_map(encode)
    batches = _batch(examples, batch_size, sequence_length, bucket, drop_remainder, pad_id)
    return batches.prefetch(tf.data.AUTOTUNE)


def token_tagging_dataset(
    data,
    tokenizer,
    batch_size,
    *,
    sequence_length=128,
    label_names=None,
    seed=0,
    shuffle=True,
    shuffle_buffer=10_000,
    repeat=False,
    bucket=True,
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
    its tag. Bucketing as in `classification_dataset`.

    Args:
        data: A dataset of `(words, tags)`, string `[None]` and int (or
            string, with `label_names`) `[None]` of the same length.
        tokenizer: A WordPiece or SentencePiece tokenizer.
        batch_size: Examples per batch.
        sequence_length: The longest example in pieces, specials included.
        label_names: Names whose index is the tag id; required for string tags.
        Other arguments as in `classification_dataset`.

    Returns:
        A dataset of `({"token_ids", "segment_ids", "padding_mask"}, tags,
        sample_weight)`, `[B, padded_length]` each (tags int32, weights float32).

    Example:

    ```python
    import keras_llm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "new", "york", "is", "big", "##ger"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    data = keras_llm.data.load_texts(
        [{"tokens": ["New", "York", "is", "bigger"], "tags": [1, 2, 0, 0]}],
        text_field="tokens", label_field="tags",
    )
    ds = keras_llm.data.token_tagging_dataset(data, tokenizer, batch_size=1, shuffle=False)
    x, tags, weights = next(iter(ds))
    assert x["token_ids"].numpy()[0, :7].tolist() == [2, 4, 5, 6, 7, 8, 3]
    assert tags.numpy()[0, :7].tolist() == [0, 1, 2, 0, 0, 0, 0]
    assert weights.numpy()[0, :7].tolist() == [0, 1, 1, 1, 1, 0, 0]
    ```
    """
    check_positive(batch_size=batch_size, sequence_length=sequence_length)
    cls_id = special_id(tokenizer, cls_token_id, "cls_token_id")
    sep_id = special_id(tokenizer, sep_token_id, "sep_token_id")
    pad_id = special_id(tokenizer, pad_token_id, "pad_token_id")
    data = as_dataset(data, "data")
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2 or spec[0].shape.rank != 1:
        raise ValueError(
            "`data` must give (words, tags) pairs of 1-D tensors, e.g. load_texts(..., "
            f"text_field='tokens', label_field='tags') on list fields. Received elements: {spec}"
        )
    def check(words, tags):
        with tf.control_dependencies(
            [tf.debugging.assert_equal(tf.size(words), tf.size(tags), message="An example "
                                       "does not have one tag per word")]
        ):
            return tf.identity(words), tf.identity(tags)

    data = data.map(check)
    data = _shuffled(data, shuffle, shuffle_buffer, seed, repeat)

    def encode(words, tags):
        # words, tags: [C, None words]
        tags = tf.RaggedTensor.from_row_splits(
            _label_ids(tags.flat_values, label_names, "tags"), tags.row_splits
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
    batches = _batch(examples, batch_size, sequence_length, bucket, drop_remainder, pad_id)
    return batches.prefetch(tf.data.AUTOTUNE)
