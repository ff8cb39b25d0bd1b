"""SavedModel export in TF Serving's layout, serving raw text with core TensorFlow ops."""

import logging
import os
import re

import tensorflow as tf

from keras_llm._atomic import atomic_output, clean_interrupted_in
from keras_llm.data._pipeline import add_specials, model_inputs
from keras_llm.data.seq2seq import seq2seq_specials
from keras_llm.data.question_answering import QUESTION_ANSWERING_DEFAULTS, check_window_settings
from keras_llm.evaluation.question_answering import (
    answer_questions,
    best_spans,
    check_max_answer_length,
)
from keras_llm.generation import Generator
from keras_llm.generation.generator import (
    PROMPT_SPECS,
    SETTING_SPECS,
    check_inputs,
    check_stop_token_ids,
)
from keras_llm.generation.samplers import check_settings
from keras_llm.tokenizers import (
    ByteTokenizer,
    CoreOpsBytePairTokenizer,
    CoreOpsWordPieceTokenizer,
)
from keras_llm.tokenizers.core_ops_word_piece_tokenizer import _WHITESPACE

logger = logging.getLogger("keras_llm")

# What `serving_default` of a GPT export does unless `export` is told otherwise.
GENERATION_DEFAULTS = dict(max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0, seed=0)


def serving_tokenizer(tokenizer):
    """The core-ops twin of `tokenizer`: same ids, no tensorflow-text ops.

    `WordPieceTokenizer` and `BytePairTokenizer` become
    `CoreOpsWordPieceTokenizer` and `CoreOpsBytePairTokenizer` with the same
    vocabulary (they give the same ids, tested in tests/tokenizers);
    `ByteTokenizer` and the core-ops tokenizers are kept. SentencePiece needs
    tensorflow-text's op and cannot be exported with core ops only.
    """
    if type(tokenizer) in (ByteTokenizer, CoreOpsBytePairTokenizer, CoreOpsWordPieceTokenizer):
        return tokenizer
    if isinstance(tokenizer, CoreOpsWordPieceTokenizer):
        return CoreOpsWordPieceTokenizer.from_config(tokenizer.get_config())
    if isinstance(tokenizer, CoreOpsBytePairTokenizer):
        return CoreOpsBytePairTokenizer(tokenizer.vocabulary, tokenizer.merges)
    raise ValueError(
        "`tokenizer` must be a ByteTokenizer, a WordPiece or a byte-pair tokenizer of "
        "keras_llm.tokenizers (they have core-TensorFlow twins for serving). "
        f"Received: tokenizer={type(tokenizer).__name__}"
    )


def _task(model):
    """What `model` says it is (`model.task`), if it is a kind that exports."""
    task = getattr(model, "task", None)
    if task in _TASK_NAMES:
        return task
    raise ValueError(
        "`model` must be a GPT from keras_llm.build_gpt, a seq2seq model from "
        "keras_llm.build_seq2seq, a masked LM from "
        "keras_llm.build_bert_pretrainer, a classifier from keras_llm.build_bert_classifier, a "
        "tagger from keras_llm.build_bert_tagger or a question answerer from "
        f"keras_llm.build_bert_question_answerer. Received: model={model.name!r}"
        + (f" (task {task!r})" if task else " (no `task`: a plain keras.Model, or a .keras file "
           "saved by an earlier keras_llm; build it again and copy the weights)")
    )


# What each kind of model is called in messages, and the settings of `export` it takes.
_TASK_NAMES = {
    "causal_lm": "GPT",
    "seq2seq_lm": "seq2seq model",
    "masked_lm": "masked LM",
    "classifier": "classifier",
    "tagger": "tagger",
    "question_answerer": "question answerer",
}
_GENERATION_SETTINGS = (
    "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_token_ids", "jit_compile",
)
_TASK_SETTINGS = {
    "causal_lm": _GENERATION_SETTINGS,
    "seq2seq_lm": _GENERATION_SETTINGS,
    "masked_lm": ("top_k",),
    "classifier": ("label_names",),
    "tagger": ("label_names",),
    "question_answerer": ("max_answer_length", "doc_stride", "max_question_length"),
}


