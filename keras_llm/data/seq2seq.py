"""Sequence-to-sequence batches (translation, summarization) with teacher forcing."""

import tensorflow as tf

from keras_llm.data._pipeline import (
    TOKENIZE_CHUNK,
    as_dataset,
    bucketing,
    check_positive,
    column,
    padded_batches,
    shuffled,
)
from keras_llm.generation.prompts import source_ids
from keras_llm.models.registry import special_tokens


def seq2seq_specials(source_tokenizer, target_tokenizer=None, *,
                     needed=("start_token_id", "end_token_id", "pad_token_id",
                             "source_end_token_id", "source_pad_token_id"),
                     **given):
    """The special token ids of the seq2seq layout: those `given`, else the tokenizers'.

    `keras_llm.models.registry.special_tokens("seq2seq_lm", ...)`, the one
    place that decides every task's specials, with all five needed by
    default (what `seq2seq_dataset` trains with).

    Example:

    ```python
    import keras_llm
    from keras_llm.data.seq2seq import seq2seq_specials

    specials = seq2seq_specials(keras_llm.tokenizers.ByteTokenizer())
    assert specials["start_token_id"] == specials["end_token_id"] == 256
    assert specials["pad_token_id"] == 257
    ```
    """
    return special_tokens(
        "seq2seq_lm", source_tokenizer, target_tokenizer, needed=needed, **given
    )


def _rows(structure):
    """A dataset of single examples from a structure of `[C, None]` ragged batches."""
    ragged = {k: v for k, v in structure.items() if isinstance(v, tf.RaggedTensor)}
    dense = {k: v.to_tensor() for k, v in ragged.items()}
    lengths = {k: v.row_lengths() for k, v in ragged.items()}
    return tf.data.Dataset.from_tensor_slices((dense, lengths)).map(
        lambda d, n: {k: d[k][: n[k]] for k in d}
    )


