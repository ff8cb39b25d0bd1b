"""Generation: continuing prompts (a GPT) or writing targets (an encoder-decoder) from a key/value cache.

`Generator(model)` holds the compiled decoding loops (greedy, temperature,
top-k, top-p, beam search) and reads and writes text with the tokenizer the
model carries (or one given); `generate(model, prompts, ...)` is the
one-call form, reusing one `Generator` per model and tokenizer. The
modules, one responsibility each:

- `generator`: `Generator`, its front end and compiled functions;
- `loops`: the decoding loops as graph code (prompts, cache, steps);
- `buckets`: the shape buckets that XLA compiles the loops for;
- `samplers`: the sampling and beam steps and the one check of their
  settings;
- `checks`: the checks and signature specs that the exports share;
- `prompts`: how texts become prompts and seq2seq sources.

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

    The tokenizer is the one given, else the one the model carries
    (`model.tokenizer`). The `Generator` (and so its compiled loop) is kept
    for the next call with the same model and tokenizer. `kwargs` are
    `Generator.generate`'s: `temperature`, `top_k`, `top_p`, `num_beams`,
    `stop_token_ids`, `seed`.

    Args:
        model: A GPT or a seq2seq model (see `Generator`).
        prompts: Texts or token ids (see `Generator.generate`).
        max_new_tokens: The most tokens to add to each prompt.
        tokenizer: A tokenizer overriding the model's (checked against it).
        **kwargs: `Generator.generate`'s settings.

    Returns:
        What `Generator.generate` returns.

    Example:

    ```python
    import keras_llm

    model = keras_llm.build_gpt(
        "gpt_nano", num_layers=1, tokenizer=keras_llm.tokenizers.ByteTokenizer()
    )
    text = keras_llm.generate(model, "Once", 8, temperature=0.8, seed=1)  # model.tokenizer
    assert isinstance(text, str)
    ```
    """
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    per_model = _GENERATORS.setdefault(model, {})
    key = id(tokenizer)
    if key not in per_model or per_model[key].tokenizer is not tokenizer:
        per_model[key] = Generator(model, tokenizer)
    return per_model[key].generate(prompts, max_new_tokens, **kwargs)


__all__ = ["Generator", "generate"]