def _refuse_other_settings(task, settings):
    """An error naming every setting given that is for other kinds of models."""
    others = {
        name: value for name, value in settings.items()
        if value is not None and name not in _TASK_SETTINGS[task]
    }
    if others:
        takers = {
            name: _listed([f"{_TASK_NAMES[kind]}s" for kind, names in _TASK_SETTINGS.items()
                           if name in names])
            for name in others
        }
        raise ValueError(
            f"{' and '.join(others)} {'is' if len(others) == 1 else 'are'} for other models "
            f"({'; '.join(f'{name}: {kinds}' for name, kinds in takers.items())}); this model is a "
            f"{_TASK_NAMES[task]}. Received: "
            + ", ".join(f"{name}={value!r}" for name, value in others.items())
        )


def _listed(words):
    """"a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _check_label_names(label_names, num_classes, what):
    """`label_names` (default "0", "1", ...) as strings, one per class."""
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


def _check_vocabulary(tokenizer, model, task):
    """The tokenizer must give the model's ids: all of them where outputs are ids to name."""
    model_size = model.vocabulary_size
    size = tokenizer.vocabulary_size
    # A GPT's and a masked LM's outputs are ids that the tokenizer names;
    # classifiers, taggers and question answerers only read its ids.
    reads_only = task in ("classifier", "tagger", "question answerer")
    fits = size <= model_size if reads_only else size == model_size
    if not fits:
        expected = "at most" if reads_only else "exactly"
        raise ValueError(
            f"`tokenizer` must have {expected} the model's {model_size} token ids (a {task} "
            f"export serves text through it). Received: tokenizer={type(tokenizer).__name__} "
            f"with {size} token ids"
        )


def _bert_special_tokens(tokenizer, task, names):
    for name in names:
        if getattr(tokenizer, name, None) is None:
            raise ValueError(
                f"A {task} export needs a tokenizer with `{name}` (BERT's [CLS], [SEP], "
                f"[MASK] in its vocabulary). Received: tokenizer={type(tokenizer).__name__}"
            )


def _checked_bert_inputs(model, token_ids, **same_shape):
    """BERT's id inputs, checked against the model's vocabulary and context (see `check_inputs`)."""
    return check_inputs(
        token_ids, model.vocabulary_size, model.max_sequence_length, **same_shape
    )


def _bert_inputs(tokenizer, ids, sequence_length):
    """[CLS] ids [SEP], the ids truncated to `sequence_length - 2`: dense BERT inputs."""
    ids = add_specials(ids, tokenizer.cls_token_id, tokenizer.sep_token_id, sequence_length)
    token_ids = model_inputs(ids, tokenizer.pad_token_id or 0)
    padding_mask = tf.cast(model_inputs(tf.ones_like(ids), 0), tf.int32)
    return token_ids, tf.zeros_like(token_ids), padding_mask


