"""The samplers (greedy, temperature, top-k, top-p, beam search) and the one check of their settings.

Everything here works on one decoding step's float32 logits and per-row
settings tensors, in core TensorFlow ops with static shapes, so the same
code runs in `Generator`'s XLA-compiled loop and in an exported SavedModel.
`check_settings` is the Python-side check of every decoding setting (used
by `Generator.generate`, `keras_llm.export` and the CLI);
`settings_checks` is its in-graph twin for tensors (the exported
signatures).
"""

import numpy as np
import tensorflow as tf

from keras_llm._checks import is_int, is_number

# Wu et al. (2016)'s length-penalty exponent that Model Garden's
# `sequence_beam_search` users and the Transformer paper (section 6.1) use.
SEQ2SEQ_LENGTH_PENALTY = 0.6


def check_settings(context, **settings):
    """Checks decoding settings; a `ValueError` names the first bad one.

    The one check of the settings that `Generator.generate`,
    `keras_llm.export` and `keras-llm generate` take (exported signatures
    check their tensors in the graph with `settings_checks`). Each given
    keyword must be: `max_new_tokens` an int in `[0, context)`,
    `temperature` a number >= 0 (0: greedy), `top_k` an int >= 0 (0: no
    top-k), `top_p` a number in `(0, 1]` (1: no top-p), `seed` an int32,
    `num_beams` an int >= 1, `length_penalty` a number >= 0. Beam search
    (`num_beams` > 1) is deterministic: with it, `temperature`, `top_k`,
    `top_p` and `seed` must be absent or neutral (0, 0, 1, None).

    Example:

    ```python
    from keras_llm.generation.samplers import check_settings

    check_settings(32, max_new_tokens=8, temperature=0.7, top_k=0, top_p=0.9, seed=1)
    try:
        check_settings(32, top_p=1.5)
    except ValueError as error:
        assert "Received: top_p=1.5" in str(error)
    ```
    """
    rules = {
        "max_new_tokens": (lambda v: is_int(v) and 0 <= v < context, f"an int in [0, {context})"),
        "temperature": (lambda v: is_number(v) and v >= 0, "a number >= 0 (0: greedy)"),
        "top_k": (lambda v: is_int(v) and v >= 0, "an int >= 0 (0 or None: no top-k)"),
        "top_p": (lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1] (1 or None: no top-p)"),
        "seed": (lambda v: is_int(v) and -(2**31) <= v < 2**31, "an int in [-2**31, 2**31)"),
        "num_beams": (lambda v: is_int(v) and v >= 1, "an int >= 1 (1: no beam search)"),
        "length_penalty": (lambda v: is_number(v) and v >= 0, "a number >= 0 (0: none)"),
    }
    for name, value in settings.items():
        valid, expected = rules[name]
        if not valid(value):
            raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    neutral = dict(temperature=0, top_k=0, top_p=1, seed=None)
    if settings.get("num_beams", 1) > 1:
        sampling = {k: settings[k] for k in neutral if settings.get(k, neutral[k]) != neutral[k]}
        if sampling:
            raise ValueError(
                f"Beam search (num_beams={settings['num_beams']}) is deterministic: leave "
                f"{', '.join(sampling)} unset. Received: "
                + ", ".join(f"{k}={v!r}" for k, v in sampling.items())
            )


def settings_checks(temperature, top_k, top_p):
    """Graph assertions of per-row sampling settings `[B]`: `check_settings` for tensors."""
    return [
        tf.debugging.assert_non_negative(temperature, message="temperature must be >= 0"),
        tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0 (0: no top-k)"),
        tf.debugging.assert_positive(top_p, message="top_p must be in (0, 1]"),
        tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
    ]


