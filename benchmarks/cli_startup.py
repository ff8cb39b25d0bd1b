"""How long `keras-llm --help` takes to answer, against starting Python itself.

`keras-llm`'s parser lives outside the `keras_llm` package (`keras_llm_cli`)
so that `--help` and flag errors answer without importing TensorFlow (4-7 s).
The anchor is `python -c pass` (the interpreter's own start-up, which no
code of ours can shorten); each command is timed as a fresh process, the two
alternating for several rounds, and the median kept, so that a loaded
machine slows both alike. The ratio is what to compare between machines.

tests/test_cli_commands.py checks, without timing, that --help imports no
TensorFlow, Keras or keras_llm: that is what makes it quick.

Usage:
    python benchmarks/cli_startup.py              # 15 runs of each
    python benchmarks/cli_startup.py --rounds 3   # quick look
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

FLAGS = {
    "--rounds": dict(type=int, default=15, help="Timed runs of each command."),
}


def _commands():
    """(label, argv) of the anchor and of `keras-llm ... --help`."""
    script = os.path.join(os.path.dirname(sys.executable), "keras-llm")
    keras_llm = [script] if os.path.exists(script) else [sys.executable, "-c",
                                                          "import keras_llm_cli; keras_llm_cli.main()"]
    return [
        ("python -c pass (anchor)", [sys.executable, "-c", "pass"]),
        ("keras-llm --help", keras_llm + ["--help"]),
        ("keras-llm train --help", keras_llm + ["train", "--help"]),
    ]


def _seconds(argv):
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    args = parser.parse_args()
    commands = _commands()
    for _, argv in commands:  # warm the file cache: the first run reads every .pyc from disk
        _seconds(argv)
    times = {label: [] for label, _ in commands}
    for _ in range(args.rounds):
        for label, argv in commands:
            times[label].append(_seconds(argv))
    anchor = statistics.median(times[commands[0][0]])
    print(f"{'command':<28} {'median s':>9} {'x anchor':>9}   ({args.rounds} runs each, "
          f"{os.cpu_count()} CPUs)")
    for label, _ in commands:
        median = statistics.median(times[label])
        print(f"{label:<28} {median:>9.3f} {median / anchor:>9.2f}")


if __name__ == "__main__":
    main()