class _CausalLMServing(tf.Module):
    """Signatures of a GPT export; see saved_models/README.md."""

    def __init__(self, model, tokenizer, defaults, stop_token_ids, jit_compile):
        super().__init__()
        # Generated ids are named by the tokenizer.
        _check_vocabulary(tokenizer, model, _TASK_NAMES[model.task])
        self.model = model
        self.tokenizer = tokenizer
        self._generator = Generator(model, tokenizer, jit_compile=jit_compile)
        # The decoding loop: XLA-compiled per shape bucket, or a plain graph.
        self._decode = self._generator.compiled_sample if jit_compile else self._generator.sample
        self._defaults = defaults
        self._stop_token_ids = tf.constant(stop_token_ids, tf.int32, shape=[len(stop_token_ids)])
        self._end_token_id = getattr(tokenizer, "end_token_id", None)

    def _ids(self, text):
        ids = self.tokenizer(text)  # [B, None]
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        token_ids = ids.to_tensor(0)
        if self._end_token_id is not None:  # an empty prompt starts a new document
            token_ids = tf.pad(token_ids, [[0, 0], [0, 1]])  # room for one token
            empty = (lengths == 0)[:, None] & (tf.range(tf.shape(token_ids)[1]) == 0)[None, :]
            token_ids = tf.where(empty, self._end_token_id, token_ids)
            lengths = tf.maximum(lengths, 1)
        padding_mask = tf.range(tf.shape(token_ids)[1])[None, :] < lengths[:, None]
        return token_ids, tf.cast(padding_mask, tf.int32)

    def _generate(self, token_ids, padding_mask, *settings):
        return self._decode(token_ids, padding_mask, *settings, self._stop_token_ids)

    def _with_text(self, outputs):
        generated = tf.RaggedTensor.from_tensor(
            outputs["generated_ids"], lengths=outputs["generated_length"]
        )
        kept = tf.ragged.boolean_mask(
            generated, tf.logical_not(tf.reduce_any(
                generated[..., None] == self._stop_token_ids, axis=-1
            ))
        )
        text = self.tokenizer.detokenize(kept)
        # A byte-level model can stop inside a character: always valid UTF-8.
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
        return {"generated_text": text, **outputs}

    def _per_row(self, text, name, dtype):
        return tf.fill(tf.shape(text), tf.constant(self._defaults[name], dtype))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        token_ids, padding_mask = self._ids(text)
        outputs = self._generate(
            token_ids, padding_mask,
            self._per_row(text, "max_new_tokens", tf.int32),
            self._per_row(text, "temperature", tf.float32),
            self._per_row(text, "top_k", tf.int32),
            self._per_row(text, "top_p", tf.float32),
            self._per_row(text, "seed", tf.int32),
        )
        return self._with_text(outputs)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"), *SETTING_SPECS])
    def generate(self, text, max_new_tokens, temperature, top_k, top_p, seed):
        token_ids, padding_mask = self._ids(text)
        outputs = self._generate(
            token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed
        )
        return self._with_text(outputs)

    @tf.function(input_signature=[*PROMPT_SPECS, *SETTING_SPECS])
    def generate_ids(self, token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed):
        return self._generate(
            token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed
        )

    @tf.function(input_signature=PROMPT_SPECS)
    def logits(self, token_ids, padding_mask):
        token_ids, padding_mask = check_inputs(
            token_ids, self._generator.vocabulary_size, self._generator.max_sequence_length,
            padding_mask=padding_mask,
        )
        logits = self.model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        return {"logits": tf.cast(logits, tf.float32)}

    def signatures(self):
        return {
            "serving_default": self.serve,
            "generate": self.generate,
            "generate_ids": self.generate_ids,
            "logits": self.logits,
        }


class _Seq2SeqServing(_CausalLMServing):
    """Signatures of a seq2seq export: a source text in, its generated target out."""

    def __init__(self, model, tokenizer, defaults, stop_token_ids, jit_compile):
        if model.source_vocabulary_size != model.vocabulary_size:
            raise ValueError(
                "A seq2seq export serves one tokenizer for sources and targets: the model must "
                f"have a shared vocabulary. Received: a model with {model.source_vocabulary_size} "
                f"source and {model.vocabulary_size} target token ids"
            )
        super().__init__(model, tokenizer, defaults, stop_token_ids, jit_compile)
        self._source_end_token_id = self._generator.source_end_token_id

    def _ids(self, text):
        # As seq2seq_dataset's sources: the first tokens that fit, then the end token.
        ids = self.tokenizer(text)[:, : self.model.max_sequence_length - 1]  # [B, None]
        rows = ids.nrows()
        ids = tf.concat([ids, tf.fill([rows, 1], self._source_end_token_id)], axis=1)
        padding_mask = tf.ones_like(ids).to_tensor(0)
        return ids.to_tensor(0), padding_mask

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.int32, name=name)
        for name in ("encoder_token_ids", "encoder_padding_mask",
                     "decoder_token_ids", "decoder_padding_mask")
    ])
    def logits(self, encoder_token_ids, encoder_padding_mask, decoder_token_ids,
               decoder_padding_mask):
        context = self.model.max_sequence_length
        encoder_token_ids, encoder_padding_mask = check_inputs(
            encoder_token_ids, self.model.source_vocabulary_size, context,
            padding_mask=encoder_padding_mask,
        )
        decoder_token_ids, decoder_padding_mask = check_inputs(
            decoder_token_ids, self.model.vocabulary_size, context,
            padding_mask=decoder_padding_mask,
        )
        logits = self.model({
            "encoder_token_ids": encoder_token_ids, "encoder_padding_mask": encoder_padding_mask,
            "decoder_token_ids": decoder_token_ids, "decoder_padding_mask": decoder_padding_mask,
        }, training=False)
        return {"logits": tf.cast(logits, tf.float32)}


