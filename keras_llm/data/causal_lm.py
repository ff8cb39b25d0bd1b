"""Causal-LM packing: documents joined by an end token, cut into next-token windows."""

import tensorflow as tf

from keras_llm.data._pipeline import (
    TOKENIZE_CHUNK,
    as_dataset,
    check_positive,
    column,
    shuffled,
    special_id,
)


def causal_lm_dataset(
    texts,
    tokenizer,
    sequence_length,
    batch_size,
    *,
    end_token_id=None,
    seed=0,
    shuffle=True,
    shuffle_buffer=10_000,
    repeat=False,
    drop_remainder=True,
):
    """A `tf.data.Dataset` of packed next-token training batches.

    Each document is tokenized and followed by `end_token_id`; the documents
    form one stream, cut into consecutive windows of `sequence_length + 1`
    tokens that overlap by one, each giving inputs `window[:-1]` and labels
    `window[1:]` (GPT-2 and nanoGPT's packing: no padding, every token is a
    target once; a window may span two documents). The stream is built
    while iterating, so the corpus need not fit in memory as ids.

    With `shuffle`, documents are shuffled before packing and windows after
    it, both through buffers of `shuffle_buffer` elements, every epoch
    differently and the same for the same `seed`.

    Args:
        texts: A dataset of strings (`keras_llm.data.load_texts`) or a list.
        tokenizer: A keras_llm tokenizer (any layer mapping `[B]` strings to
            ragged `[B, None]` ids).
        sequence_length: Tokens per training sequence.
        batch_size: Sequences per batch.
        end_token_id: The separator id; defaults to `tokenizer.end_token_id`.
        seed: The shuffling seed.
        shuffle: Whether to shuffle.
        shuffle_buffer: Elements held by each shuffle buffer.
        repeat: Whether to repeat forever (the stream flows across epochs).
        drop_remainder: Whether to drop a last, smaller batch.

    Returns:
        A dataset of `({"token_ids", "padding_mask"}, labels, sample_weight)`,
        each `(batch_size, sequence_length)`, as `build_gpt`'s model expects.

    Raises:
        ValueError: when `texts` are too short to give one batch (one window,
            or `batch_size` windows with `drop_remainder`), rather than an
            empty dataset. To tell, the texts are tokenized up to that many
            tokens when the dataset is made (usually a part of the first
            chunk of 256).

    Example:

    ```python
    import keras_llm

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    ds = keras_llm.data.causal_lm_dataset(["abc", "de"], tokenizer, 3, batch_size=2, shuffle=False)
    x, y, w = next(iter(ds))
    assert x["token_ids"].numpy().tolist() == [[97, 98, 99], [256, 100, 101]]  # 256: end
    assert y.numpy().tolist() == [[98, 99, 256], [100, 101, 256]]
    ```
    """
    check_positive(sequence_length=sequence_length, batch_size=batch_size)
    end_token_id = special_id(tokenizer, end_token_id, "end_token_id")
    texts = as_dataset(texts)
    _check_long_enough(texts, tokenizer, sequence_length, batch_size, drop_remainder, repeat)
    texts = shuffled(texts, shuffle, shuffle_buffer, seed, repeat)

    def stream(chunk):
        ids = tf.cast(tokenizer(chunk), tf.int32)  # [C, None]
        return tf.concat([ids, column(tf.shape(chunk)[0], end_token_id)], axis=1).flat_values

    def cut(leftover, ids):
        # Windows start every `sequence_length` tokens; the tail from the last
        # start (including the overlap token) waits for the next chunk.
        ids = tf.concat([leftover, ids], 0)
        count = (tf.shape(ids)[0] - 1) // sequence_length
        starts = tf.range(count) * sequence_length
        windows = tf.gather(ids, starts[:, None] + tf.range(sequence_length + 1))
        return ids[count * sequence_length :], windows  # [count, L + 1]

    windows = (
        texts.batch(TOKENIZE_CHUNK)
        .map(stream, num_parallel_calls=tf.data.AUTOTUNE)
        .scan(tf.zeros([0], tf.int32), cut)
        .unbatch()
    )
    if shuffle:
        windows = windows.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    batches = windows.batch(batch_size, drop_remainder=drop_remainder)

    def split(window):
        inputs = window[:, :-1]
        ones = tf.ones_like(inputs)
        return (
            {"token_ids": inputs, "padding_mask": ones},
            window[:, 1:],
            tf.cast(ones, tf.float32),
        )

    return batches.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _check_long_enough(texts, tokenizer, sequence_length, batch_size, drop_remainder, repeat):
    """A ValueError naming the lengths when `texts` cannot fill one batch (the dataset would be empty)."""
    # One window is `sequence_length + 1` tokens, and the next starts
    # `sequence_length` later; repeated, any text with a token fills them.
    windows = batch_size if drop_remainder else 1
    needed = 1 if repeat else windows * sequence_length + 1
    total = 0
    for chunk in texts.batch(TOKENIZE_CHUNK):
        # Each text and its end token.
        total += int(tf.size(tf.cast(tokenizer(chunk), tf.int32).flat_values)) + int(tf.size(chunk))
        if total >= needed:
            return
    if repeat:
        raise ValueError("causal_lm_dataset: `texts` hold no text: the dataset would be empty.")
    raise ValueError(
        f"causal_lm_dataset: `texts` hold {total} tokens (an end token after each text), "
        f"fewer than the {needed} that {windows} window(s) of sequence_length + 1 tokens "
        f"need{' (a full batch, drop_remainder=True)' if drop_remainder else ''}: the dataset "
        f"would be empty. Received: sequence_length={sequence_length}, batch_size={batch_size}, "
        f"drop_remainder={drop_remainder}"
    )
