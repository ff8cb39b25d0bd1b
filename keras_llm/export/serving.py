"""What every kind of serving shares: the base class, the serving tokenizer, BERT's inputs.

A serving module is a `tf.Module` whose `tf.function`s become an export's
signatures. Each kind (a GPT's, a classifier's, ...) lives in a module of
its own and is named by its task's entry in `keras_llm.models.registry`;
`keras_llm.export` builds it with `from_settings(model, tokenizer,
**settings)`, which checks the settings the kind takes (the registry's
`export_settings`), and saves what `signatures()` returns.
"""

import tensorflow as tf

from keras_llm.data._pipeline import add_specials, model_inputs
from keras_llm.generation.checks import check_inputs
from keras_llm.models import registry
from keras_llm.tokenizers import ByteTokenizer, CoreOpsBytePairTokenizer, CoreOpsWordPieceTokenizer

# The id inputs of a BERT's signatures (`classify_ids`, `fill_ids`, `answer_ids`).
BERT_ID_SPECS = [
    tf.TensorSpec([None, None], tf.int32, name=name)
    for name in ("token_ids", "segment_ids", "padding_mask")
]


def serving_tokenizer(tokenizer):
    """The core-ops twin of `tokenizer`: same ids, no tensorflow-text ops.

    `WordPieceTokenizer` and `BytePairTokenizer` become
    `CoreOpsWordPieceTokenizer` and `CoreOpsBytePairTokenizer` with the same
    vocabulary (they give the same ids, tested in tests/tokenizers);
    `ByteTokenizer` and the core-ops tokenizers are kept. SentencePiece needs
    tensorflow-text's op and cannot be exported with core ops only.

    Args:
        tokenizer: A keras_llm tokenizer.

    Returns:
        A tokenizer in core TensorFlow ops giving the same ids.

    Example:

    ```python
    import keras_llm
    from keras_llm.export import serving_tokenizer

    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(["[PAD]", "[UNK]", "the", "cat"])
    twin = serving_tokenizer(tokenizer)
    assert type(twin).__name__ == "CoreOpsWordPieceTokenizer"
    assert twin("the cat").numpy().tolist() == tokenizer("the cat").numpy().tolist()
    ```
    """
    if type(tokenizer) in (ByteTokenizer, CoreOpsBytePairTokenizer, CoreOpsWordPieceTokenizer):
        return tokenizer
    if isinstance(tokenizer, CoreOpsWordPieceTokenizer):
        return CoreOpsWordPieceTokenizer.from_config(tokenizer.get_config())
    if isinstance(tokenizer, CoreOpsBytePairTokenizer):
        return CoreOpsBytePairTokenizer.from_config(tokenizer.get_config())
    raise ValueError(
        "`tokenizer` must be a ByteTokenizer, a WordPiece or a byte-pair tokenizer of "
        "keras_llm.tokenizers (they have core-TensorFlow twins for serving). "
        f"Received: tokenizer={type(tokenizer).__name__}"
    )


class Serving(tf.Module):
    """A kind of serving: the signatures `keras_llm.export` saves for one task.

    A module holds the `model` it serves and the `tokenizer` it serves it
    with (`serving_tokenizer`'s core-ops twin). A subclass implements
    `from_settings` (check the settings, build the module) and `signatures`
    (name -> `tf.function` with an input signature). `keras_llm.export` has
    checked the tokenizer against the model
    (`keras_llm.models.task_model.check_tokenizer`) and refused settings the
    task does not take.
    """

    def __init__(self, model, tokenizer):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_settings(cls, model, tokenizer, **settings):
        """The serving module of `model` with `tokenizer`; settings None take their defaults."""
        raise NotImplementedError

    def signatures(self):
        """The export's signatures: a dict of name -> `tf.function`."""
        raise NotImplementedError


def specials_of(task, tokenizer, needed, what):
    """`task`'s special token ids (`registry.special_tokens`); an error naming a missing one.

    Args:
        task: The model's task name.
        tokenizer: The tokenizer the export serves with.
        needed: The special tokens that the kind's signatures use.
        what: The export as messages name it (`"A masked-LM export"`).
    """
    specials = registry.special_tokens(task, tokenizer)
    for name in needed:
        if name not in specials:
            raise ValueError(
                f"{what} needs a tokenizer with `{name}` (BERT's [CLS], [SEP], [MASK] in its "
                f"vocabulary). Received: tokenizer={type(tokenizer).__name__}"
            )
    return specials


def check_label_names(label_names, num_classes, what):
    """`label_names` (default "0", "1", ...) as strings, one per class; an error naming them."""
    if label_names is None:
        return [str(i) for i in range(num_classes)]
    if (
        isinstance(label_names, (str, bytes))
        or not hasattr(label_names, "__len__")
        or len(label_names) != num_classes
    ):
        raise ValueError(
            f"`label_names` must have one name per {what} ({num_classes}). "
            f"Received: label_names={label_names!r}"
        )
    return [str(name) for name in label_names]


def bert_inputs(specials, ids, sequence_length):
    """[CLS] ids [SEP], the ids truncated to `sequence_length - 2`: dense BERT inputs.

    Returns `(token_ids, segment_ids, padding_mask)`, int32 `[B, T]` each.
    """
    ids = add_specials(ids, specials["cls_token_id"], specials["sep_token_id"], sequence_length)
    token_ids = model_inputs(ids, specials.get("pad_token_id", 0))
    padding_mask = tf.cast(model_inputs(tf.ones_like(ids), 0), tf.int32)
    return token_ids, tf.zeros_like(token_ids), padding_mask


def checked_bert_inputs(model, token_ids, **same_shape):
    """BERT's id inputs, checked against the model's vocabulary and context (see `check_inputs`)."""
    return check_inputs(
        token_ids, model.vocabulary_size, model.max_sequence_length, **same_shape
    )


def bert_logits(model, token_ids, segment_ids, padding_mask):
    """`model`'s outputs on BERT inputs, in inference mode."""
    return model(
        {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
        training=False,
    )