class _LabelledServing(tf.Module):
    """What the classifier and tagger exports share: a BERT body whose logits name labels."""

    task = None  # "classifier" or "tagger", as errors name it

    def __init__(self, model, tokenizer, label_names, sequence_length):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self._label_names = tf.constant(label_names)
        self._sequence_length = sequence_length
        _bert_special_tokens(tokenizer, self.task, ("cls_token_id", "sep_token_id"))
        _check_vocabulary(tokenizer, model, self.task)

    def _logits(self, token_ids, segment_ids, padding_mask):
        logits = self.model(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            training=False,
        )
        return tf.cast(logits, tf.float32)  # [B, C] or [B, T, C]


class _ClassifierServing(_LabelledServing):
    """Signatures of a classifier export; see saved_models/README.md."""

    task = "classifier"

    def _outputs(self, token_ids, segment_ids, padding_mask):
        logits = self._logits(token_ids, segment_ids, padding_mask)
        label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {
            "probabilities": tf.nn.softmax(logits),
            "label_id": label_id,
            "label": tf.gather(self._label_names, label_id),
            "logits": logits,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        outputs = self._outputs(
            *_bert_inputs(self.tokenizer, self.tokenizer(text), self._sequence_length)
        )
        del outputs["logits"]
        return outputs

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
        ]
    )
    def classify_ids(self, token_ids, segment_ids, padding_mask):
        return self._outputs(*_checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        ))

    def signatures(self):
        return {"serving_default": self.serve, "classify_ids": self.classify_ids}


# Unicode's White_Space characters: where BERT's tokenizer splits words, and
# so where a tagger's text is split into the words it tags.
_WHITESPACE_RUN = "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(_WHITESPACE)) + "]+"


class _TaggerServing(_LabelledServing):
    """Signatures of a tagger export; see saved_models/README.md."""

    task = "tagger"

    def _tags(self, logits, tagged):
        """[..., C] logits -> tag ids, tags and their probabilities; -1, "" and 0 where not tagged."""
        tag_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        scores = tf.reduce_max(tf.nn.softmax(logits), axis=-1)
        return (
            tf.where(tagged, tag_ids, -1),
            tf.where(tagged, tf.gather(self._label_names, tag_ids), ""),
            tf.where(tagged, scores, 0.0),
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
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
        logits = self._logits(*_bert_inputs(self.tokenizer, by_text, self._sequence_length))
        positions = tf.stack([words.value_rowids(), tf.where(tagged, 1 + first_piece, 0)], axis=-1)
        tag_ids, tags, scores = self._tags(tf.gather_nd(logits, positions), tagged)  # [W]
        return {
            "words": words.to_tensor(""),
            "num_words": tf.cast(words.row_lengths(), tf.int32),
            "tags": words.with_flat_values(tags).to_tensor(""),
            "tag_ids": words.with_flat_values(tag_ids).to_tensor(-1),
            "scores": words.with_flat_values(scores).to_tensor(0.0),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
        ]
    )
    def classify_ids(self, token_ids, segment_ids, padding_mask):
        token_ids, segment_ids, padding_mask = _checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        )
        logits = self._logits(token_ids, segment_ids, padding_mask)
        tag_ids, tags, scores = self._tags(logits, padding_mask > 0)
        return {"tag_ids": tag_ids, "tags": tags, "scores": scores, "logits": logits}

    def signatures(self):
        return {"serving_default": self.serve, "classify_ids": self.classify_ids}


