"""Whether XLA should be keras_llm's training default on one device: time to the first step included.

Trains the same model (a 4-layer GPT of width 256 by default, as issue 14
measured) with `compile_model(..., jit_compile=False)` and `jit_compile=True`,
each in a fresh process (so neither reuses the other's traced functions), on
the same random batches held in memory through `model.fit`. Reports the time
from `fit`'s start to the end of its first step (tracing and, with XLA,
compiling), the median step after it, and the wall time of runs of several
lengths computed from the two (first step + (n - 1) x step): the default is
worth changing only if XLA wins at the run lengths people use
(`keras-llm train` defaults to 800 steps).

Usage:
    python benchmarks/xla_training.py            # the table in RESULTS.md
    python benchmarks/xla_training.py --steps 20 # quick look
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FLAGS = {
    "--layers": dict(type=int, default=4, help="Transformer blocks."),
    "--hidden": dict(type=int, default=256, help="Hidden width."),
    "--vocab": dict(type=int, default=8192, help="Vocabulary size."),
    "--batch": dict(type=int, default=16, help="Sequences per step."),
    "--seq": dict(type=int, default=128, help="Tokens per sequence."),
    "--steps": dict(type=int, default=60, help="Steps per run (the first is reported apart)."),
    "--rounds": dict(type=int, default=2, help="Runs of each setting, alternating; medians kept."),
    "--worker": dict(default=None, help=argparse.SUPPRESS),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    return parser.parse_args()


def worker(args):
    """One run in this process: prints {"first": s, "steps": [s, ...]} as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import keras_llm

    keras.utils.set_random_seed(0)
    model = keras_llm.build_gpt(
        vocabulary_size=args.vocab, num_layers=args.layers, num_heads=args.hidden // 64,
        hidden_dim=args.hidden, intermediate_dim=4 * args.hidden, max_sequence_length=args.seq,
        dropout=0.1,
    )
    keras_llm.compile_model(model, "causal_lm", total_steps=args.steps,
                            jit_compile=args.worker == "on")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab, (args.batch * args.steps, args.seq + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones_like(ids[:, :-1])}

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    clock = Clock()
    model.fit(x, ids[:, 1:], batch_size=args.batch, epochs=1, verbose=0, callbacks=[clock],
              shuffle=False)
    times = clock.times
    print(json.dumps({"first": times[1] - times[0],
                      "steps": [b - a for a, b in zip(times[1:], times[2:])]}))


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    runs = {"off": [], "on": []}
    for _ in range(args.rounds):
        for setting in runs:
            command = [sys.executable, __file__, "--worker", setting] + [
                f"--{k}={v}" for k, v in vars(args).items() if k not in ("worker", "rounds")
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[setting].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"GPT {args.layers} layers, width {args.hidden}, vocabulary {args.vocab}, batch "
          f"{args.batch} x {args.seq}, fit on batches in memory, {args.steps} steps x "
          f"{args.rounds} runs each (medians)")
    print("| XLA | first step s | step ms | 100 steps s | 800 steps s | 5,000 steps s |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for setting, results in runs.items():
        first = statistics.median(r["first"] for r in results)
        step = statistics.median(statistics.median(r["steps"][5:]) for r in results)
        summary[setting] = (first, step)
        wall = [first + (n - 1) * step for n in (100, 800, 5000)]
        print(f"| {setting} | {first:.1f} | {1000 * step:.0f} | "
              + " | ".join(f"{w:,.0f}" for w in wall) + " |")
    (first_off, step_off), (first_on, step_on) = summary["off"], summary["on"]
    if step_on < step_off:
        even = 1 + (first_on - first_off) / (step_off - step_on)
        print(f"XLA: {step_off / step_on:.2f}x per step; it pays for its compilation after "
              f"{even:,.0f} steps")
    else:
        print(f"XLA: {step_off / step_on:.2f}x per step: no faster")


if __name__ == "__main__":
    main()
