"""SavedModel export in TF Serving's layout, serving raw text with core TensorFlow ops."""

import logging
import os
import re

import tensorflow as tf

from keras_llm._atomic import atomic_output, clean_interrupted_in
from keras_llm.data._pipeline import add_specials
from keras_llm.generation import Generator
from keras_llm.generation.generator import (
    PROMPT_SPECS,
    SETTING_SPECS,
    check_inputs,
    check_settings,
    check_stop_token_ids,
)
from keras_llm.tokenizers import (
    ByteTokenizer,
    CoreOpsBytePairTokenizer,
    CoreOpsWordPieceTokenizer,
)

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
    names = {layer.name for layer in model.layers}
    if "final_layer_norm" in names and "embeddings" in names:
        return "causal_lm"
    inputs = set(model.input) if isinstance(model.input, dict) else set()
    bert_inputs = {"token_ids", "segment_ids", "padding_mask"}
    if bert_inputs | {"mask_positions"} == inputs and {"mlm_dense", "embeddings"} <= names:
        return "masked_lm"
    if bert_inputs == inputs and len(model.outputs) == 1 and len(model.outputs[0].shape) == 2:
        return "classifier"
    raise ValueError(
        "`model` must be a GPT from keras_llm.build_gpt, a masked LM from "
        "keras_llm.build_bert_pretrainer or a classifier from keras_llm.build_bert_classifier. "
        f"Received: model={model.name!r}"
    )


def _check_vocabulary(tokenizer, model, task):
    """The tokenizer must give the model's ids: all of them where outputs are ids to name."""
    model_size = model.get_layer("embeddings").vocabulary_size
    size = tokenizer.vocabulary_size
    # A GPT's and a masked LM's outputs are ids that the tokenizer names; a
    # classifier only reads the tokenizer's ids.
    fits = size <= model_size if task == "classifier" else size == model_size
    if not fits:
        expected = "at most" if task == "classifier" else "exactly"
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
    embeddings = model.get_layer("embeddings")
    return check_inputs(
        token_ids, embeddings.vocabulary_size, embeddings.max_sequence_length, **same_shape
    )


def _bert_inputs(tokenizer, ids, sequence_length):
    """[CLS] ids [SEP], the ids truncated to `sequence_length - 2`: dense BERT inputs."""
    ids = add_specials(ids, tokenizer.cls_token_id, tokenizer.sep_token_id, sequence_length)
    token_ids = ids.to_tensor(tokenizer.pad_token_id or 0)
    padding_mask = tf.cast(tf.ones_like(ids).to_tensor(0), tf.int32)
    return token_ids, tf.zeros_like(token_ids), padding_mask


class _CausalLMServing(tf.Module):
    """Signatures of a GPT export; see saved_models/README.md."""

    def __init__(self, model, tokenizer, defaults, stop_token_ids):
        super().__init__()
        _check_vocabulary(tokenizer, model, "GPT")  # generated ids are named by the tokenizer
        self.model = model
        self.tokenizer = tokenizer
        self._generator = Generator(model, tokenizer, jit_compile=False)
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
        return self._generator.sample(token_ids, padding_mask, *settings, self._stop_token_ids)

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