class _QuestionAnswererServing(tf.Module):
    """Signatures of a question-answering export; see saved_models/README.md."""

    def __init__(self, model, tokenizer, settings):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self._settings = settings
        _bert_special_tokens(tokenizer, "question-answering", ("cls_token_id", "sep_token_id"))
        _check_vocabulary(tokenizer, model, "question answerer")
        self._sep_token_id = tokenizer.sep_token_id

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="question"),
            tf.TensorSpec([None], tf.string, name="context"),
        ]
    )
    def serve(self, question, context):
        return answer_questions(self.model, self.tokenizer, question, context, **self._settings)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
        ]
    )
    def answer_ids(self, token_ids, segment_ids, padding_mask):
        token_ids, segment_ids, padding_mask = _checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        )
        outputs = self.model(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            training=False,
        )
        start_logits = tf.cast(outputs["start_logits"], tf.float32)
        end_logits = tf.cast(outputs["end_logits"], tf.float32)
        # The context: segment 1, not padding, not its closing [SEP].
        context = (segment_ids == 1) & (padding_mask > 0) & (token_ids != self._sep_token_id)
        start, end, score = best_spans(
            start_logits, end_logits, context, self._settings["max_answer_length"]
        )
        return {
            "start_logits": start_logits,
            "end_logits": end_logits,
            "start_index": start,
            "end_index": end,
            "score": score,
        }

    def signatures(self):
        return {"serving_default": self.serve, "answer_ids": self.answer_ids}


class _MaskedLMServing(tf.Module):
    """Signatures of a masked-LM export; see saved_models/README.md."""

    def __init__(self, model, tokenizer, top_k, sequence_length):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self._top_k = top_k
        self._sequence_length = sequence_length
        _bert_special_tokens(tokenizer, "masked-LM", ("cls_token_id", "sep_token_id", "mask_token_id"))
        _check_vocabulary(tokenizer, model, "masked-LM")  # fills are named by the tokenizer
        self._mask_token_id = tokenizer.mask_token_id

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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        # "[MASK]" in the text marks a blank: tokenize what is between the
        # marks and put the mask token id in their place.
        pieces = tf.strings.split(text, sep="[MASK]")  # [B, masks + 1]
        piece_ids = self.tokenizer(pieces.flat_values)
        mask = tf.RaggedTensor.from_tensor(tf.fill([piece_ids.nrows(), 1], self._mask_token_id))
        ids = pieces.with_flat_values(tf.concat([piece_ids, mask], axis=1)).merge_dims(1, 2)
        ids = ids[:, :-1]  # no mask after the last piece
        token_ids, segment_ids, padding_mask = _bert_inputs(
            self.tokenizer, ids, self._sequence_length
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
            token_ids[..., None] == [self.tokenizer.cls_token_id, self.tokenizer.sep_token_id], -1
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

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
            tf.TensorSpec([None, None], tf.int32, name="mask_positions"),
        ]
    )
    def fill_ids(self, token_ids, segment_ids, padding_mask, mask_positions):
        token_ids, segment_ids, padding_mask = _checked_bert_inputs(
            self.model, token_ids, segment_ids=segment_ids, padding_mask=padding_mask
        )
        return self._fill(token_ids, segment_ids, padding_mask, mask_positions)

    def signatures(self):
        return {"serving_default": self.serve, "fill_ids": self.fill_ids}