def sample(logits, temperature, top_k, top_p, seed, step):
    """The next token `[B]` from last-position logits `[B, V]`; settings are `[B]`.

    Greedy where `temperature` is 0; otherwise a draw from the softmax of
    `logits / temperature` restricted to the `top_k` most likely tokens
    and/or the smallest set whose probability reaches `top_p` (top-k first,
    as in Hugging Face; ties with the last kept token are kept).
    """
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)

    def draw():
        scaled = logits / tf.where(temperature > 0.0, temperature, 1.0)[:, None]
        # One descending sort serves top-k and top-p (XLA cannot take a
        # `k` that is only known at run time in `tf.math.top_k`).
        ranked = tf.sort(scaled, axis=-1, direction="DESCENDING")  # [B, V]
        vocabulary = tf.shape(scaled)[-1]
        kth = tf.gather(ranked, tf.clip_by_value(top_k, 1, vocabulary) - 1, batch_dims=1)
        smallest = tf.where(top_k > 0, kth, ranked[:, -1])[:, None]  # [B, 1]
        ranked = tf.where(ranked < smallest, -np.inf, ranked)
        before = tf.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)
        # The most likely token is always kept (`before` is 0 there).
        nucleus = tf.reduce_min(
            tf.where(before < top_p[:, None], ranked, np.inf), axis=-1, keepdims=True
        )
        scaled = tf.where(scaled < tf.maximum(smallest, nucleus), -np.inf, scaled)
        # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits).
        sampled = tf.argmax(
            scaled + gumbel_noise(seed, step, vocabulary), axis=-1, output_type=tf.int32
        )
        return tf.where(temperature > 0.0, sampled, greedy)

    return tf.cond(tf.reduce_any(temperature > 0.0), draw, lambda: greedy)


def length_penalty(length, alpha):
    """Wu et al. (2016)'s `((5 + length) / 6) ** alpha`; 1 for `alpha` 0."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def beam_step(log_probs, scores, lengths, done, alpha):
    """One beam-search step: each row's `K` best continuations of its `K` beams.

    Args:
        log_probs: `[B, K, V]` next-token log-probabilities of each beam.
        scores: `[B, K]` each beam's summed log-probability so far.
        lengths: `[B, K]` each beam's generated length after this step
            (a finished beam's stays where it stopped).
        done: `[B, K]` whether a beam has finished: it continues with token
            0 at no cost (never read back) and keeps its score.
        alpha: The length-penalty exponent (0: rank by the summed
            log-probability; Wu et al.'s 0.6 favours longer outputs).

    Returns:
        `(source_beam, token, scores)`, each `[B, K]`: the candidates are
        ranked by score / `length_penalty(length, alpha)`, and `scores` are
        the chosen candidates' summed log-probabilities.
    """
    batch, beams, vocabulary = tf.unstack(tf.shape(log_probs))
    frozen = tf.where(tf.range(vocabulary) == 0, 0.0, -np.inf)  # [V]
    log_probs = tf.where(done[:, :, None], frozen, log_probs)
    candidates = scores[:, :, None] + log_probs  # [B, K, V]
    ranked = candidates / length_penalty(lengths, alpha)[:, :, None]
    _, index = tf.math.top_k(tf.reshape(ranked, [batch, beams * vocabulary]), beams)
    flat = tf.reshape(candidates, [batch, beams * vocabulary])
    return index // vocabulary, index % vocabulary, tf.gather(flat, index, batch_dims=1)


def gumbel_noise(seed, step, vocabulary):
    """Gumbel(0, 1) noise `[B, V]` from a hash of (row seed, step, token id).

    A counter-based generator in integer ops (MurmurHash3's 32-bit
    finalizer, twice): each row's numbers depend only on its own seed, so a
    prompt samples the same text alone or in any batch, with or without XLA,
    in Python and in an exported SavedModel.
    """
    def mix(h):
        h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
        h = h * tf.constant(0x85EBCA6B, tf.uint32)
        h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 13))
        h = h * tf.constant(0xC2B2AE35, tf.uint32)
        return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))

    row = tf.bitcast(tf.cast(seed, tf.int32), tf.uint32)[:, None]  # [B, 1]
    token = tf.cast(tf.range(vocabulary), tf.uint32)[None, :]  # [1, V]
    counter = tf.cast(step, tf.uint32) * tf.constant(0x9E3779B1, tf.uint32)
    h = mix(mix(row ^ counter) + token * tf.constant(0x27D4EB2F, tf.uint32))
    # 24 random bits -> a uniform in (0, 1), never 0 or 1.
    uniform = (tf.cast(tf.bitwise.right_shift(h, 8), tf.float32) + 0.5) / 16777216.0
    return -tf.math.log(-tf.math.log(uniform))
