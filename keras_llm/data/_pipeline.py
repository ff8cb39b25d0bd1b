"""Pieces the pipelines share: input checks, special ids, per-batch seeds."""

import tensorflow as tf

from keras_llm._checks import is_positive_int

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


def check_positive(**values):
    for name, value in values.items():
        if not is_positive_int(value):
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


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
