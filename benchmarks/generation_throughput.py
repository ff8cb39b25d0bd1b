"""Generation speed of keras_llm's cached decoder against keras-hub's GPT2CausalLM.

Same backbone sizes (gpt_nano by default: 4 layers, 4 heads, width 128, a
258-token vocabulary), the same random prompts, greedy decoding of the same
number of new tokens, in one process; both libraries are timed alternately
for several rounds and the median is kept, so machine noise hits both alike.
keras-hub is called as its docs show for token ids: `GPT2CausalLM` with no
preprocessor, `compile(sampler="greedy")`, `generate({"token_ids",
"padding_mask"}, stop_token_ids=None)` with the prompt right-padded to prompt
+ new tokens (keras-hub generates up to the padded length). keras-hub runs
twice: as compiled by default (Keras's `jit_compile="auto"`, which on a CPU
means no XLA) and with `compile(jit_compile=True)`, its fastest setting;
keras_llm's `Generator` compiles its loop with XLA by default. All are warmed
up (compiled) before timing.

Prints new tokens per second at each batch size and the ratios keras_llm /
keras-hub.

Usage:
    python benchmarks/generation_throughput.py               # the table in RESULTS.md
    python benchmarks/generation_throughput.py --rounds 1    # quick look
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_llm  # noqa: E402

FLAGS = {
    "--preset": dict(default="gpt_nano", help="A keras_llm GPT preset giving the sizes."),
    "--batches": dict(default="1,8", help="Comma-separated batch sizes."),
    "--prompt": dict(type=int, default=16, help="Prompt tokens."),
    "--new": dict(type=int, default=128, help="New tokens per prompt."),
    "--rounds": dict(type=int, default=3, help="Alternating rounds; the median is kept."),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    return parser.parse_args()


def build_models(preset):
    sizes = keras_llm.GPT_PRESETS[preset]
    ours = keras_llm.build_gpt(preset)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=sizes["vocabulary_size"],
        num_layers=sizes["num_layers"],
        num_heads=sizes["num_heads"],
        hidden_dim=sizes["hidden_dim"],
        intermediate_dim=sizes["intermediate_dim"],
        max_sequence_length=sizes["max_sequence_length"],
        dropout=0.0,
    )
    theirs = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    theirs.compile(sampler="greedy")
    theirs_xla = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    theirs_xla.compile(sampler="greedy", jit_compile=True)
    return ours, theirs, theirs_xla


def timers(ours, theirs, theirs_xla, batch, prompt, new, seed):
    rng = np.random.default_rng(seed)
    vocabulary = ours.vocabulary_size
    prompts = rng.integers(0, vocabulary - 2, size=(batch, prompt)).astype("int32")
    generator = keras_llm.generation.Generator(ours)
    padded = np.zeros((batch, prompt + new), "int32")
    padded[:, :prompt] = prompts
    mask = np.zeros_like(padded)
    mask[:, :prompt] = 1

    def run_ours():
        out = generator.generate(list(prompts), new, stop_token_ids=[])
        assert all(len(row) == new for row in out)

    def run(model):
        def run_theirs():
            out = model.generate({"token_ids": padded, "padding_mask": mask}, stop_token_ids=None)
            assert np.asarray(out["token_ids"]).shape == (batch, prompt + new)

        return run_theirs

    return {"keras_llm": run_ours, "keras-hub": run(theirs), "keras-hub XLA": run(theirs_xla)}


def main():
    args = parse_args()
    keras.utils.set_random_seed(0)
    ours, theirs, theirs_xla = build_models(args.preset)
    print(f"{args.preset}: prompt {args.prompt} tokens, {args.new} new tokens, greedy; "
          f"TF {tf.__version__}, keras-hub {keras_hub.__version__}")
    print("| batch | keras_llm new tok/s | keras-hub (default) | ratio | keras-hub (XLA) | ratio |")
    print("|---|---|---|---|---|---|")
    for batch in [int(b) for b in args.batches.split(",")]:
        runs = timers(ours, theirs, theirs_xla, batch, args.prompt, args.new, seed=batch)
        for run in runs.values():  # compile
            run()
        seconds = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
        rate = {name: batch * args.new / statistics.median(s) for name, s in seconds.items()}
        ours_rate = rate["keras_llm"]
        print(f"| {batch} | {ours_rate:,.0f} | {rate['keras-hub']:,.0f} | "
              f"{ours_rate / rate['keras-hub']:.2f}x | {rate['keras-hub XLA']:,.0f} | "
              f"{ours_rate / rate['keras-hub XLA']:.2f}x |")


if __name__ == "__main__":
    main()