class _ClassifierServing(tf.Module):
    """Signatures of a classifier export; see saved_models/README.md."""

    def __init__(self, model, tokenizer, label_names, sequence_length):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self._label_names = tf.constant(label_names)
        self._sequence_length = sequence_length
        _bert_special_tokens(tokenizer, "classifier", ("cls_token_id", "sep_token_id"))
        _check_vocabulary(tokenizer, model, "classifier")

    def _outputs(self, token_ids, segment_ids, padding_mask):
        logits = self.model(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            training=False,
        )
        logits = tf.cast(logits, tf.float32)
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
        outputs = self.model(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask,
             "mask_positions": tf.where(valid, mask_positions, 0)},
            training=False,
        )
        logits = tf.cast(outputs["mlm_logits"], tf.float32)  # [B, M, V]
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

    Text longer than the model's context is truncated: a classifier or a
    masked LM keeps the first `max_sequence_length - 2` tokens (a `[MASK]`
    past them is dropped, with no position); a GPT prompt keeps its last
    tokens, leaving room for `max_new_tokens`. An empty GPT prompt starts
    from the tokenizer's `end_token_id`. Generated text is always valid
    UTF-8 (a byte-level model can stop inside a character: U+FFFD).

    Args:
        model: A model from `keras_llm.build_gpt`,
            `keras_llm.build_bert_pretrainer` or
            `keras_llm.build_bert_classifier`.
        path: The model's base directory, e.g. `"saved_models/gpt_nano"`
            (created if needed; not a file).
        tokenizer: The tokenizer the model was trained with: it must have
            the model's vocabulary size (a classifier's: at most it).
        version: The version number; default: the next free one.
        overwrite: Whether an existing `version` may be replaced.
        label_names: A classifier's class names (default `"0"`, `"1"`, ...).
        max_new_tokens, temperature, top_k, top_p, seed: A GPT's
            `serving_default` settings; defaults: 64 (fewer if the context
            is shorter), greedy (0.0), 0 (no top-k), 1.0 (no top-p), 0.
            For a masked LM, `top_k` is the number of fills per blank
            (default 5, as in Hugging Face's fill-mask pipeline).
        stop_token_ids: A GPT's stop tokens, ids of its vocabulary;
            default: the tokenizer's `end_token_id`, if any.

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
    tokenizer = serving_tokenizer(tokenizer)
    if task == "causal_lm":
        if label_names is not None:
            raise ValueError(
                f"`label_names` is for classifiers; this model is a GPT. Received: "
                f"label_names={label_names!r}"
            )
        context = model.get_layer("embeddings").max_sequence_length
        given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                     top_p=top_p, seed=seed)
        defaults = {**GENERATION_DEFAULTS, "max_new_tokens": min(64, context - 1)}
        defaults.update({k: v for k, v in given.items() if v is not None})
        check_settings(context, **defaults)
        if stop_token_ids is None:
            end = getattr(tokenizer, "end_token_id", None)
            stop_token_ids = [] if end is None else [end]
        stop_token_ids = check_stop_token_ids(
            stop_token_ids, model.get_layer("embeddings").vocabulary_size
        )
        module = _CausalLMServing(model, tokenizer, defaults, stop_token_ids)
    else:
        sequence_length = model.get_layer("embeddings").max_sequence_length
        settings = [max_new_tokens, temperature, top_p, seed, stop_token_ids]
        if task == "classifier":
            settings.append(top_k)
        given = {name: value for name, value in zip(
            ["max_new_tokens", "temperature", "top_p", "seed", "stop_token_ids", "top_k"], settings
        ) if value is not None}
        if given:
            raise ValueError(
                "max_new_tokens, temperature, top_p, seed and stop_token_ids are for GPT "
                "exports (top_k for GPTs and masked LMs); this model is a "
                f"{'classifier' if task == 'classifier' else 'masked LM'}. Received: "
                + ", ".join(f"{name}={value!r}" for name, value in given.items())
            )
    if task == "masked_lm":
        if label_names is not None:
            raise ValueError(
                "`label_names` is for classifiers; this model is a masked LM. Received: "
                f"label_names={label_names!r}"
            )
        vocabulary_size = model.get_layer("embeddings").vocabulary_size
        top_k = 5 if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocabulary_size:
            raise ValueError(
                f"`top_k` (fills per [MASK]) must be an int in [1, {vocabulary_size}]. "
                f"Received: top_k={top_k!r}"
            )
        module = _MaskedLMServing(model, tokenizer, top_k, sequence_length)
    elif task == "classifier":
        num_classes = model.outputs[0].shape[-1]
        label_names = [str(i) for i in range(num_classes)] if label_names is None else label_names
        if (
            isinstance(label_names, (str, bytes))
            or not hasattr(label_names, "__len__")
            or len(label_names) != num_classes
        ):
            raise ValueError(
                f"`label_names` must have one name per class ({num_classes}). "
                f"Received: label_names={label_names!r}"
            )
        module = _ClassifierServing(model, tokenizer, [str(n) for n in label_names], sequence_length)
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
