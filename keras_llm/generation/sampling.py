"""Text generation by recomputing the whole sequence at every step."""

import numpy as np
import tensorflow as tf


def generate(
    model,
    prompt_ids,
    max_new_tokens,
    temperature=1.0,
    top_k=None,
    seed=None,
    end_token_id=None,
):
    """Continues one prompt with a causal LM, one token at a time.

    Each step runs the model over the whole sequence so far (the last
    `max_sequence_length` tokens once it is longer) and samples the next
    token from the logits of the last position. This costs O(n^2) per new
    token; it is the exact reference that a key/value-cached generator must
    reproduce, and fast enough for the short samples the CLI prints.

    Args:
        model: A model from `keras_llm.build_gpt` (inputs `token_ids` and
            `padding_mask`, outputs next-token logits).
        prompt_ids: A 1-D sequence of token ids, at least one.
        max_new_tokens: How many tokens to add (>= 0).
        temperature: 0 for greedy decoding; otherwise logits are divided by
            it before sampling.
        top_k: If set, sample only among the `top_k` most likely tokens.
        seed: Seed of the sampling, for reproducible output.
        end_token_id: If set, stop after generating this id.

    Returns:
        A 1-D NumPy int32 array: the prompt followed by the new tokens.

    Example:

    ```python
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    out = keras_llm.generation.generate(model, [72, 105], max_new_tokens=3, temperature=0)
    assert out.shape == (5,) and out[:2].tolist() == [72, 105]
    ```
    """
    ids = [int(i) for i in np.asarray(prompt_ids).reshape(-1)]
    if not ids:
        raise ValueError("`prompt_ids` must hold at least one token id. Received: []")
    if max_new_tokens < 0:
        raise ValueError(
            f"`max_new_tokens` must be >= 0. Received: max_new_tokens={max_new_tokens}"
        )
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0. Received: temperature={temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
        raise ValueError(f"`top_k` must be a positive int or None. Received: top_k={top_k!r}")
    context = model.get_layer("embeddings").max_sequence_length
    rng = np.random.default_rng(seed)

    @tf.function(reduce_retracing=True)
    def last_logits(token_ids):
        logits = model(
            {"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids)},
            training=False,
        )
        return tf.cast(logits[0, -1], tf.float32)

    for _ in range(max_new_tokens):
        window = np.asarray([ids[-context:]], dtype="int32")
        logits = last_logits(tf.constant(window)).numpy().astype("float64")
        if temperature == 0:
            next_id = int(np.argmax(logits))
        else:
            logits = logits / temperature
            if top_k is not None:
                cutoff = np.sort(logits)[-min(top_k, len(logits))]
                logits = np.where(logits < cutoff, -np.inf, logits)
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            next_id = int(rng.choice(len(probabilities), p=probabilities))
        ids.append(next_id)
        if end_token_id is not None and next_id == end_token_id:
            break
    return np.asarray(ids, dtype="int32")
