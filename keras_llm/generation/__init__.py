"""Generation: continuing prompts (a GPT) or writing targets (an encoder-decoder) from a key/value cache.

`Generator(model, tokenizer)` holds the compiled decoding loops (greedy,
temperature, top-k, top-p, beam search); `generate(model, prompts, ...)` is
the one-call form, reusing one `Generator` per model and tokenizer;
`samplers` holds the sampling and beam steps and the one check of their
settings.

The decoding interface a model provides (`keras_llm.models.GPT` and
`keras_llm.models.Seq2SeqTransformer` do; an imported model decodes by
providing the same): `task` (`"causal_lm"` or `"seq2seq_lm"`),
`vocabulary_size`, `max_sequence_length`, `empty_cache(batch_size,
cache_length)`, `call_with_cache(token_ids, cache, cache_index, context)`
returning float32 logits and the cache, and for a seq2seq model
`encode(token_ids, padding_mask)` returning the `context` (computed once per
source). Nothing here reads a model's layers.
"""

import weakref

from keras_llm.generation.generator import Generator

_GENERATORS = weakref.WeakKeyDictionary()


def generate(model, prompts, max_new_tokens=64, *, tokenizer=None, **kwargs):
    """Continues `prompts` with `model`: `Generator(model, tokenizer).generate(...)`.

    The `Generator` (and so its compiled loop) is kept for the next call
    with the same model and tokenizer. `kwargs` are `Generator.generate`'s:
    `temperature`, `top_k`, `top_p`, `num_beams`, `stop_token_ids`, `seed`.

    Example:

    ```python
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    text = keras_llm.generate(model, "Once", 8, tokenizer=tokenizer, temperature=0.8, seed=1)
    assert isinstance(text, str)
    ```
    """
    per_model = _GENERATORS.setdefault(model, {})
    key = id(tokenizer)
    if key not in per_model or per_model[key].tokenizer is not tokenizer:
        per_model[key] = Generator(model, tokenizer)
    return per_model[key].generate(prompts, max_new_tokens, **kwargs)


__all__ = ["Generator", "generate"]