def export(
    model,
    path,
    tokenizer,
    *,
    version=None,
    overwrite=False,
    label_names=None,
    max_new_tokens=None,
    temperature=None,
    top_k=None,
    top_p=None,
    seed=None,
    stop_token_ids=None,
    max_answer_length=None,
    doc_stride=None,
    max_question_length=None,
    jit_compile=False,
):
    """Exports `model` with its tokenizer as a SavedModel that TF Serving serves from text.

    Writes `path/VERSION/` (TF Serving's layout: `path` is the model's base
    path, `VERSION` an integer, by default one more than the largest there).
    The version is written into a temporary directory beside it (a name TF
    Serving ignores) and renamed into place, so a server watching `path`
    never loads a half-written version; what a killed export left there is
    removed by the next one. The version gets the modes of the user's umask
    (0755 directories, 0644 files under umask 022), so a TF Serving process
    of another user can read it. An existing version is an error unless
    `overwrite=True`.

    The SavedModel holds the weights, the tokenizer (its core-ops twin, see
    `serving_tokenizer`) and the decoding loop, and uses only ops that
    TensorFlow itself registers: it loads with nothing but `tensorflow`
    installed, in Python or in any TF Serving build. Its signatures (table in
    `saved_models/README.md`):

    - a GPT: `serving_default` (`text` -> `generated_text`, `generated_ids`,
      `generated_length`, decoding with the defaults given here),
      `generate` (the same with per-row `max_new_tokens`, `temperature`,
      `top_k`, `top_p`, `seed`: TF Serving cannot leave out a signature
      input, so the settings are a second signature), `generate_ids` (from
      `token_ids` and `padding_mask`) and `logits`. Each setting has one
      value per text, or one value that applies to every text (handy for a
      REST client: `"inputs": {"text": [...], "seed": [1], ...}`); any
      other number of values fails with `INVALID_ARGUMENT` naming the
      setting. No texts give empty outputs. Ids outside the vocabulary, and
      `logits` input longer than the context, fail with `INVALID_ARGUMENT`
      naming `token_ids`.
    - a seq2seq model (`keras_llm.build_seq2seq`, one tokenizer for source
      and target): the same `serving_default`, `generate` and
      `generate_ids` with the texts as sources: each is cut to
      `max_sequence_length - 1` tokens and ended with the source end token,
      as `keras_llm.data.seq2seq_dataset` trains (an empty text is just
      that token), and `generated_text` is the target written from the
      decoder's start token (`Generator` decodes the same way);
      `generate_ids` takes the encoder's ids as given; `logits` takes the
      model's four inputs (`encoder_token_ids`, `encoder_padding_mask`,
      `decoder_token_ids`, `decoder_padding_mask`).
    - a masked LM: `serving_default` (`text` with `[MASK]` marking blanks ->
      `mask_positions`, and per blank the `top_k` most likely
      `top_token_ids`, `top_tokens`, `top_probabilities`; `filled_text`,
      each blank filled with its most likely token) and `fill_ids` (from
      `token_ids`, `segment_ids`, `padding_mask`, `mask_positions`; also
      `mlm_logits`). Blanks are padded to the batch's most blanks with
      position -1, token id -1, token `""` and probability 0. `[MASK]` is
      recognised as written (case-sensitive), as Hugging Face's fill-mask
      pipeline does; the text between blanks is tokenized as usual.
    - a classifier: `serving_default` (`text` -> `probabilities`,
      `label_id`, `label`) and `classify_ids` (also `logits`).
    - a tagger: `serving_default` (`text` -> per word `words`, `tags`,
      `tag_ids`, `scores`, and `num_words`) and `classify_ids` (per token
      `tag_ids`, `tags`, `scores`, `logits`). The text is split into words
      at whitespace (Unicode's White_Space characters, where BERT's
      tokenizer splits too: Python's `str.split()` but for U+001C..U+001F)
      and each word is tagged by its first piece, as it was trained
      (`keras_llm.data.token_tagging_dataset`); `scores` are the softmax
      probabilities of the tags. Outputs are padded to the request's most
      words (`""`, -1, 0); `num_words` counts each text's words. A word that
      tokenizes to nothing (e.g. only control characters), or whose first
      piece is past the context (`max_sequence_length - 2` pieces: longer
      texts are truncated, not strided), is listed with tag `""`, tag id -1
      and score 0.
    - a question answerer: `serving_default` (`question`, `context` ->
      `answer`, `score`, `start`, `end`) and `answer_ids` (from
      `token_ids`, `segment_ids`, `padding_mask`: `start_logits`,
      `end_logits`, and the best span's `start_index`, `end_index`,
      `score`). See `keras_llm.evaluation.answer_questions`, which serves
      it: contexts longer than a window are cut into windows that overlap
      by `doc_stride` tokens, questions keep their first
      `max_question_length` tokens, the answer is the best span of at most
      `max_answer_length` tokens over all windows, cut from the context's
      own text; `score` is the span's start and end probabilities
      multiplied (Hugging Face's pipeline score); `start` and `end` are
      offsets into the context in characters (code points). An empty
      context answers `""` with score 0.

    A GPT's or a seq2seq model's decoding loop is by default a plain graph,
    which every TensorFlow runtime and TF Serving build runs as it is. With
    `jit_compile=True` the loop is XLA-compiled (what `Generator` runs by
    default; `benchmarks/serving_latency.py` measures both): each shape
    bucket (`Generator.bucket_shapes`: batch size rounded up to a power of
    two, prompt length to 32 tokens, prompt plus new tokens to 64) compiles
    on its first request, once per process, and then decodes about 3x
    faster on a CPU. The SavedModel then needs XLA where it runs:
    `tf.saved_model.load` in TensorFlow's pip builds has it; TF Serving on a
    CPU needs `--xla_cpu_compilation_enabled=true` (without it every
    generation request fails); TF Serving's GPU images have shipped without
    XLA's GPU compiler (tensorflow/serving#2214), so keep the default there.

    Text longer than the model's context is truncated: a classifier, a
    tagger or a masked LM keeps the first `max_sequence_length - 2` tokens
    (a `[MASK]` past them is dropped, with no position); a GPT prompt keeps
    its last tokens, leaving room for `max_new_tokens`. An empty GPT prompt
    starts from the tokenizer's `end_token_id`. Generated text is always
    valid UTF-8 (a byte-level model can stop inside a character: U+FFFD).

    Args:
        model: A model from `keras_llm.build_gpt`, `keras_llm.build_seq2seq`,
            `keras_llm.build_bert_pretrainer`,
            `keras_llm.build_bert_classifier`, `keras_llm.build_bert_tagger`
            or `keras_llm.build_bert_question_answerer`.
        path: The model's base directory, e.g. `"saved_models/gpt_nano"`
            (created if needed; not a file).
        tokenizer: The tokenizer the model was trained with: it must have
            the model's vocabulary size (a classifier's, a tagger's or a
            question answerer's: at most it).
        version: The version number; default: the next free one.
        overwrite: Whether an existing `version` may be replaced.
        label_names: A classifier's class names, a tagger's tag names
            (default `"0"`, `"1"`, ...).
        max_new_tokens, temperature, top_k, top_p, seed: A GPT's or a
            seq2seq model's `serving_default` settings; defaults: 64 (fewer if the context
            is shorter), greedy (0.0), 0 (no top-k), 1.0 (no top-p), 0.
            For a masked LM, `top_k` is the number of fills per blank
            (default 5, as in Hugging Face's fill-mask pipeline).
        stop_token_ids: A GPT's or seq2seq model's stop tokens, ids of its
            vocabulary; default: the tokenizer's `end_token_id`, if any (a
            seq2seq model: the end token of `seq2seq_specials`).
        max_answer_length, doc_stride, max_question_length: A question
            answerer's settings, in tokens; defaults: 30 (as Hugging Face's
            run_qa.py), 128 and 64 (as its pipeline). Windows are
            `min(384, max_sequence_length)` tokens, as in its pipeline;
            `doc_stride` must be less than `window - 3 - max_question_length`.
        jit_compile: A GPT's or seq2seq model's decoding loop XLA-compiled
            per shape bucket (see above); default False: a plain graph.

    Returns:
        The path of the written version directory.

    Example:

    ```python
    import tempfile
    import tensorflow as tf
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    base = tempfile.mkdtemp() + "/gpt_nano"
    path = keras_llm.export(model, base, tokenizer, max_new_tokens=8)
    assert path.endswith("/1")
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(text=tf.constant(["Hello"]))
    assert out["generated_ids"].shape[0] == 1 and out["generated_length"].numpy()[0] <= 8
    ```
    """
    task = _task(model)
    _refuse_other_settings(task, dict(
        label_names=label_names, max_new_tokens=max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, seed=seed, stop_token_ids=stop_token_ids,
        max_answer_length=max_answer_length, doc_stride=doc_stride,
        max_question_length=max_question_length,
        jit_compile=jit_compile or None,
    ))
    if not isinstance(jit_compile, bool):
        raise ValueError(f"`jit_compile` must be True or False. Received: jit_compile={jit_compile!r}")
    tokenizer = serving_tokenizer(tokenizer)
    context = model.max_sequence_length
    if task in ("causal_lm", "seq2seq_lm"):
        given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                     top_p=top_p, seed=seed)
        defaults = {**GENERATION_DEFAULTS, "max_new_tokens": min(64, context - 1)}
        defaults.update({k: v for k, v in given.items() if v is not None})
        check_settings(context, **defaults)
        if stop_token_ids is None:  # the end token: a seq2seq model's targets end with it
            end = (getattr(tokenizer, "end_token_id", None) if task == "causal_lm"
                   else seq2seq_specials(tokenizer, needed=()).get("end_token_id"))
            stop_token_ids = [] if end is None else [end]
        stop_token_ids = check_stop_token_ids(stop_token_ids, model.vocabulary_size)
        serving = _CausalLMServing if task == "causal_lm" else _Seq2SeqServing
        module = serving(model, tokenizer, defaults, stop_token_ids, jit_compile)
    elif task == "masked_lm":
        vocabulary_size = model.vocabulary_size
        top_k = 5 if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocabulary_size:
            raise ValueError(
                f"`top_k` (fills per [MASK]) must be an int in [1, {vocabulary_size}]. "
                f"Received: top_k={top_k!r}"
            )
        module = _MaskedLMServing(model, tokenizer, top_k, context)
    elif task == "classifier":
        label_names = _check_label_names(label_names, model.outputs[0].shape[-1], "class")
        module = _ClassifierServing(model, tokenizer, label_names, context)
    elif task == "tagger":
        label_names = _check_label_names(label_names, model.outputs[0].shape[-1], "tag")
        module = _TaggerServing(model, tokenizer, label_names, context)
    else:
        given = dict(max_answer_length=max_answer_length, doc_stride=doc_stride,
                     max_question_length=max_question_length)
        settings = {
            **QUESTION_ANSWERING_DEFAULTS,
            # Hugging Face's pipeline: windows of 384 tokens, or the model's context if shorter.
            "sequence_length": min(QUESTION_ANSWERING_DEFAULTS["sequence_length"], context),
            **{k: v for k, v in given.items() if v is not None},
        }
        check_window_settings(
            "export", settings["sequence_length"], settings["doc_stride"],
            settings["max_question_length"],
        )
        check_max_answer_length("export", settings["max_answer_length"])
        if not callable(getattr(tokenizer, "tokenize_with_offsets", None)):
            raise ValueError(
                "A question-answering export needs a tokenizer with `tokenize_with_offsets` "
                "(answers are cut from the context at its tokens' offsets), such as "
                f"keras_llm.tokenizers.WordPieceTokenizer. Received: tokenizer={type(tokenizer).__name__}"
            )
        module = _QuestionAnswererServing(model, tokenizer, settings)
    return _write_version(module, path, version, overwrite)


