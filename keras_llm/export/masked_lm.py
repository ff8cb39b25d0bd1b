"""The serving of a masked LM: blanks (`[MASK]`) in, their most likely fills out.

See `saved_models/README.md` for the signatures.
"""

import tensorflow as tf

from keras_llm._graph import graph_function
from keras_llm.export.serving import (
    BERT_ID_SPECS,
    Serving,
    bert_inputs,
    checked_bert_inputs,
    serving_tokenizer,
    specials_of,
)

# Hugging Face's fill-mask pipeline's number of fills per blank.
DEFAULT_TOP_K = 5


class MaskedLMServing(Serving):
    """Signatures of a masked-LM export: `serving_default` (`text` with `[MASK]` marking
    blanks -> `mask_positions`, per blank the `top_k` most likely `top_token_ids`,
    `top_tokens`, `top_probabilities`, and `filled_text`) and `fill_ids` (from ids; also
    `mlm_logits`).

    `[MASK]` is recognised as written (case-sensitive), as Hugging Face's
    fill-mask pipeline does; blanks are padded to the batch's most blanks
    with position -1, token id -1, token `""` and probability 0.

    Example:

    ```python
    import tensorflow as tf
    import keras_llm
    from keras_llm.export.masked_lm import MaskedLMServing

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocabulary)
    model = keras_llm.build_bert_pretrainer("bert_tiny", vocabulary_size=len(vocabulary))
    module = MaskedLMServing.from_settings(model, tokenizer, top_k=2)
    out = module.signatures()["serving_default"](tf.constant(["the [MASK]"]))
    assert out["mask_positions"].numpy().tolist() == [[2]] and out["top_tokens"].shape == (1, 1, 2)
    ```
    """

    def __init__(self, model, tokenizer, top_k, specials):
        super().__init__(model, tokenizer)
        self._top_k = top_k
        self._specials = specials
        self._sequence_length = model.max_sequence_length
        self._mask_token_id = specials["mask_token_id"]

    @classmethod
    def from_settings(cls, model, tokenizer, *, top_k=None):
        """Checks `top_k` (fills per blank, default 5) and builds the module."""
        vocabulary_size = model.vocabulary_size
        top_k = DEFAULT_TOP_K if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocabulary_size:
            raise ValueError(
                f"`top_k` (fills per [MASK]) must be an int in [1, {vocabulary_size}]. "
                f"Received: top_k={top_k!r}"
            )
        specials = specials_of(
            model.task, tokenizer, ("cls_token_id", "sep_token_id", "mask_token_id"),
            "A masked-LM export",
        )
        return cls(model, serving_tokenizer(tokenizer), top_k, specials)

    def _fill(self, token_ids, segment_ids, padding_mask, mask_positions):
        length = tf.shape(token_ids)[1]
        valid = mask_positions >= 0
        message = "mask_positions must be -1 (padding) or a position in token_ids"
        checks = [
            tf.debugging.assert_less(mask_positions, length, message=message),
            tf.debugging.assert_greater_equal(mask_positions, -1, message=message),
            tf.debugging.assert_equal(
                tf.shape(mask_positions)[0], tf.shape(token_ids)[0],
                message="mask_positions must have one row per row of token_ids",
            ),
        ]
        with tf.control_dependencies(checks):
            mask_positions = tf.identity(mask_positions)
        # An empty request ([0, 0] positions) fails in the model's gather:
        # one column then, cut off the outputs again.
        blanks = tf.shape(mask_positions)[1]
        no_rows = tf.cast(tf.shape(mask_positions)[0] == 0, tf.int32)
        positions = tf.pad(
            tf.where(valid, mask_positions, 0), [[0, 0], [0, no_rows * tf.maximum(1 - blanks, 0)]]
        )
        outputs = self.model(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask,
             "mask_positions": positions},
            training=False,
        )
        logits = tf.cast(outputs["mlm_logits"], tf.float32)[:, :blanks]  # [B, M, V]
        probabilities, token = tf.math.top_k(tf.nn.softmax(logits), k=self._top_k)
        return {
            "top_token_ids": tf.where(valid[..., None], token, -1),
            "top_probabilities": tf.where(valid[..., None], probabilities, 0.0),
            "mlm_logits": logits,
        }

    @graph_function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        # "[MASK]" in the text marks a blank: tokenize what is between the
        # marks and put the mask token id in their place.
        pieces = tf.strings.split(text, sep="[MASK]")  # [B, masks + 1]
        piece_ids = self.tokenizer(pieces.flat_values)
        mask = tf.RaggedTensor.from_tensor(tf.fill([piece_ids.nrows(), 1], self._mask_token_id))
        ids = pieces.with_flat_values(tf.concat([piece_ids, mask], axis=1)).merge_dims(1, 2)
        ids = ids[:, :-1]  # no mask after the last piece
        token_ids, segment_ids, padding_mask = bert_inputs(
            self._specials, ids, self._sequence_length
        )
        # [N, 2], row-major; padding is never a blank, whatever its id.
        where = tf.where(tf.equal(token_ids, self._mask_token_id) & (padding_mask > 0))
        mask_positions = tf.RaggedTensor.from_value_rowids(
            tf.cast(where[:, 1], tf.int32), where[:, 0], nrows=tf.shape(text, tf.int64)[0]
        ).to_tensor(-1)  # [B, M]
        outputs = self._fill(token_ids, segment_ids, padding_mask, mask_positions)
        top_token_ids = outputs["top_token_ids"]
        # The text with each blank filled by its most likely token.
        filled = tf.tensor_scatter_nd_update(
            token_ids, where, tf.gather_nd(top_token_ids[..., 0], tf.where(mask_positions >= 0))
        )
        special = tf.reduce_any(
            token_ids[..., None] == [self._specials["cls_token_id"], self._specials["sep_token_id"]],
            -1,
        )  # only where [CLS] and [SEP] were put: text cannot hold them
        kept = tf.ragged.boolean_mask(filled, (padding_mask > 0) & tf.logical_not(special))
        return {
            "mask_positions": mask_positions,
            "top_token_ids": top_token_ids,
            # Each id detokenized alone: its token.
            "top_tokens": tf.where(
                top_token_ids >= 0,
                self.tokenizer.detokenize(tf.maximum(top_token_ids, 0)[..., None]),
                "",
            ),
            "top_probabilities": outputs["top_probabilities"],
            "filled_text": self.tokenizer.detokenize(kept),
        }

    @graph_function(input_signature=[*BERT_ID_SPECS, tf.TensorSpec([None, None], tf.int32, name="mask_positions")])
    def fill_ids(self, token_ids, segment_ids, padding_mask, mask_positions):
        token_ids, segment_ids, padding_mask = checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        )
        return self._fill(token_ids, segment_ids, padding_mask, mask_positions)

    def signatures(self):
        return {"serving_default": self.serve, "fill_ids": self.fill_ids}
