"""The commands of `keras-llm`, one module each: train, generate, finetune, export, chat,
quantize, distill.

- `train.py`: GPT (causal LM) and BERT (masked LM + next sentence) training;
  `train_seq2seq.py`: the same command for an encoder-decoder preset.
- `generate.py`, `finetune.py` (`--lora`), `export.py`, `chat.py`, `quantize.py`,
  `distill.py`: the other commands.
- `_common.py`: what they share (flag checks, the held-out split, the run's
  tokenizer and backups, the epochs of a run); `_files.py`: the models they
  save and load (each `.keras` file carries its tokenizer) and the exports
  they read.

The flags, the parser and the start-up are in `keras_llm_cli` (a module beside
this package, so that `--help` needs no TensorFlow). Each command module has
`run(args, parser)`: the parsed `args` and its subcommand's `parser`, whose
`error` reports a user error in one line with exit status 2.

Example:

```python
import keras_llm.cli

assert keras_llm.cli.command("export").__name__ == "keras_llm.cli.export"
```
"""

import importlib

# `python -m keras_llm.cli` works too, but imports TensorFlow before the
# parser can hide its start-up lines: the `keras-llm` script is the quiet way.
from keras_llm_cli import main  # noqa: F401


def command(name):
    """The module of the command `name` ("train", "generate", "finetune", "export")."""
    return importlib.import_module(f"{__name__}.{name}")


def run(args, parser):
    """Runs the command `args.command` with its parsed `args`; returns the exit status."""
    return command(args.command).run(args, parser)