def seq2seq_dataset(
    data,
    source_tokenizer,
    target_tokenizer=None,
    batch_size=32,
    *,
    source_length=256,
    target_length=64,
    seed=0,
    shuffle=True,
    shuffle_buffer=10_000,
    repeat=False,
    bucket=None,
    drop_remainder=False,
    start_token_id=None,
    end_token_id=None,
    source_end_token_id=None,
    pad_token_id=None,
    source_pad_token_id=None,
):
    """Teacher-forcing batches for an encoder-decoder from `(source, target)` text pairs.

    Each source becomes its ids, cut to `source_length - 1`, then the source
    end token (T5 and fairseq end sources this way). Each target `t` gives the
    decoder inputs `[start] t` and the labels `t [end]`, both cut to
    `target_length`: at position `i` the decoder sees the target up to `i`
    and learns token `i + 1`. The sample weights are 1 on every label
    (the end token included, so the model learns to stop) and 0 on padding,
    so padding is excluded from the loss as in the other objectives.

    Special tokens default to the target tokenizer's (`seq2seq_specials`,
    which `keras_llm.generation.Generator` decodes with too): `start_token_id`
    to its `start_token_id`, else `cls_token_id`, else `end_token_id` (BART
    and GPT-2 style byte tokenizers start from their end token, as BART's
    `decoder_start_token_id` does); `end_token_id` to its `end_token_id`,
    else `sep_token_id` (Hugging Face's BERT2BERT uses [CLS] and [SEP]);
    padding to `pad_token_id`. The source's end and padding come from the
    source tokenizer the same way.

    With bucketing (by default when shuffling) examples are grouped by
    source length into the buckets of `classification_dataset` and each
    batch is padded to its longest source and target, in no fixed order;
    without it batches keep the input order and every batch is padded to
    `source_length` and `target_length` (static shapes, for TPUs).
    Deterministic for a `seed`: the same batches in the same order.

    Args:
        data: A dataset of `(source, target)` string pairs, e.g.
            `load_texts(path, text_field="de", label_field="en")`, or a list
            of `(source, target)` tuples.
        source_tokenizer: Tokenizes sources.
        target_tokenizer: Tokenizes targets; defaults to `source_tokenizer`
            (a shared vocabulary).
        batch_size: Pairs per batch.
        source_length, target_length: The longest encoder and decoder inputs.
        seed, shuffle, shuffle_buffer, repeat, drop_remainder: As in the
            other pipelines.
        bucket: Whether to bucket by source length; None (the default): only
            when shuffling. `bucket=True` with `shuffle=False` buckets too,
            and the batches then leave the input order.
        start_token_id, end_token_id, pad_token_id: The target's specials.
        source_end_token_id, source_pad_token_id: The source's specials.

    Returns:
        A dataset of `({"encoder_token_ids", "encoder_padding_mask",
        "decoder_token_ids", "decoder_padding_mask"}, labels, sample_weight)`
        (keras-hub's BART names): int32 `[B, S]` and `[B, T]`, labels int32
        `[B, T]`, weights float32 `[B, T]`.

    Example:

    ```python
    import keras_llm

    tokenizer = keras_llm.tokenizers.ByteTokenizer()  # end 256, padding 257
    ds = keras_llm.data.seq2seq_dataset(
        [("Hallo", "Hi")], tokenizer, batch_size=1, shuffle=False,
        source_length=7, target_length=4,
    )
    x, labels, weights = next(iter(ds))
    assert x["encoder_token_ids"].numpy().tolist() == [[72, 97, 108, 108, 111, 256, 257]]
    assert x["decoder_token_ids"].numpy().tolist() == [[256, 72, 105, 257]]
    assert labels.numpy().tolist() == [[72, 105, 256, 257]]
    assert weights.numpy().tolist() == [[1.0, 1.0, 1.0, 0.0]]
    ```
    """
    check_positive(batch_size=batch_size, source_length=source_length, target_length=target_length)
    bucket = bucketing(bucket, shuffle)
    target_tokenizer = target_tokenizer or source_tokenizer
    specials = seq2seq_specials(
        source_tokenizer, target_tokenizer, start_token_id=start_token_id,
        end_token_id=end_token_id, pad_token_id=pad_token_id,
        source_end_token_id=source_end_token_id, source_pad_token_id=source_pad_token_id,
    )
    start_id, end_id, pad_id = (
        specials[k] for k in ("start_token_id", "end_token_id", "pad_token_id")
    )
    source_end_id, source_pad_id = specials["source_end_token_id"], specials["source_pad_token_id"]
    if isinstance(data, (list, tuple)) and all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in data
    ):
        data = tf.data.Dataset.from_tensor_slices(
            ([str(s) for s, _ in data], [str(t) for _, t in data])
        )
    data = as_dataset(data, "data")
    spec = data.element_spec
    if not (
        isinstance(spec, tuple) and len(spec) == 2
        and all(s.dtype == tf.string and s.shape.rank == 0 for s in spec)
    ):
        raise ValueError(
            "`data` must give (source, target) pairs of strings, e.g. load_texts(path, "
            f"text_field='source', label_field='target'). Received elements: {spec}"
        )
    data = shuffled(data, shuffle, shuffle_buffer, seed, repeat)

    def encode(sources, targets):
        # The source layout the Generator and the exports read too (one definition).
        source = source_ids(source_tokenizer(sources), source_length, source_end_id)
        target = tf.cast(target_tokenizer(targets), tf.int32)[:, : target_length - 1]
        rows = source.nrows()
        decoder = tf.concat([column(rows, start_id), target], axis=1)
        labels = tf.concat([target, column(rows, end_id)], axis=1)
        return _rows({
            "encoder_token_ids": source,
            "encoder_padding_mask": tf.ones_like(source),
            "decoder_token_ids": decoder,
            "decoder_padding_mask": tf.ones_like(decoder),
            "labels": labels,
            "sample_weight": tf.ones_like(labels, tf.float32),
        })

    examples = data.batch(TOKENIZE_CHUNK).flat_map(encode)
    padding_values = {
        "encoder_token_ids": source_pad_id, "encoder_padding_mask": 0,
        "decoder_token_ids": pad_id, "decoder_padding_mask": 0,
        "labels": pad_id, "sample_weight": 0.0,
    }
    padding_values = {
        k: tf.constant(v, examples.element_spec[k].dtype) for k, v in padding_values.items()
    }
    lengths = {k: source_length if k.startswith("encoder") else target_length
               for k in padding_values}
    # Buckets by source length, each batch padded to its longest source and target.
    batches = padded_batches(
        examples,
        batch_size,
        source_length,
        lambda example: tf.shape(example["encoder_token_ids"])[0],
        {k: [n] for k, n in lengths.items()},
        padding_values,
        bucket,
        drop_remainder,
    )

    def split(batch):
        labels, weights = batch.pop("labels"), batch.pop("sample_weight")
        return batch, labels, weights

    return batches.map(split).prefetch(tf.data.AUTOTUNE)
