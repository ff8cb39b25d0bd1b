"""Pieces the pipelines share: input checks, special ids, per-batch seeds, shuffling and batching."""

import tensorflow as tf

from keras_llm._checks import check_int

# Texts tokenized per call inside the pipelines: large enough to amortise the
# tokenizer's per-call cost, small enough to keep the first batch quick.
TOKENIZE_CHUNK = 256


def as_dataset(texts, argument="texts"):
    """A `tf.data.Dataset` from a dataset or a Python list of strings/records."""
    from keras_llm.data.sources import load_texts

    if isinstance(texts, tf.data.Dataset):
        return texts
    if isinstance(texts, (list, tuple)):
        return load_texts(list(texts))
    raise TypeError(
        f"`{argument}` must be a tf.data.Dataset (e.g. from keras_llm.data.load_texts) or a "
        f"list. Received: {argument}={type(texts).__name__}"
    )


def special_id(tokenizer, value, attribute):
    """`value`, else `tokenizer.<attribute>`; a clear error when neither exists."""
    if value is None:
        value = getattr(tokenizer, attribute, None)
    if value is None:
        raise ValueError(
            f"The tokenizer has no `{attribute}`; pass `{attribute}=` explicitly. "
            f"Received: tokenizer={type(tokenizer).__name__}"
        )
    return int(value)


def special_ids(tokenizer, **given):
    """The ids of `given` (`cls_token_id=None, ...`), each defaulting to the tokenizer's, in order."""
    return tuple(special_id(tokenizer, value, name) for name, value in given.items())


def check_positive(**values):
    """Errors naming the first of `values` (argument name -> value) that is not a positive int."""
    for name, value in values.items():
        check_int(name, value)


def with_batch_seeds(dataset, seed):
    """Pairs each element with a `[2]` int64 seed, new every epoch, fixed by `seed`.

    `Dataset.random(rerandomize_each_iteration=True)` gives another sequence
    on each pass over the dataset but the same sequence of sequences for the
    same `seed`: masks differ between epochs and runs repeat exactly.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(dataset, seeds)


def column(rows, value):
    """A `[rows, 1]` ragged column of `value`, to concatenate special ids onto rows."""
    return tf.RaggedTensor.from_tensor(tf.fill([rows, 1], value))


def add_specials(ids, cls_id, sep_id, sequence_length):
    """[C, None] ids -> [CLS] ids[: sequence_length - 2] [SEP] (ragged)."""
    ids = ids[:, : sequence_length - 2]
    rows = ids.nrows()
    return tf.concat([column(rows, cls_id), ids, column(rows, sep_id)], axis=1)


def model_inputs(ragged, value):
    """`ragged.to_tensor(value)`, at least 3 columns wide when it has no rows.

    With an empty batch, a BERT would get `[0, 0]` inputs, and Keras's `Add`
    fails on zero rows of 0 or 1 tokens ("Biases must be 1D"); `[0, 3]`
    runs. A batch with rows keeps its width (always >= 2: [CLS] [SEP]).
    """
    dense = ragged.to_tensor(tf.cast(value, ragged.dtype))
    missing = tf.where(tf.shape(dense)[0] > 0, 0, tf.maximum(3 - tf.shape(dense)[1], 0))
    return tf.pad(dense, [[0, 0], [0, missing]], constant_values=tf.cast(value, ragged.dtype))


def bucket_boundaries(sequence_length):
    """Powers of two from 16 below `sequence_length`, then `sequence_length` + 1."""
    boundaries, edge = [], 16
    while edge < sequence_length:
        boundaries.append(edge + 1)
        edge *= 2
    return boundaries + [sequence_length + 1]


def bucketing(bucket, shuffle):
    """Whether a pipeline buckets: `bucket`, or by default (None) only when it shuffles.

    Bucketing groups examples by length, so batches leave the input order
    (0, 2, 4, 1, 3, ...): without shuffling, `model.predict` must give its
    rows in the order of the labels they are scored against.
    """
    if bucket is not None and not isinstance(bucket, bool):
        raise ValueError(f"`bucket` must be None, True or False. Received: bucket={bucket!r}")
    return shuffle if bucket is None else bucket


def shuffled(dataset, shuffle, shuffle_buffer, seed, repeat):
    """`dataset` shuffled (each epoch anew) when `shuffle`, repeated forever when `repeat`."""
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat() if repeat else dataset


def padded_batches(
    examples, batch_size, longest, length, padded_shapes, padding_values, bucket, drop_remainder,
    pad_to_bucket_boundary=False,
):
    """Batches of `examples` padded to `padded_shapes`, or bucketed by `length(example)`.

    Buckets are `bucket_boundaries(longest)`; each bucketed batch is padded
    to its longest example (or, with `pad_to_bucket_boundary`, to its bucket's
    boundary).
    """
    if not bucket:
        return examples.padded_batch(
            batch_size,
            padded_shapes=padded_shapes,
            padding_values=padding_values,
            drop_remainder=drop_remainder,
        )
    boundaries = bucket_boundaries(longest)
    return examples.bucket_by_sequence_length(
        length,
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=padding_values,
        pad_to_bucket_boundary=pad_to_bucket_boundary,
        drop_remainder=drop_remainder,
    )
