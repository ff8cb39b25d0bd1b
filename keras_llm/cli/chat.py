"""`keras-llm chat`: a conversation with a chat model, the user's turns read from standard input.

The model is a Hugging Face directory or a GGUF file (`keras_llm.from_pretrained`)
or a `.keras` file; its tokenizer's chat template (or `--chat-template`) lays the
conversation out, and each reply is printed as it is decoded
(`keras_llm.generation.chat.Chat`, a few tokens at a time).
"""

import sys

import keras_llm
from keras_llm.cli import _common
from keras_llm.cli._files import load_trained
from keras_llm.generation.chat import Chat
from keras_llm.generation.samplers import check_settings


def run(args, parser):
    """Reads turns from standard input until it ends; prints each reply."""
    _common.positive(parser, args, ["max_new_tokens"])
    try:
        check_settings(None, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    except ValueError as error:
        parser.error(_common.flags_for(str(error), ["temperature", "top_k", "top_p"]))
    template = None
    if args.chat_template is not None:
        try:
            with open(args.chat_template, encoding="utf-8") as f:
                template = f.read()
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--chat-template {args.chat_template!r}: {error}")
    model = _load(args, parser)
    sampling = dict(temperature=args.temperature, top_k=args.top_k or None,
                    top_p=None if args.top_p == 1.0 else args.top_p, seed=args.seed)
    try:
        chat = Chat(model, system=args.system, chat_template=template,
                    max_new_tokens=args.max_new_tokens, **sampling)
    except ValueError as error:
        parser.error(f"--model {args.model!r}: {error}")
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            chat.send(text, on_text=lambda piece: print(piece, end="", flush=True))
        except ValueError as error:  # a conversation past the context: said, then stop
            print(file=sys.stderr)
            parser.error(str(error))
        print(flush=True)
    return 0


def _load(args, parser):
    if args.model.endswith(".keras"):
        return load_trained(args.model, parser)[0]
    try:
        return keras_llm.from_pretrained(args.model)
    except (OSError, ValueError) as error:
        parser.error(f"--model {args.model!r}: {error}")