def _write_version(module, path, version, overwrite):
    """Saves `module` as `path/VERSION` through `atomic_output`; returns its path."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            "`path` must be a directory (the model's base path, where versions go) or not "
            f"exist yet. Received: path={path!r}, which is a file"
        )
    _clean_interrupted_versions(path)  # first: a killed swap's previous version comes back
    existing = [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
    if version is None:
        version = max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"`version` must be an int >= 0. Received: version={version!r}")
    target = os.path.join(path, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{target} exists; pass overwrite=True (--overwrite) to replace it, or another version."
        )
    # A dot-named temporary (TF Serving loads only integer-named directories),
    # renamed into place: a server watching `path` never sees half a version.
    with atomic_output(target, overwrite=overwrite) as temporary:
        tf.saved_model.save(module, temporary, signatures=module.signatures())
    return target


def _clean_interrupted_versions(path):
    """Cleans up after killed exports in `path` (`_atomic`); names older leftovers."""
    if not os.path.isdir(path):
        return
    clean_interrupted_in(path)
    for name in sorted(os.listdir(path)):
        if re.match(r"^\.\d+-(incomplete|replaced)-", name):
            # Earlier exports named their temporaries (tempfile.mkdtemp) without
            # the writer's process: whether it is gone cannot be told.
            logger.warning(
                "%s was left by an interrupted export of an earlier keras_llm; remove it",
                os.path.join(path, name),
            )
