"""How texts become a decoder's prompts: written once for `Generator` and the exports.

A GPT's prompt is its text's ids; an empty text starts a new document from
the end token (as GPT-2's unconditional samples do). A seq2seq model's
source is cut to leave room for the source end token, which then ends it:
the layout `keras_llm.data.seq2seq_dataset` trains with. Which tokens these
are is decided by `keras_llm.models.registry.special_tokens`.
"""

import tensorflow as tf


def prompt_ids(ids, end_token_id=None, bos_token_id=None):
    """A GPT's prompts from tokenized texts: `bos_token_id` first, if given;
    else an empty row becomes `[end_token_id]`.

    Args:
        ids: Tokenized texts, an int `tf.RaggedTensor` `[B, None]`.
        end_token_id: The token an empty prompt starts from; None leaves
            empty rows empty.
        bos_token_id: The token every prompt starts with (a tokenizer's
            `added_bos_token_id`, as `transformers` adds it), or None.

    Returns:
        The prompts, an int32 `tf.RaggedTensor` `[B, None]`.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.generation.prompts import prompt_ids

    ids = tf.ragged.constant([[72, 105], []])
    assert prompt_ids(ids, 256).to_list() == [[72, 105], [256]]
    assert prompt_ids(ids, 256, bos_token_id=1).to_list() == [[1, 72, 105], [1]]
    ```
    """
    ids = tf.cast(ids, tf.int32)
    if bos_token_id is not None:  # every row
        token, rows = bos_token_id, tf.ones([ids.nrows(), 1], tf.bool)
    elif end_token_id is not None:  # the empty rows
        token, rows = end_token_id, tf.equal(ids.row_lengths(), 0)[:, None]  # [B, 1]
    else:
        return ids
    start = tf.fill([ids.nrows(), 1], tf.constant(token, tf.int32))
    return tf.concat([tf.ragged.boolean_mask(start, rows), ids], axis=1)


def source_ids(ids, max_length, end_token_id):
    """A seq2seq model's sources from tokenized texts: cut, then the source end token.

    Each row keeps its first `max_length - 1` ids and ends with
    `end_token_id` (T5 and fairseq end sources this way), so it is at most
    `max_length` long; an empty text is that token alone.

    Args:
        ids: Tokenized texts, an int `tf.RaggedTensor` `[B, None]`.
        max_length: The longest source, in tokens, the end token included.
        end_token_id: The source end token.

    Returns:
        The sources, an int32 `tf.RaggedTensor` `[B, None]`.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.generation.prompts import source_ids

    ids = tf.ragged.constant([[72, 97, 108], []])
    assert source_ids(ids, 3, 256).to_list() == [[72, 97, 256], [256]]
    ```
    """
    ids = tf.cast(ids, tf.int32)[:, : max_length - 1]
    end = tf.fill([ids.nrows(), 1], tf.constant(end_token_id, tf.int32))
    return tf.concat([ids, end], axis=1)
