"""Text generation with a static-size key/value cache, in one compiled loop."""

import reprlib

import keras
import numpy as np
import tensorflow as tf
from keras_llm._checks import is_int
from keras_llm.data.seq2seq import seq2seq_specials
from keras_llm.generation.samplers import (
    SEQ2SEQ_LENGTH_PENALTY,
    beam_step,
    check_settings,
    length_penalty,
    sample,
    settings_checks,
)
from keras_llm.tokenizers.string_tokenizer import assert_that, check_token_ids

# Sentinel of the `generated_ids` padding: never a token id.
PADDING = -1

# The decoding loop's signature (also the exported `generate_ids` signature's):
# right-padded prompts, then per-row settings.
PROMPT_SPECS = [
    tf.TensorSpec([None, None], tf.int32, name="token_ids"),
    tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
]
SETTING_SPECS = [
    tf.TensorSpec([None], tf.int32, name="max_new_tokens"),
    tf.TensorSpec([None], tf.float32, name="temperature"),
    tf.TensorSpec([None], tf.int32, name="top_k"),
    tf.TensorSpec([None], tf.float32, name="top_p"),
    tf.TensorSpec([None], tf.int32, name="seed"),
]
STOP_SPEC = tf.TensorSpec([None], tf.int32, name="stop_token_ids")


