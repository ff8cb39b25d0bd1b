"""The decoding loops that `Generator` compiles, as graph code.

`DecodingLoops` reads prompts (a GPT's) or sources (a seq2seq model's),
fills the key/value cache in one pass, and adds one token per step in a
`tf.while_loop`: `_sample_loop` (greedy, temperature, top-k, top-p) and
`_beam_loop` (beam search), as plain graphs or XLA-compiled per shape
bucket (`_xla_decode`, with `keras_llm.generation.buckets`). `Generator`
builds on it: the compiled functions, their signatures and the Python
front end. Nothing here reads a model's layers: only the decoding
interface (`keras_llm.generation`).
"""

import numpy as np
import tensorflow as tf

from keras_llm._graph import graph_function
from keras_llm._graph_checks import check_token_ids
from keras_llm.generation import buckets
from keras_llm.generation.checks import check_inputs
from keras_llm.generation.samplers import beam_step, length_penalty, sample

# Sentinel of the `generated_ids` padding: never a token id.
PADDING = -1


class DecodingLoops:
    """The graph side of `Generator`: preparing prompts and the decoding loops.

    A subclass sets `model`, `seq2seq`, `vocabulary_size`,
    `source_vocabulary_size`, `max_sequence_length`, `start_token_id` (a
    seq2seq model's), `named_ids` (None, or how many of the first ids
    name a token) and `_xla_loops = {}`.
    """

    # -- the model, one step at a time -----------------------------------------

    def _forward(self, token_ids, index, caches, context):
        """Logits `[B, T, V]` (float32) of tokens at positions `index...`, and the caches.

        With `named_ids`, the logits of the ids past them (the spare rows of a
        padded table, which name no token) are the lowest float: no loop picks them.
        """
        logits, caches = self.model.call_with_cache(token_ids, caches, index, context)
        if self.named_ids is not None:
            named = tf.range(tf.shape(logits)[-1]) < self.named_ids  # [V]
            logits = tf.where(named, logits, logits.dtype.min)
        return logits, caches

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
            stopped = tf.logical_and(generating, is_in(token, stop_token_ids))
            stop_at = tf.where(stopped, i + 1, stop_at)
            done = done | stopped | (i + 1 >= row_end)
            return i + 1, ids, done, stop_at, caches

        _, ids, _, stop_at, _ = tf.while_loop(
            keep_going,
            step,
            (tf.reduce_min(lengths), ids, lengths >= row_end, row_end, caches),
        )
        return ids, stop_at

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
            stopped = tf.logical_and(generating, is_in(token, stop_token_ids))
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

        The plain graph around the compiled loop pads the inputs to a bucket
        (`keras_llm.generation.buckets`), so that each bucket compiles once
        per process. Takes and returns what `_sample_loop` does.
        """
        batch_size = tf.shape(ids)[0]
        shapes = self.bucket_shapes(
            lengths, row_end, None if source is None else tf.shape(source[0])[1]
        )
        prompt, lengths, row_end, sampling, source, positions = buckets.to_bucket(
            shapes, ids, lengths, row_end, sampling, source
        )
        ids, stop_at = self._xla_loop(num_beams)(
            prompt, lengths, row_end, stop_token_ids, positions, tf.cast(alpha, tf.float32),
            sampling, source,
        )
        return ids[:batch_size], stop_at[:batch_size]

    def bucket_shapes(self, lengths, row_end, source_width=None):
        """The shape bucket that XLA compiles a decoding loop for, for this model.

        `keras_llm.generation.buckets.bucket_shapes` with the model's context
        and kind: the batch size, prompt width, total length and source width
        (None without a source) rounded up, as int32 scalars.

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
        return buckets.bucket_shapes(
            lengths, row_end, self.max_sequence_length, seq2seq=self.seq2seq,
            source_width=source_width,
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

            self._xla_loops[num_beams] = graph_function(
                loop, jit_compile=True,
                input_signature=buckets.loop_signature(num_beams, self.seq2seq),
            )
        return self._xla_loops[num_beams]


def unless_empty(token_ids, generate):
    """`generate()`, or empty completions for a batch of no prompts (`[0, 0]`, `[0]`)."""
    return tf.cond(
        tf.shape(token_ids)[0] > 0,
        generate,
        lambda: {
            "generated_ids": tf.zeros([0, 0], tf.int32),
            "generated_length": tf.zeros([0], tf.int32),
        },
    )


def is_in(token, stop_token_ids):
    """Whether each of `token` `[...]` is one of `stop_token_ids` `[K]`."""
    return tf.reduce_any(token[..., None] == stop_token_ids, axis=-1)


def completions(ids, lengths, stop_at):
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

