"""`keras-llm generate`: continue prompts with a GPT, or write targets with an encoder-decoder.

From a `.keras` file (the tokenizer it carries) or an exported SavedModel.
"""

import hashlib
import sys

import tensorflow as tf

import keras_llm
from keras_llm.cli import _common
from keras_llm.cli._files import generate_from_saved_model, is_seq2seq_export, latest_version, load_trained
from keras_llm.generation.samplers import check_settings


def row_seed(seed, prompt, sample):
    """The sampling seed of one row: a hash of (--seed, the prompt, the sample number).

    Rows sharing a seed share their sampling noise (the same draw at the same
    step), so each row gets its own; deriving it from the prompt rather than
    the row's position keeps "the same prompt and --seed give the same text"
    true alone, in any batch and at any position.

    Example:

    ```python
    from keras_llm.cli.generate import row_seed

    assert row_seed(0, "a", 0) == row_seed(0, "a", 0) != row_seed(0, "a", 1)
    ```
    """
    digest = hashlib.blake2b(f"{seed}\0{sample}\0{prompt}".encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def run(args, parser):
    """Prints each prompt's completion (GPT) or target (encoder-decoder)."""
    if args.max_new_tokens < 0:
        parser.error(f"--max-new-tokens must be >= 0; received {args.max_new_tokens}")
    _common.positive(parser, args, ["num_beams", "num_samples"])
    if args.num_samples > 1 and (args.temperature == 0 or args.num_beams > 1):
        parser.error(
            f"--num-samples {args.num_samples} needs sampling (--temperature > 0, no "
            "--num-beams): greedy decoding and beam search give one text per prompt"
        )
    if args.stop is not None and "" in args.stop:
        parser.error("--stop must not be empty")
    prompts = _read_prompts(args, parser)
    try:  # the one check of decoding settings (the context is checked where it is known)
        check_settings(None, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       num_beams=args.num_beams)
    except ValueError as error:
        parser.error(_common.flags_for(str(error), ["temperature", "top_k", "top_p", "num_beams"]))
    # Each prompt's samples, prompt-major: [p0 s0, p0 s1, ..., p1 s0, ...].
    rows = [(n, prompt, sample) for n, prompt in enumerate(prompts) for sample in range(args.num_samples)]
    texts = [prompt for _, prompt, _ in rows]
    seeds = [row_seed(args.seed, prompt, sample) for _, prompt, sample in rows]
    if args.model.endswith(".keras"):
        completions, seq2seq = _from_keras(args, parser, texts, seeds)
    else:
        completions, seq2seq = _from_export(args, parser, texts, seeds)
    for (n, prompt, sample), completion in zip(rows, completions):
        if args.num_samples > 1:
            print(f"# prompt {n + 1}, sample {sample + 1}")
        completion = _cut_at_stop_strings(completion, args.stop or [])
        # A GPT continues the prompt; an encoder-decoder writes a new text from it.
        print(f"{prompt}\n-> {completion}" if seq2seq else prompt + completion)
    return 0


def _from_keras(args, parser, texts, seeds):
    model, tokenizer = load_trained(args.model, parser)
    if args.num_beams > 1:
        sampling = dict(num_beams=args.num_beams)  # sampling flags refused above
    else:
        sampling = dict(temperature=args.temperature, top_k=args.top_k or None,
                        top_p=None if args.top_p == 1.0 else args.top_p, seed=seeds)
    try:
        # The tokenizer is passed explicitly until `generate` defaults to model.tokenizer.
        completions = keras_llm.generate(
            model, texts, args.max_new_tokens, tokenizer=tokenizer, **sampling
        )
    except ValueError as error:
        parser.error(str(error))
    return completions, model.task == "seq2seq_lm"


def _from_export(args, parser, texts, seeds):
    version = latest_version(args.model)
    if version is None:
        parser.error(f"--model {args.model!r} is neither a .keras file nor an exported SavedModel")
    if args.num_beams > 1:
        parser.error(
            f"--num-beams {args.num_beams}: beam search runs from a .keras model; an export "
            "serves sampling and greedy decoding (its `generate` signature)"
        )
    settings = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p)
    try:
        completions = generate_from_saved_model(version, texts, seeds, **settings)
    except ValueError as error:
        parser.error(f"--model: {error}")
    except tf.errors.InvalidArgumentError as error:
        # The served graph's check says what was wrong.
        parser.error(_common.graph_error_message(error))
    return completions, is_seq2seq_export(version)


def _read_prompts(args, parser):
    """--prompt values, then the lines of --prompt-file (- for standard input)."""
    prompts = list(args.prompt or [])
    if args.prompt_file is not None:
        try:
            if args.prompt_file == "-":
                text = sys.stdin.read()
            else:
                with open(args.prompt_file, encoding="utf-8-sig") as f:  # a BOM is not text
                    text = f.read()
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--prompt-file {args.prompt_file!r}: {error}")
        # Lines end at \n (or \r\n) only: str.splitlines would also cut at
        # form feeds and Unicode separators inside a prompt.
        lines = (line.removesuffix("\r") for line in text.split("\n"))
        prompts += [line for line in lines if line.strip()]
    if not prompts:
        parser.error("give at least one prompt: --prompt TEXT or --prompt-file FILE (- for stdin)")
    return prompts


def _cut_at_stop_strings(text, stops):
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]