class Generator:
    """Continues prompts with a GPT, or writes a seq2seq model's targets, one token per step.

    A seq2seq model's sources are encoded once (`model.encode`, which also
    computes each decoder block's encoder keys and values); its decoder then
    starts from the start token as a one-token prompt, and everything below
    applies to it as to a GPT's prompt, except that the loop's first step
    reads that token (no pass over the prompt first). The special tokens are those
    `keras_llm.data.seq2seq_dataset` trains with (`seq2seq_specials`): give
    `start_token_id` (and `source_end_token_id`) when the tokenizer lacks
    them (BART: `start_token_id=2`).

    The prompts are read in one pass that fills a cache of keys and values
    for every position and layer; then a `tf.while_loop` adds one token per
    step, running the model on that token only and attending over the cache.
    The cache has a fixed size (the longest prompt plus `max_new_tokens`), so
    every step has the same shapes. Two `tf.function`s run it, with the same
    signature (batch size and lengths open, each setting one value per
    prompt or one for all; no prompts give empty outputs), traced once each:
    `Generator.sample`, a plain graph, and `Generator.compiled_sample`, whose
    loop is XLA-compiled once per shape bucket (`bucket_shapes`: batch size
    rounded up to a power of two, prompt length to 32, total length to 64,
    a seq2seq source to 32; also per number of stop tokens and `num_beams`).
    Sampling settings are tensors, so changing them does not compile again.
    `generate` calls `compiled_sample` with `jit_compile=True` (the default)
    and `sample` otherwise; `keras_llm.export` puts either in a SavedModel.

    Prompts of different lengths are right-padded: the loop starts at the
    shortest prompt's end, and a row whose prompt is longer keeps its own
    prompt tokens until its prompt ends, so every row continues exactly as
    it would alone.

    Decoding (the arguments of `generate`):

    - greedy: `temperature=0` (the default);
    - sampling: `temperature > 0`, optionally restricted to the `top_k` most
      likely tokens and/or the smallest set whose probability reaches
      `top_p` (nucleus sampling; top-k is applied first, as in Hugging
      Face). Tokens tied with the last kept one are kept too. `seed` makes
      the draw reproducible;
    - beam search: `num_beams > 1` (deterministic; a beam's score is the sum
      of its tokens' log-probabilities, ranked after division by Wu et al.'s
      length penalty `((5 + length) / 6) ** length_penalty`; a beam that
      emits a stop token is finished and keeps its score and length).

    Generation stops for a row at a stop token (included in the output) or
    after `max_new_tokens`. A prompt longer than the model's context minus
    `max_new_tokens` keeps its last tokens.

    Args:
        model: A causal LM with the decoding interface (`task`,
            `vocabulary_size`, `max_sequence_length`, `empty_cache`,
            `call_with_cache`; see `keras_llm.generation`), such as
            `keras_llm.build_gpt`'s.
        tokenizer: Optional tokenizer: then `generate` takes and returns
            strings, and its `end_token_id` is the default stop token and
            the token an empty prompt starts from (a new document, as in
            GPT-2's unconditional samples).
        jit_compile: Whether `generate` runs the XLA-compiled loop.
        target_tokenizer: A seq2seq model's target tokenizer, when it is not
            `tokenizer` (which then tokenizes the sources only).
        start_token_id: A seq2seq model's decoder start token.
        source_end_token_id: The token that ends a seq2seq model's text
            sources.

    Example:

    ```python
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    generator = keras_llm.generation.Generator(model, keras_llm.tokenizers.ByteTokenizer())
    completions = generator.generate(["Hello", "Hi"], max_new_tokens=5)
    assert len(completions) == 2
    ids = generator.generate([[72, 105], [72]], max_new_tokens=3, stop_token_ids=[])
    assert [len(row) for row in ids] == [3, 3]
    ```
    """

    def __init__(
        self, model, tokenizer=None, jit_compile=True, *, target_tokenizer=None,
        start_token_id=None, source_end_token_id=None,
    ):
        self.task = check_decoder(model, "causal_lm", "seq2seq_lm")
        self.seq2seq = self.task == "seq2seq_lm"
        self.model = model
        self.tokenizer = tokenizer
        # What names the generated ids: the target's tokenizer.
        self.target_tokenizer = target_tokenizer or tokenizer
        self.max_sequence_length = model.max_sequence_length
        self.vocabulary_size = model.vocabulary_size
        self.source_vocabulary_size = getattr(model, "source_vocabulary_size", model.vocabulary_size)
        if self.seq2seq:
            # The layout seq2seq_dataset trains with: sources end with the
            # source end token, the decoder starts from the start token and
            # learns to emit the end token (the default stop).
            specials = seq2seq_specials(
                tokenizer, self.target_tokenizer, start_token_id=start_token_id,
                source_end_token_id=source_end_token_id,
                needed=("start_token_id",) + (("source_end_token_id",) if tokenizer else ()),
            )
            self.start_token_id = specials["start_token_id"]
            self.source_end_token_id = specials.get("source_end_token_id")
            self.end_token_id = specials.get("end_token_id")
            check_token_ids([self.start_token_id], self.vocabulary_size, "start_token_id")
        else:
            self.end_token_id = getattr(tokenizer, "end_token_id", None)
        signature = [*PROMPT_SPECS, *SETTING_SPECS, STOP_SPEC]
        self.sample = tf.function(self._sample, input_signature=signature)

        def compiled_sample(token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p,
                            seed, stop_token_ids):
            return self._sample(token_ids, padding_mask, max_new_tokens, temperature, top_k,
                                top_p, seed, stop_token_ids, xla=True)

        self.compiled_sample = tf.function(compiled_sample, input_signature=signature)
        self._concrete = {}  # each sampling function's one concrete function
        self._beam_searches = {}
        # Traced once: run eagerly, detokenizing cost about 9 ms a call (a third of a
        # short generation's latency; measured for ByteTokenizer, benchmarks/RESULTS.md).
        if self.target_tokenizer is not None:
            self._detokenize = tf.function(
                self.target_tokenizer.detokenize,
                input_signature=[tf.RaggedTensorSpec([None, None], tf.int32, 1, tf.int64)],
            )
        self.jit_compile = jit_compile
        self._xla_loops = {}

    # -- the model, one step at a time -----------------------------------------

    def _forward(self, token_ids, index, caches, context):
        """Logits `[B, T, V]` (float32) of tokens at positions `index...`, and the caches."""
        return self.model.call_with_cache(token_ids, caches, index, context)

    def _context(self, source):
        """The model's decoding context: a seq2seq model's encoded `source`, else None."""
        return None if source is None else self.model.encode(*source)

    def _prefill(self, ids, prefill_width, context):
        """The caches after one pass over the prompts `ids[:, :prefill_width]`.

        Their logits are not needed: each loop step recomputes its previous
        position's. A seq2seq decoder's prompt is its start token alone, which
        the first step reads anyway, so it starts from the empty cache (a pass
        over the start token would be a whole decoder step, then overwritten).
        """
        empty = self.model.empty_cache(tf.shape(ids)[0], tf.shape(ids)[1])
        if context is not None:
            return empty
        return self._forward(ids[:, :prefill_width], 0, empty, context)[1]

    def _prepare(self, token_ids, padding_mask, max_new_tokens, stop_token_ids):
        """Checks the arguments, keeps each prompt's last tokens that fit, pads.

        Returns `ids` `[B, S]` (the prompts, right-padded with room for
        `max_new_tokens`), their `lengths` `[B]`, where each row ends,
        `row_end` `[B]`, and the source (`(token_ids, padding_mask)` of a
        seq2seq model, whose decoder prompt is its start token; else None).
        Run-time checks raise `InvalidArgumentError`.
        """
        if self.seq2seq:
            return self._prepare_sources(token_ids, padding_mask, max_new_tokens, stop_token_ids)
        context = self.max_sequence_length
        token_ids, padding_mask = check_inputs(
            token_ids, self.vocabulary_size, padding_mask=padding_mask
        )
        lengths, checks = self._row_checks(
            token_ids, padding_mask, max_new_tokens, stop_token_ids, "prompts"
        )
        checks.append(tf.debugging.assert_positive(
            lengths, message="every prompt must hold at least one token (padding_mask row of zeros)"
        ))
        with tf.control_dependencies(checks):
            # Keep the last `room` tokens of a longer prompt.
            room = context - max_new_tokens
            shift = tf.maximum(lengths - room, 0)  # [B]
            lengths = lengths - shift
            width = tf.reduce_max(lengths)
            total = tf.reduce_max(lengths + max_new_tokens)
            columns = shift[:, None] + tf.range(width)[None, :]  # [B, P]
            columns = tf.minimum(columns, tf.shape(token_ids)[1] - 1)
            ids = tf.gather(token_ids, columns, batch_dims=1)
            ids = tf.where(tf.range(width)[None, :] < lengths[:, None], ids, 0)
            ids = tf.pad(ids, [[0, 0], [0, total - width]])  # [B, S]
        return ids, lengths, lengths + max_new_tokens, None

    def _row_checks(self, token_ids, padding_mask, max_new_tokens, stop_token_ids, rows):
        """Each row's length `[B]` and the graph checks every decoding run makes."""
        context = self.max_sequence_length
        check_token_ids(stop_token_ids, self.vocabulary_size, "stop_token_ids")
        lengths = tf.reduce_sum(tf.cast(padding_mask != 0, tf.int32), axis=1)  # [B]
        return lengths, [
            tf.debugging.assert_non_negative(
                max_new_tokens, message="max_new_tokens must be >= 0"
            ),
            tf.debugging.assert_less(
                max_new_tokens, context,
                message=f"max_new_tokens must be less than the context of {context} tokens",
            ),
            tf.debugging.assert_equal(
                tf.cast(padding_mask != 0, tf.int32),
                tf.cast(tf.range(tf.shape(token_ids)[1])[None, :] < lengths[:, None], tf.int32),
                message=f"padding_mask must be 1s then 0s ({rows} padded on the right)",
            ),
        ]

    def _prepare_sources(self, token_ids, padding_mask, max_new_tokens, stop_token_ids):
        """`_prepare` of a seq2seq model: the sources are checked, the decoder starts."""
        token_ids, padding_mask = check_inputs(
            token_ids, self.source_vocabulary_size, self.max_sequence_length,
            padding_mask=padding_mask,
        )
        _, checks = self._row_checks(
            token_ids, padding_mask, max_new_tokens, stop_token_ids, "sources"
        )
        with tf.control_dependencies(checks):
            batch_size = tf.shape(token_ids)[0]
            total = 1 + tf.reduce_max(max_new_tokens)
            ids = tf.concat(  # [B, S]: the start token, then room for the target
                [tf.fill([batch_size, 1], self.start_token_id),
                 tf.zeros([batch_size, total - 1], tf.int32)], axis=1,
            )
            ones = tf.ones([batch_size], tf.int32)
        return ids, ones, ones + max_new_tokens, (token_ids, tf.cast(padding_mask, tf.int32))

    # -- sampling (greedy, temperature, top-k, top-p) -----------------------------

    def _sample(
        self, token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed,
        stop_token_ids, xla=False,
    ):
        max_new_tokens, temperature, top_k, top_p, seed = _per_prompt(
            tf.shape(token_ids)[0],
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            seed=seed,
        )

        def generate():
            checks = settings_checks(temperature, top_k, top_p)
            with tf.control_dependencies(checks):
                ids, lengths, row_end, source = self._prepare(
                    token_ids, padding_mask, max_new_tokens, stop_token_ids
                )
            sampling = (temperature, top_k, top_p, seed)
            if xla:
                ids, stop_at = self._xla_decode(
                    1, ids, lengths, row_end, stop_token_ids, source, sampling=sampling
                )
            else:
                ids, stop_at = self._sample_loop(
                    ids, lengths, row_end, tf.reduce_max(lengths), *sampling, stop_token_ids,
                    source,
                )
            return _completions(ids, lengths, stop_at)

        return _unless_empty(token_ids, generate)

    def _sample_loop(
        self, ids, lengths, row_end, prefill_width, temperature, top_k, top_p, seed,
        stop_token_ids, source=None,
    ):
        """Fills `ids` `[B, S]` after each row's prompt; returns it and each row's end."""
        total = tf.shape(ids)[1]
        context = self._context(source)
        caches = self._prefill(ids, prefill_width, context)
        positions = tf.range(total)[None, :]  # [1, S]

        def keep_going(i, ids, done, stop_at, caches):
            return tf.logical_and(i < total, tf.logical_not(tf.reduce_all(done)))

        def step(i, ids, done, stop_at, caches):
            previous = tf.gather(ids, [i - 1], axis=1)  # [B, 1]
            logits, caches = self._forward(previous, i - 1, caches, context)  # [B, 1, V]
            chosen = sample(logits[:, 0], temperature, top_k, top_p, seed, i)
            generating = tf.logical_and(i >= lengths, tf.logical_not(done))
            # Prompt tokens stay; finished rows get 0 (never read back).
            token = tf.where(i < lengths, ids[:, i], tf.where(generating, chosen, 0))
            ids = tf.where(positions == i, token[:, None], ids)
            stopped = tf.logical_and(generating, _is_in(token, stop_token_ids))
            stop_at = tf.where(stopped, i + 1, stop_at)
            done = done | stopped | (i + 1 >= row_end)
            return i + 1, ids, done, stop_at, caches

        _, ids, _, stop_at, _ = tf.while_loop(
            keep_going,
            step,
            (tf.reduce_min(lengths), ids, lengths >= row_end, row_end, caches),
        )
        return ids, stop_at

    # -- beam search --------------------------------------------------------------

    def beam_search(self, num_beams, jit_compile=False):
        """The compiled beam search for `num_beams` beams (traced on first use).

        It takes `(token_ids, padding_mask, max_new_tokens, stop_token_ids,
        length_penalty)` and returns, like `sample`, `{"generated_ids",
        "generated_length"}` of each row's best beam. With `jit_compile`,
        its loop is XLA-compiled per shape bucket, as `compiled_sample`'s.
        """
        check_settings(self.max_sequence_length, num_beams=num_beams)
        key = (num_beams, bool(jit_compile))
        if key not in self._beam_searches:

            def search(token_ids, padding_mask, max_new_tokens, stop_token_ids, alpha):
                (max_new_tokens,) = _per_prompt(
                    tf.shape(token_ids)[0], max_new_tokens=max_new_tokens
                )

                def generate():
                    ids, lengths, row_end, source = self._prepare(
                        token_ids, padding_mask, max_new_tokens, stop_token_ids
                    )
                    if jit_compile:
                        ids, stop_at = self._xla_decode(
                            num_beams, ids, lengths, row_end, stop_token_ids, source, alpha=alpha
                        )
                    else:
                        ids, stop_at = self._beam_loop(
                            ids, lengths, row_end, tf.reduce_max(lengths), stop_token_ids,
                            num_beams, alpha, source,
                        )
                    return _completions(ids, lengths, stop_at)

                return _unless_empty(token_ids, generate)

            self._beam_searches[key] = tf.function(
                search,
                input_signature=[
                    *PROMPT_SPECS, SETTING_SPECS[0], STOP_SPEC,
                    tf.TensorSpec([], tf.float32, name="length_penalty"),
                ],
            )
        return self._beam_searches[key]

    def _beam_loop(self, ids, lengths, row_end, prefill_width, stop_token_ids, beams, alpha,
                   source=None):
        """Beam search after each row's prompt in `ids` `[B, S]`; the best beams and ends."""
        batch_size, total = tf.shape(ids)[0], tf.shape(ids)[1]
        context = self._context(source)
        caches = self._prefill(ids, prefill_width, context)
        # Every row becomes `beams` rows: [B * K, ...], row b * K + k.
        expand = lambda t: tf.repeat(t, beams, axis=0)
        caches = tf.nest.map_structure(expand, caches)
        if context is not None:  # the same source for every beam of a row
            context = tf.nest.map_structure(expand, context)
        ids = expand(ids)
        lengths_k = tf.reshape(expand(lengths), [batch_size, beams])
        row_end_k = tf.reshape(expand(row_end), [batch_size, beams])
        # Only the first beam is live at first, so the first choice gives
        # `beams` different tokens rather than one token `beams` times.
        scores = tf.tile(
            tf.concat([[0.0], tf.fill([beams - 1], -np.inf)], 0)[None, :], [batch_size, 1]
        )  # [B, K]
        vocabulary = self.vocabulary_size
        positions = tf.range(total)[None, :]

        def keep_going(i, ids, scores, done, stop_at, caches):
            return tf.logical_and(i < total, tf.logical_not(tf.reduce_all(done)))

        def step(i, ids, scores, done, stop_at, caches):
            previous = tf.gather(ids, [i - 1], axis=1)  # [B * K, 1]
            logits, caches = self._forward(previous, i - 1, caches, context)
            log_probs = tf.reshape(tf.nn.log_softmax(logits[:, 0]), [batch_size, beams, vocabulary])
            # Generated lengths after this step (a finished beam's stays).
            generated = tf.where(done, stop_at, i + 1) - lengths_k
            source, token, best = beam_step(log_probs, scores, generated, done, alpha)
            # Rows still reading their prompt keep their beams and tokens.
            in_prompt = (i < lengths_k)[:, :1]  # [B, 1]
            source = tf.where(in_prompt, tf.range(beams)[None, :], source)
            prompt_token = tf.reshape(ids[:, i], [batch_size, beams])
            token = tf.where(in_prompt, prompt_token, token)
            scores = tf.where(in_prompt, scores, best)
            rows = tf.reshape(tf.range(batch_size)[:, None] * beams + source, [-1])  # [B * K]
            # (ensure_shape: keeps the static shapes that XLA's loop needs)
            ids = tf.ensure_shape(tf.gather(ids, rows), ids.shape)
            caches = tf.nest.map_structure(
                lambda c: tf.ensure_shape(tf.gather(c, rows), c.shape), caches
            )
            done = tf.gather(done, source, batch_dims=1)
            stop_at = tf.gather(stop_at, source, batch_dims=1)
            generating = tf.logical_and(i >= lengths_k, tf.logical_not(done))
            token = tf.where(generating | in_prompt, token, 0)
            ids = tf.where(positions == i, tf.reshape(token, [-1, 1]), ids)
            stopped = tf.logical_and(generating, _is_in(token, stop_token_ids))
            stop_at = tf.where(stopped, i + 1, stop_at)
            done = done | stopped | (i + 1 >= row_end_k)
            return i + 1, ids, scores, done, stop_at, caches

        _, ids, scores, _, stop_at, _ = tf.while_loop(
            keep_going,
            step,
            (tf.reduce_min(lengths), ids, scores, lengths_k >= row_end_k, row_end_k, caches),
        )
        # The best beam by its length-penalised score (Wu et al. 2016).
        final = scores / length_penalty(stop_at - lengths_k, alpha)
        best = tf.argmax(final, axis=1, output_type=tf.int32)  # [B]
        ids = tf.gather(tf.reshape(ids, [batch_size, beams, total]), best, batch_dims=1)
        return ids, tf.gather(stop_at, best, batch_dims=1)

    # -- the same loops, XLA-compiled per shape bucket ------------------------------

    def _xla_decode(self, num_beams, ids, lengths, row_end, stop_token_ids, source,
                    sampling=(), alpha=0.0):
        """`_sample_loop` (`num_beams` 1) or `_beam_loop`, XLA-compiled, on bucketed inputs.

        XLA compiles a program for each shape of its inputs, and no shape
        inside it may depend on a tensor's values. So the plain graph around
        it pads the inputs to a bucket (`bucket_shapes`), the compiled loop
        takes every shape from its inputs' shapes, and each bucket compiles
        once per process. Takes and returns what `_sample_loop` does.
        """
        batch_size = tf.shape(ids)[0]
        rows, prompt_width, total, source_width = self.bucket_shapes(
            lengths, row_end, None if source is None else tf.shape(source[0])[1]
        )
        # Extra rows copy the first (they finish with it: no extra steps).
        rows = tf.concat([tf.range(batch_size), tf.zeros([rows - batch_size], tf.int32)], 0)
        pad = lambda value: tf.gather(value, rows)
        prompt = tf.pad(ids, [[0, 0], [0, tf.maximum(prompt_width - tf.shape(ids)[1], 0)]])
        prompt = pad(prompt[:, :prompt_width])
        if source is not None:
            source = tuple(
                pad(tf.pad(value, [[0, 0], [0, source_width - tf.shape(value)[1]]]))
                for value in source
            )
        ids, stop_at = self._xla_loop(num_beams)(
            prompt, pad(lengths), pad(row_end), stop_token_ids, tf.range(total),
            tf.cast(alpha, tf.float32), tuple(pad(value) for value in sampling), source or (),
        )
        return ids[:batch_size], stop_at[:batch_size]

    def bucket_shapes(self, lengths, row_end, source_width=None):
        """The shape bucket that XLA compiles a decoding loop for.

        Given each row's prompt length and where it ends (`[B]` each) and a
        seq2seq model's source width, returns (as int32 scalars): the batch
        size rounded up to a power of two, the prompt width rounded up to a
        multiple of 32 (a seq2seq decoder's prompt is its start token: 1),
        the total length rounded up to a multiple of 64, and the source
        width rounded up to a multiple of 32 (None without a source); every
        length at most the model's context. Buckets bound how many programs
        XLA compiles (each a few seconds, once per process): a server that
        sees batches of 1 to 32 and prompts of any length compiles at most
        6 batch sizes x (context / 32) prompt widths x (context / 64) totals.

        Example:

        ```python
        import tensorflow as tf
        import keras_llm

        generator = keras_llm.generation.Generator(keras_llm.build_gpt("gpt_nano", num_layers=1))
        lengths = tf.constant([5, 40, 7])  # three prompts
        rows, prompt, total, _ = generator.bucket_shapes(lengths, lengths + 30)
        assert (int(rows), int(prompt), int(total)) == (4, 64, 128)
        ```
        """
        context = self.max_sequence_length
        round_up = lambda value, multiple: tf.minimum(-(-value // multiple) * multiple, context)
        # The next power of two of the batch size: its bits below the top one set, plus one.
        smeared = tf.shape(lengths)[0] - 1
        for shift in (1, 2, 4, 8, 16):
            smeared = tf.bitwise.bitwise_or(smeared, tf.bitwise.right_shift(smeared, shift))
        total = round_up(tf.reduce_max(row_end), 64)
        prompt_width = tf.constant(1) if self.seq2seq else round_up(tf.reduce_max(lengths), 32)
        return (
            smeared + 1,
            tf.minimum(prompt_width, total),
            total,
            None if source_width is None else round_up(source_width, 32),
        )

    def _xla_loop(self, num_beams):
        """The XLA-compiled loop for `num_beams` (1: sampling); see `_xla_decode`."""
        if num_beams not in self._xla_loops:

            def loop(prompt, lengths, row_end, stop_token_ids, positions, alpha, sampling,
                     source):
                # prompt [B, P] and positions [S]: their shapes are the bucket's.
                total, width = tf.shape(positions)[0], tf.shape(prompt)[1]
                ids = tf.pad(prompt, [[0, 0], [0, total - width]])  # [B, S]
                source = source or None  # a seq2seq model's (ids, mask)
                if num_beams == 1:
                    return self._sample_loop(
                        ids, lengths, row_end, width, *sampling, stop_token_ids, source
                    )
                return self._beam_loop(
                    ids, lengths, row_end, width, stop_token_ids, num_beams, alpha, source
                )

            vector = lambda dtype: tf.TensorSpec([None], dtype)
            matrix = tf.TensorSpec([None, None], tf.int32)
            sampling = (
                (vector(tf.float32), vector(tf.int32), vector(tf.float32), vector(tf.int32))
                if num_beams == 1 else ()
            )
            self._xla_loops[num_beams] = tf.function(
                loop,
                jit_compile=True,
                input_signature=[
                    matrix, vector(tf.int32), vector(tf.int32), vector(tf.int32),
                    vector(tf.int32), tf.TensorSpec([], tf.float32), sampling,
                    (matrix, matrix) if self.seq2seq else (),
                ],
            )
        return self._xla_loops[num_beams]

    # -- Python front end ------------------------------------------------------------

    def _prompt_rows(self, prompts):
        """`prompts` as rows of ids, whether they were texts, whether one prompt was given."""
        if isinstance(prompts, tf.Tensor) and prompts.dtype.is_integer:
            prompts = prompts.numpy()
        if isinstance(prompts, str):
            single, batch = True, [prompts]
        elif isinstance(prompts, (list, tuple, np.ndarray)):
            single = len(prompts) > 0 and all(is_int(p) for p in prompts)
            batch = [prompts] if single else list(prompts)
        else:
            raise TypeError(
                "`prompts` must be a string, a list of strings, a list of token ids or a list "
                f"of token-id lists. Received: prompts={reprlib.repr(prompts)}"
            )
        texts = bool(batch) and all(isinstance(p, str) for p in batch)
        if texts:
            if self.tokenizer is None:
                raise ValueError(
                    "String prompts need a tokenizer: Generator(model, tokenizer=...)."
                )
            rows = [list(np.asarray(r)) for r in self.tokenizer(tf.constant(batch)).to_list()]
            if self.seq2seq:  # as seq2seq_dataset's sources: cut, then the end token
                room = self.max_sequence_length - 1
                rows = [row[:room] + [self.source_end_token_id] for row in rows]
            elif self.end_token_id is not None:
                rows = [row or [self.end_token_id] for row in rows]
        else:
            rows = []
            for n, prompt in enumerate(batch):
                try:
                    row = np.asarray(prompt)
                except ValueError:  # rows of different lengths: not one prompt
                    row = np.asarray(None)
                if row.size and not np.issubdtype(row.dtype, np.integer):
                    raise TypeError(
                        "`prompts` must be all strings or all token ids (lists of ints). "
                        f"Received: prompt {n}={reprlib.repr(prompt)}"
                    )
                rows.append([int(t) for t in row.reshape(-1)])
        for n, row in enumerate(rows):
            if not row:
                raise ValueError(
                    f"Prompt {n} is empty; give at least one token (a tokenizer with an "
                    "`end_token_id` starts empty prompts from it)."
                )
        try:
            if rows:  # one flat array: cheap however many prompts there are
                flat = np.concatenate([np.asarray(row, np.int64) for row in rows])
                # (NumPy accepts valid ids: the eager TensorFlow check, which
                # words the error, took about 0.4 ms of every call.)
                if flat.min() < 0 or flat.max() >= self.source_vocabulary_size:
                    check_token_ids(flat, self.source_vocabulary_size, "prompts")
        except ValueError as error:
            if not texts:
                raise
            raise ValueError(
                f"The tokenizer gives ids that the model does not have: {error}"
            ) from None
        return rows, texts, single

    def generate(
        self,
        prompts,
        max_new_tokens=64,
        *,
        temperature=0.0,
        top_k=None,
        top_p=None,
        num_beams=1,
        length_penalty=None,
        stop_token_ids=None,
        seed=None,
    ):
        """Continues each prompt (a causal LM), or writes each source's target (seq2seq).

        Args:
            prompts: A string or a list of strings (needs the tokenizer), or
                a list of token-id lists (or one list of ids), each id in
                `[0, vocabulary_size)`. An empty list gives an empty list.
                For a seq2seq model these are the sources: text is cut to
                the context and ended with the source end token, as
                `seq2seq_dataset` does; ids are the encoder's inputs as
                given (end them with that token yourself).
            max_new_tokens: The most tokens to add to each prompt, in
                `[0, max_sequence_length)`: one int, or a list of one per
                prompt.
            temperature: 0 for greedy decoding; otherwise logits are divided
                by it and the next token is sampled.
            top_k: Sample among the `top_k` most likely tokens only (None or
                0: no top-k, as in Hugging Face).
            top_p: Sample among the most likely tokens whose probabilities
                sum to at least `top_p`, in `(0, 1]` (None or 1: no top-p).
            num_beams: More than 1 for beam search (then `temperature`,
                `top_k`, `top_p` and `seed` must keep their defaults).
            length_penalty: Beam search's Wu et al. (2016) exponent alpha:
                beams are ranked by their summed log-probability divided by
                `((5 + length) / 6) ** alpha`, `length` counting generated
                tokens. Default: 0.6 for a seq2seq model (Model Garden's
                and the Transformer paper's), 0 (none) for a causal LM.
            stop_token_ids: Token ids that end a row's generation (kept in
                the ids, left out of the text). Default: the tokenizer's
                `end_token_id`, if any, else none (a seq2seq model: the end
                token its targets were trained with).
            seed: An int32 for reproducible sampling, or a list of one per
                prompt; None draws one. Rows that share a seed share their
                sampling noise (the same draw for the same token at the same
                step), so two prompts reaching the same text at the same
                step continue alike: give each its own seed for independent
                samples (`keras-llm generate` does).

        Returns:
            For strings, the completions (new text only), one per prompt (a
            string for a string). For ids, a list of int32 NumPy arrays of
            the new ids (one array for one list of ids).
        """
        rows, texts, single = self._prompt_rows(prompts)
        context = self.max_sequence_length
        if stop_token_ids is None:
            stop_token_ids = [] if self.end_token_id is None else [self.end_token_id]
        stop_token_ids = check_stop_token_ids(stop_token_ids, self.vocabulary_size)
        if length_penalty is None:
            length_penalty = SEQ2SEQ_LENGTH_PENALTY if self.seq2seq else 0.0
        top_k = 0 if top_k is None else top_k
        top_p = 1.0 if top_p is None else top_p
        seeds = seed if isinstance(seed, (list, tuple, np.ndarray)) else None
        per_prompt = {"seed": seeds, "max_new_tokens": max_new_tokens}
        for name, values in per_prompt.items():
            if isinstance(values, (list, tuple, np.ndarray)) and len(values) != len(rows):
                raise ValueError(
                    f"`{name}` must be one int, or one per prompt ({len(rows)}). "
                    f"Received: {len(values)} {name.replace('_', ' ')} values"
                )
        check_settings(
            context, temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
            length_penalty=length_penalty,
            **({} if seed is None else {"seed": seed if seeds is None else seeds[0]}),
        )
        max_new = max_new_tokens if isinstance(max_new_tokens, (list, tuple, np.ndarray)) else (
            [max_new_tokens] * max(len(rows), 1)
        )
        for value in max_new:
            check_settings(context, max_new_tokens=value)
        for value in [] if seeds is None else seeds:
            check_settings(context, seed=value)
        if not rows:
            return []
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        per_row = lambda value, dtype: np.full([len(rows)], value, dtype)
        sampling = (
            per_row(temperature, "float32"),
            per_row(top_k, "int32"),
            per_row(top_p, "float32"),
            per_row(seed, "int32") if seeds is None else np.asarray(seeds, "int32"),
        )
        max_new = np.array([int(m) for m in max_new], "int32")
        stops = tf.constant(stop_token_ids, tf.int32, shape=[len(stop_token_ids)])
        alpha = tf.constant(length_penalty, tf.float32)
        if self.seq2seq:
            new_ids = self._generate_from_sources(rows, max_new, sampling, stops, num_beams, alpha)
        else:
            new_ids = self._generate_from_prompts(rows, max_new, sampling, stops, num_beams, alpha)
        if texts:
            stops = set(stop_token_ids)
            kept = [[int(t) for t in row if int(t) not in stops] for row in new_ids]
            ragged = tf.ragged.constant(kept, dtype=tf.int32, row_splits_dtype=tf.int64)
            strings = self._detokenize(ragged).numpy()
            result = [s.decode("utf-8", errors="replace") for s in strings]
        else:
            result = new_ids
        return result[0] if single else result

    def _generate_from_prompts(self, rows, max_new, sampling, stops, num_beams, alpha):
        """A causal LM's new ids of each prompt row."""
        # A longer prompt keeps its last tokens: they and the new ones must fit.
        room = self.max_sequence_length - max_new
        rows = [row[-int(r):] for row, r in zip(rows, room)]
        return self._run(rows, max_new, sampling, stops, num_beams, alpha)

    def _generate_from_sources(self, rows, max_new, sampling, stops, num_beams, alpha):
        """A seq2seq model's new ids for each source row."""
        context = self.max_sequence_length
        for n, row in enumerate(rows):
            if len(row) > context:
                raise ValueError(
                    f"Source {n} has {len(row)} tokens; the model reads at most {context}."
                )
        return self._run(rows, max_new, sampling, stops, num_beams, alpha)

    def _run(self, rows, max_new, sampling, stops, num_beams, alpha):
        """Each row's new ids, from the XLA-compiled loop or the plain-graph one."""
        lengths = np.array([len(row) for row in rows], "int32")
        token_ids = _padded(rows, int(lengths.max()))
        padding_mask = (np.arange(token_ids.shape[1])[None, :] < lengths[:, None]).astype("int32")
        arguments = (token_ids, padding_mask, tf.constant(max_new, tf.int32))
        if num_beams != 1:
            outputs = self.beam_search(num_beams, self.jit_compile)(*arguments, stops, alpha)
        else:
            sample = self.compiled_sample if self.jit_compile else self.sample
            # Called as its one concrete function (it has an input signature):
            # the tf.function's dispatch took about 1 ms of every call.
            if sample not in self._concrete:
                self._concrete[sample] = sample.get_concrete_function()
            outputs = self._concrete[sample](
                *[tf.convert_to_tensor(value) for value in (*arguments, *sampling, stops)]
            )
        generated = outputs["generated_ids"].numpy()
        counts = outputs["generated_length"].numpy()
        return [generated[n, :count] for n, count in enumerate(counts)]


def _padded(rows, width):
    """Rows of ids as an int32 array `[B, width]`, right-padded with 0."""
    token_ids = np.zeros((len(rows), width), "int32")
    for n, row in enumerate(rows):
        token_ids[n, : len(row)] = row
    return token_ids


def check_decoder(model, *tasks):
    """Refuses a model without the decoding interface, or of another task, naming it.

    A model decodes through `keras_llm.generation` when it says what it is
    (`model.task`, one of `tasks`) and has `call_with_cache` and
    `empty_cache` (see `keras_llm.models.GPT`).
    """
    task = getattr(model, "task", None)
    if task in tasks and callable(getattr(model, "call_with_cache", None)):
        return task
    if task is None and isinstance(model, keras.Model):
        raise ValueError(
            f"`model` ({model.name!r}, a plain {type(model).__name__}) has no decoding interface: "
            "it must be a model from keras_llm's builders (a .keras file saved by an earlier "
            "keras_llm loads as a plain keras.Model: build the model again with the same sizes "
            "and copy the weights, `new.set_weights(old.get_weights())`)."
        )
    builders = {"causal_lm": "a causal LM (keras_llm.build_gpt)",
                "seq2seq_lm": "a seq2seq model (keras_llm.build_seq2seq)"}
    raise ValueError(
        f"`model` must be {' or '.join(builders[t] for t in tasks)}. Received: a {task} model "
        f"({type(model).__name__} {getattr(model, 'name', '')!r})"
    )


def check_inputs(token_ids, vocabulary_size, max_length=None, **same_shape):
    """Graph checks of a model's inputs: `token_ids` and then each of `same_shape`, checked.

    `token_ids` `[B, T]` must be ids in `[0, vocabulary_size)` and, given
    `max_length`, at most that long; each tensor of `same_shape` (e.g.
    `padding_mask=...`) must have its shape. Otherwise the graph fails with
    `InvalidArgumentError` naming the argument, what it received and what
    was expected. Used by `Generator` and by the exported signatures.

    Example:

    ```python
    import tensorflow as tf
    from keras_llm.generation.generator import check_inputs

    @tf.function
    def checked(token_ids, padding_mask):
        return check_inputs(token_ids, 10, 4, padding_mask=padding_mask)

    ids = tf.constant([[1, 2, 3]])
    checked(ids, tf.ones_like(ids))
    try:
        checked(tf.constant([[1, 12]]), tf.ones([1, 2], tf.int32))
    except tf.errors.InvalidArgumentError as error:
        assert "`token_ids` must be token ids in [0, 10)" in error.message
    ```
    """
    checks = [
        assert_that(
            tf.reduce_all(tf.equal(tf.shape(value), tf.shape(token_ids))),
            f"`{name}` must have the shape of `token_ids` ({{}}). Received: {name} of shape {{}}",
            tf.shape(token_ids), tf.shape(value),
        )
        for name, value in same_shape.items()
    ]
    if max_length is not None:
        checks.append(assert_that(
            tf.shape(token_ids)[1] <= max_length,
            f"`token_ids` must be at most {max_length} tokens long (the context of the model). "
            "Received: token_ids of length {}",
            tf.shape(token_ids)[1],
        ))
    with tf.control_dependencies(checks):
        others = [tf.identity(value) for value in same_shape.values()]
    return (check_token_ids(token_ids, vocabulary_size, "token_ids"), *others)


def check_stop_token_ids(stop_token_ids, vocabulary_size):
    """`stop_token_ids` (a list of ids in `[0, vocabulary_size)`) as a list of ints.

    Used by `Generator.generate` and `keras_llm.export`; anything else raises
    an error naming `stop_token_ids` (see `check_token_ids`).

    Example:

    ```python
    from keras_llm.generation.generator import check_stop_token_ids

    assert check_stop_token_ids((256,), 258) == [256]
    try:
        check_stop_token_ids([258], 258)
    except ValueError as error:
        assert "`stop_token_ids` must be token ids in [0, 258)" in str(error)
    ```
    """
    if isinstance(stop_token_ids, (str, bytes)):
        raise TypeError(
            f"`stop_token_ids` must be a list of token ids. Received: stop_token_ids={stop_token_ids!r}"
        )
    if isinstance(stop_token_ids, (list, tuple)) and all(
        is_int(t) and 0 <= t < vocabulary_size for t in stop_token_ids
    ):  # valid ids, accepted in Python: the TensorFlow check took about 1 ms a call
        return [int(t) for t in stop_token_ids]
    ids = check_token_ids(stop_token_ids, vocabulary_size, "stop_token_ids")
    if isinstance(ids, tf.RaggedTensor) or ids.shape.rank != 1:
        raise ValueError(
            "`stop_token_ids` must be a flat list of token ids. "
            f"Received: stop_token_ids={reprlib.repr(stop_token_ids)}"
        )
    return ids.numpy().tolist()


def _per_prompt(batch_size, **settings):
    """Each setting `[N]` as `[B]`: N is B (one per prompt) or 1 (one for every prompt).

    Any other N fails the graph with `InvalidArgumentError` naming the
    setting, its number of values and the number of prompts.
    """
    broadcast = []
    for name, value in settings.items():
        count = tf.shape(value)[0]
        check = assert_that(
            tf.logical_or(tf.equal(count, batch_size), tf.equal(count, 1)),
            f"`{name}` must have one value per prompt ({{}} prompts) or one value for all. "
            f"Received: {{}} values of {name}",
            batch_size, count,
        )
        with tf.control_dependencies([check]):
            broadcast.append(tf.broadcast_to(value, [batch_size]))
    return broadcast


def _unless_empty(token_ids, generate):
    """`generate()`, or empty completions for a batch of no prompts (`[0, 0]`, `[0]`)."""
    return tf.cond(
        tf.shape(token_ids)[0] > 0,
        generate,
        lambda: {
            "generated_ids": tf.zeros([0, 0], tf.int32),
            "generated_length": tf.zeros([0], tf.int32),
        },
    )


def _is_in(token, stop_token_ids):
    """Whether each of `token` `[...]` is one of `stop_token_ids` `[K]`."""
    return tf.reduce_any(token[..., None] == stop_token_ids, axis=-1)


def _completions(ids, lengths, stop_at):
    """The new tokens of each row `[B, M]` (padded with -1) and their count `[B]`."""
    count = stop_at - lengths  # [B]
    longest = tf.reduce_max(tf.concat([count, [0]], 0))
    columns = tf.range(longest)[None, :]
    index = tf.minimum(lengths[:, None] + columns, tf.shape(ids)[1] - 1)
    new = tf.gather(ids, index, batch_dims=1)
    return {
        "generated_ids": tf.where(columns < count[:, None], new, PADDING),
        "generated_length": count,
    }
