"""The serving of the BERT heads whose logits name labels: a classifier's and a tagger's exports.

See `saved_models/README.md` for their signatures.
"""

import tensorflow as tf

from keras_llm._graph import graph_function
from keras_llm.export.serving import (
    BERT_ID_SPECS,
    Serving,
    bert_inputs,
    bert_logits,
    check_label_names,
    checked_bert_inputs,
    serving_tokenizer,
    specials_of,
)
from keras_llm.tokenizers._word_piece_tables import _WHITESPACE

_TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")

# Unicode's White_Space characters: where BERT's tokenizer splits words, and
# so where a tagger's text is split into the words it tags.
_WHITESPACE_RUN = "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(_WHITESPACE)) + "]+"


class _LabelledServing(Serving):
    """What the classifier and tagger exports share: a BERT body whose logits name labels."""

    what = None  # "class" or "tag": what a label names, as errors say it

    def __init__(self, model, tokenizer, label_names, specials):
        super().__init__(model, tokenizer)
        self._label_names = tf.constant(label_names)
        self._specials = specials  # [CLS], [SEP] and padding ids
        self._sequence_length = model.max_sequence_length

    @classmethod
    def from_settings(cls, model, tokenizer, *, label_names=None):
        """Checks `label_names` (one per label; default "0", "1", ...) and builds the module."""
        specials = specials_of(
            model.task, tokenizer, ("cls_token_id", "sep_token_id"), f"A {model.task} export"
        )
        label_names = check_label_names(label_names, model.outputs[0].shape[-1], cls.what)
        return cls(model, serving_tokenizer(tokenizer), label_names, specials)

    def _logits(self, token_ids, segment_ids, padding_mask):
        logits = bert_logits(self.model, token_ids, segment_ids, padding_mask)
        return tf.cast(logits, tf.float32)  # [B, C] or [B, T, C]

    def signatures(self):
        return {"serving_default": self.serve, "classify_ids": self.classify_ids}


class ClassifierServing(_LabelledServing):
    """Signatures of a classifier export: `serving_default` (`text` -> `probabilities`,
    `label_id`, `label`) and `classify_ids` (the same and `logits`, from ids).

    A text is `[CLS] text [SEP]`, truncated to the context.

    Example:

    ```python
    import tensorflow as tf
    import keras_llm
    from keras_llm.export.labelled import ClassifierServing

    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "ok"])
    model = keras_llm.build_bert_classifier(
        "bert_tiny", num_classes=2, vocabulary_size=tokenizer.vocabulary_size
    )
    module = ClassifierServing.from_settings(model, tokenizer, label_names=["no", "yes"])
    out = module.signatures()["serving_default"](tf.constant(["ok"]))
    assert out["label"].numpy()[0] in (b"no", b"yes")
    ```
    """

    what = "class"

    def _outputs(self, token_ids, segment_ids, padding_mask):
        logits = self._logits(token_ids, segment_ids, padding_mask)
        label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {
            "probabilities": tf.nn.softmax(logits),
            "label_id": label_id,
            "label": tf.gather(self._label_names, label_id),
            "logits": logits,
        }

    @graph_function(input_signature=[_TEXT_SPEC])
    def serve(self, text):
        outputs = self._outputs(
            *bert_inputs(self._specials, self.tokenizer(text), self._sequence_length)
        )
        del outputs["logits"]
        return outputs

    @graph_function(input_signature=BERT_ID_SPECS)
    def classify_ids(self, token_ids, segment_ids, padding_mask):
        return self._outputs(*checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        ))


class TaggerServing(_LabelledServing):
    """Signatures of a tagger export: `serving_default` (`text` -> per word `words`, `tags`,
    `tag_ids`, `scores`, and `num_words`) and `classify_ids` (per token, from ids).

    The text is split into words at whitespace (where BERT's tokenizer
    splits) and each word is tagged by its first piece, as it was trained
    (`keras_llm.data.token_tagging_dataset`); see `keras_llm.export`.

    Example:

    ```python
    import tensorflow as tf
    import keras_llm
    from keras_llm.export.labelled import TaggerServing

    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "ok"])
    model = keras_llm.build_bert_tagger(
        "bert_tiny", num_classes=2, vocabulary_size=tokenizer.vocabulary_size
    )
    module = TaggerServing.from_settings(model, tokenizer, label_names=["O", "X"])
    out = module.signatures()["serving_default"](tf.constant(["ok ok"]))
    assert out["num_words"].numpy().tolist() == [2]
    ```
    """

    what = "tag"

    def _tags(self, logits, tagged):
        """[..., C] logits -> tag ids, tags and their probabilities; -1, "" and 0 where not tagged."""
        tag_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        scores = tf.reduce_max(tf.nn.softmax(logits), axis=-1)
        return (
            tf.where(tagged, tag_ids, -1),
            tf.where(tagged, tf.gather(self._label_names, tag_ids), ""),
            tf.where(tagged, scores, 0.0),
        )

    @graph_function(input_signature=[_TEXT_SPEC])
    def serve(self, text):
        # The words are outputs: valid UTF-8 (a REST answer is JSON).
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
        words = tf.strings.split(tf.strings.regex_replace(text, _WHITESPACE_RUN, " "))  # [B, None]
        # Each word alone gives the pieces it has in its text: BERT's
        # tokenizer never joins characters across whitespace.
        pieces = self.tokenizer(words.flat_values)  # [W, None]
        counts = pieces.row_lengths()
        splits = tf.concat([[0], tf.cumsum(counts)], axis=0)  # [W + 1] piece splits
        # A word's first piece, counted in its text's pieces (and after [CLS]).
        first_piece = splits[:-1] - tf.gather(
            splits, tf.gather(words.row_starts(), words.value_rowids())
        )
        # Words past the context, and words of no piece, get no tag.
        tagged = (counts > 0) & (first_piece < self._sequence_length - 2)
        by_text = tf.RaggedTensor.from_row_splits(pieces.flat_values, tf.gather(splits, words.row_splits))
        logits = self._logits(*bert_inputs(self._specials, by_text, self._sequence_length))
        positions = tf.stack([words.value_rowids(), tf.where(tagged, 1 + first_piece, 0)], axis=-1)
        tag_ids, tags, scores = self._tags(tf.gather_nd(logits, positions), tagged)  # [W]
        return {
            "words": words.to_tensor(""),
            "num_words": tf.cast(words.row_lengths(), tf.int32),
            "tags": words.with_flat_values(tags).to_tensor(""),
            "tag_ids": words.with_flat_values(tag_ids).to_tensor(-1),
            "scores": words.with_flat_values(scores).to_tensor(0.0),
        }

    @graph_function(input_signature=BERT_ID_SPECS)
    def classify_ids(self, token_ids, segment_ids, padding_mask):
        token_ids, segment_ids, padding_mask = checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        )
        logits = self._logits(token_ids, segment_ids, padding_mask)
        tag_ids, tags, scores = self._tags(logits, padding_mask > 0)
        return {"tag_ids": tag_ids, "tags": tags, "scores": scores, "logits": logits}
