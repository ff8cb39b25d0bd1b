"""`Generator`: text generation with a static-size key/value cache, in one compiled loop.

Its front end (texts or ids in, completions out), the compiled functions
(`sample`, `compiled_sample`, `beam_search`) and their signatures; the
loops themselves are `keras_llm.generation.loops`', the checks it shares
with the exports `keras_llm.generation.checks`'.
"""

import reprlib

import numpy as np
import tensorflow as tf

from keras_llm._checks import is_int
from keras_llm._graph import graph_function
from keras_llm._graph_checks import check_token_ids
from keras_llm.generation.checks import (  # noqa: F401 (check_inputs: importable from here too)
    PROMPT_SPECS,
    SETTING_SPECS,
    STOP_SPEC,
    check_decoder,
    check_inputs,
    check_stop_token_ids,
    per_prompt,
)
from keras_llm.generation.loops import PADDING, DecodingLoops, completions, unless_empty  # noqa: F401
from keras_llm.generation.prompts import prompt_ids, source_ids
from keras_llm.generation.samplers import SEQ2SEQ_LENGTH_PENALTY, check_settings, settings_checks
from keras_llm.models.registry import special_tokens
from keras_llm.models.task_model import check_tokenizer


class Generator(DecodingLoops):
    """Continues prompts with a GPT, or writes a seq2seq model's targets, one token per step.

    A seq2seq model's sources are encoded once (`model.encode`, which also
    computes each decoder block's encoder keys and values); its decoder then
    starts from the start token as a one-token prompt, and everything below
    applies to it as to a GPT's prompt, except that the loop's first step
    reads that token (no pass over the prompt first). The special tokens are those
    `keras_llm.data.seq2seq_dataset` trains with (decided by
    `keras_llm.models.registry.special_tokens`): give `start_token_id` (and
    `source_end_token_id`) when the tokenizer lacks them (BART:
    `start_token_id=2`).

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
        tokenizer: The tokenizer of the prompts: then `generate` takes and
            returns strings, and its end token (`registry.special_tokens`)
            is the default stop token and the token an empty prompt starts
            from (a new document, as in GPT-2's unconditional samples).
            Default: the tokenizer the model carries (`model.tokenizer`);
            one given here overrides it and is checked against the model
            (`keras_llm.models.task_model.check_tokenizer`). Without
            either, prompts and completions are ids.
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
        if tokenizer is None:
            tokenizer = getattr(model, "tokenizer", None)
        elif target_tokenizer is None:  # it names the generated ids too
            check_tokenizer(model, tokenizer)
        if target_tokenizer is not None:
            check_tokenizer(model, target_tokenizer, argument="target_tokenizer")
        self.tokenizer = tokenizer
        # What names the generated ids: the target's tokenizer.
        self.target_tokenizer = target_tokenizer or tokenizer
        self.max_sequence_length = model.max_sequence_length
        self.vocabulary_size = model.vocabulary_size
        # A checkpoint's table padded past its tokenizer (Qwen2.5's 151,936
        # rows for 151,665 tokens): the loops never pick an id with no token.
        named = getattr(self.target_tokenizer, "vocabulary_size", model.vocabulary_size)
        self.named_ids = named if named < model.vocabulary_size else None
        self.source_vocabulary_size = getattr(model, "source_vocabulary_size", model.vocabulary_size)
        if self.seq2seq:
            # The layout seq2seq_dataset trains with: sources end with the
            # source end token, the decoder starts from the start token and
            # learns to emit the end token (the default stop).
            specials = special_tokens(
                self.task, tokenizer, self.target_tokenizer, start_token_id=start_token_id,
                source_end_token_id=source_end_token_id,
                needed=("start_token_id",) + (("source_end_token_id",) if tokenizer else ()),
            )
            self.start_token_id = specials["start_token_id"]
            self.source_end_token_id = specials.get("source_end_token_id")
            check_token_ids([self.start_token_id], self.vocabulary_size, "start_token_id")
        else:
            # A GPT's end token separates documents: it stops a completion
            # and starts an empty prompt.
            specials = special_tokens(self.task, tokenizer)
        self.end_token_id = specials.get("end_token_id")
        self.bos_token_id = specials.get("bos_token_id")
        signature = [*PROMPT_SPECS, *SETTING_SPECS, STOP_SPEC]
        self.sample = graph_function(self._sample, input_signature=signature)

        def compiled_sample(token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p,
                            seed, stop_token_ids):
            return self._sample(token_ids, padding_mask, max_new_tokens, temperature, top_k,
                                top_p, seed, stop_token_ids, xla=True)

        self.compiled_sample = graph_function(compiled_sample, input_signature=signature)
        self._concrete = {}  # each sampling function's one concrete function
        self._beam_searches = {}
        # Traced once: run eagerly, detokenizing cost about 9 ms a call (a third of a
        # short generation's latency; measured for ByteTokenizer, benchmarks/RESULTS.md).
        if self.tokenizer is not None:  # tokenizing too, with the prompts' layout
            self._encode = graph_function(
                self._prompts_of_texts, input_signature=[tf.TensorSpec([None], tf.string)]
            )
        if self.target_tokenizer is not None:
            self._detokenize = graph_function(
                self.target_tokenizer.detokenize,
                input_signature=[tf.RaggedTensorSpec([None, None], tf.int32, 1, tf.int64)],
            )
        self.jit_compile = jit_compile
        self._xla_loops = {}

    # -- sampling (greedy, temperature, top-k, top-p) -----------------------------

    def _sample(
        self, token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed,
        stop_token_ids, xla=False,
    ):
        max_new_tokens, temperature, top_k, top_p, seed = per_prompt(
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
            return completions(ids, lengths, stop_at)

        return unless_empty(token_ids, generate)

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
                (max_new_tokens,) = per_prompt(
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
                    return completions(ids, lengths, stop_at)

                return unless_empty(token_ids, generate)

            self._beam_searches[key] = graph_function(
                search,
                input_signature=[
                    *PROMPT_SPECS, SETTING_SPECS[0], STOP_SPEC,
                    tf.TensorSpec([], tf.float32, name="length_penalty"),
                ],
            )
        return self._beam_searches[key]

    # -- Python front end ------------------------------------------------------------

    def _prompts_of_texts(self, texts):
        """`texts` `[B]` -> the prompts' ids `[B, None]`: a GPT's prompts, a seq2seq model's
        sources cut to the context and ended (`keras_llm.generation.prompts`)."""
        ids = self.tokenizer(texts)
        if self.seq2seq:
            return source_ids(ids, self.max_sequence_length, self.source_end_token_id)
        return prompt_ids(ids, self.end_token_id, self.bos_token_id)

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
                    "String prompts need a tokenizer: pass `tokenizer=` (Generator(model, "
                    "tokenizer=...), keras_llm.generate(..., tokenizer=...)) or build the model "
                    "with one (its `model.tokenizer`)."
                )
            rows = self._encode(tf.constant(batch)).to_list()
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
        listed = {"seed": seeds, "max_new_tokens": max_new_tokens}
        for name, values in listed.items():
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


