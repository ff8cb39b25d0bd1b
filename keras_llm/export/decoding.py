"""The serving of the models that decode: a GPT's and a seq2seq model's exports.

Both run `Generator`'s decoding loop (a plain graph, or XLA-compiled per
shape bucket with `jit_compile=True`) and lay texts out as `Generator` does
(`keras_llm.generation.prompts`); see `saved_models/README.md` for their
signatures.
"""

import tensorflow as tf

from keras_llm._graph import graph_function
from keras_llm.export.serving import Serving, serving_tokenizer
from keras_llm.generation import Generator
from keras_llm.generation.checks import (
    PROMPT_SPECS,
    SETTING_SPECS,
    check_inputs,
    check_stop_token_ids,
)
from keras_llm.generation.prompts import prompt_ids, source_ids
from keras_llm.generation.samplers import check_settings

# What `serving_default` of a GPT export does unless `export` is told otherwise.
GENERATION_DEFAULTS = dict(max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0, seed=0)

_TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")


class CausalLMServing(Serving):
    """Signatures of a GPT export: `serving_default`, `generate`, `generate_ids`, `logits`.

    `serving_default` decodes each text with the export's settings;
    `generate` takes them per request (one value per text, or one for
    all); `generate_ids` decodes right-padded ids; `logits` runs the model.
    An empty text starts from the end token (`registry.special_tokens`), a
    text longer than the context keeps its last tokens, and generated text
    is always valid UTF-8. See `keras_llm.export` and saved_models/README.md.

    Args:
        model: The model.
        generator: Its `Generator`, holding the tokenizer and special tokens.
        defaults: `serving_default`'s settings (`GENERATION_DEFAULTS`' keys).
        stop_token_ids: The ids that end a row.
        jit_compile: Whether the loop is XLA-compiled per shape bucket.

    Example:

    ```python
    import tensorflow as tf
    import keras_llm
    from keras_llm.export.decoding import CausalLMServing

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, tokenizer=tokenizer)
    module = CausalLMServing.from_settings(model, tokenizer, max_new_tokens=3)
    out = module.signatures()["serving_default"](tf.constant(["Hi"]))
    assert int(out["generated_length"][0]) <= 3
    ```
    """

    def __init__(self, model, generator, defaults, stop_token_ids, jit_compile=False):
        super().__init__(model, generator.tokenizer)
        self._generator = generator
        # The decoding loop: XLA-compiled per shape bucket, or a plain graph.
        self._decode = generator.compiled_sample if jit_compile else generator.sample
        self._defaults = defaults
        self._stop_token_ids = tf.constant(stop_token_ids, tf.int32, shape=[len(stop_token_ids)])

    @classmethod
    def from_settings(
        cls, model, tokenizer, *, max_new_tokens=None, temperature=None, top_k=None, top_p=None,
        seed=None, stop_token_ids=None, jit_compile=False,
    ):
        """Checks the decoding settings (None: `GENERATION_DEFAULTS`, at most `context - 1`
        new tokens; stop at the end token) and builds the module."""
        context = model.max_sequence_length
        given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                     top_p=top_p, seed=seed)
        defaults = {**GENERATION_DEFAULTS, "max_new_tokens": min(64, context - 1)}
        defaults.update({k: v for k, v in given.items() if v is not None})
        check_settings(context, **defaults)
        cls._check_model(model)
        # The special tokens, as `Generator` decodes: the registry's.
        generator = Generator(model, serving_tokenizer(tokenizer), jit_compile=jit_compile)
        if stop_token_ids is None:  # the end token: a seq2seq model's targets end with it
            end = generator.end_token_id
            stop_token_ids = [] if end is None else [end]
        stop_token_ids = check_stop_token_ids(stop_token_ids, model.vocabulary_size)
        return cls(model, generator, defaults, stop_token_ids, jit_compile)

    @classmethod
    def _check_model(cls, model):
        """What a kind needs of the model beyond its task (nothing, for a GPT)."""

    def _ids(self, text, with_bos=True):
        """`text` `[B]` -> the prompts' `token_ids` and `padding_mask` `[B, P]`: the
        tokenizer's begin-of-text token first where it declares one, unless
        `with_bos` is False (a chat template writes its own)."""
        bos = self._generator.bos_token_id if with_bos else None
        ids = prompt_ids(self.tokenizer(text), self._generator.end_token_id, bos)  # [B, None]
        return ids.to_tensor(0), tf.ones_like(ids).to_tensor(0)

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

    @graph_function(input_signature=[_TEXT_SPEC])
    def serve(self, text):
        return self._serve(text)

    def _serve(self, text, with_bos=True):
        """`serving_default`'s body: `text` decoded with the export's defaults."""
        token_ids, padding_mask = self._ids(text, with_bos)
        outputs = self._generate(
            token_ids, padding_mask,
            self._per_row(text, "max_new_tokens", tf.int32),
            self._per_row(text, "temperature", tf.float32),
            self._per_row(text, "top_k", tf.int32),
            self._per_row(text, "top_p", tf.float32),
            self._per_row(text, "seed", tf.int32),
        )
        return self._with_text(outputs)

    @graph_function(input_signature=[_TEXT_SPEC, *SETTING_SPECS])
    def generate(self, text, max_new_tokens, temperature, top_k, top_p, seed):
        token_ids, padding_mask = self._ids(text)
        outputs = self._generate(
            token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed
        )
        return self._with_text(outputs)

    @graph_function(input_signature=[*PROMPT_SPECS, *SETTING_SPECS])
    def generate_ids(self, token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed):
        return self._generate(
            token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed
        )

    @graph_function(input_signature=PROMPT_SPECS)
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


class Seq2SeqServing(CausalLMServing):
    """Signatures of a seq2seq export: a source text in, its generated target out.

    The same signatures as `CausalLMServing`'s, the texts being sources:
    each is cut to `max_sequence_length - 1` tokens and ended with the
    source end token, as `keras_llm.data.seq2seq_dataset` trains
    (`keras_llm.generation.prompts.source_ids`), and the target is written
    from the decoder's start token. `generate_ids` takes the encoder's ids
    as given; `logits` takes the model's four inputs. One tokenizer serves
    sources and targets: the model must have a shared vocabulary.

    Example:

    ```python
    import tensorflow as tf
    import keras_llm
    from keras_llm.export.decoding import Seq2SeqServing

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_seq2seq("seq2seq_tiny", num_layers=1, tokenizer=tokenizer)
    module = Seq2SeqServing.from_settings(model, tokenizer, max_new_tokens=3)
    out = module.signatures()["serving_default"](tf.constant(["Hallo"]))
    assert int(out["generated_length"][0]) <= 3
    ```
    """

    @classmethod
    def _check_model(cls, model):
        if model.source_vocabulary_size != model.vocabulary_size:
            raise ValueError(
                "A seq2seq export serves one tokenizer for sources and targets: the model must "
                f"have a shared vocabulary. Received: a model with {model.source_vocabulary_size} "
                f"source and {model.vocabulary_size} target token ids"
            )

    def _ids(self, text, with_bos=True):
        """A seq2seq model's sources (`with_bos` does not apply: they end, not start, with a
        special token)."""
        ids = source_ids(
            self.tokenizer(text), self.model.max_sequence_length,
            self._generator.source_end_token_id,
        )  # [B, None]
        return ids.to_tensor(0), tf.ones_like(ids).to_tensor(0)

    @graph_function(input_signature=[
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
