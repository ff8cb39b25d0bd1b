"""What `model.fit` over keras_llm's input pipeline costs beyond the train step itself.

The anchor is `model.train_on_batch` on batches already in memory: the train
step and nothing else. Against it, in the same process and on the same
batches, this times:

- `fit` over `keras_llm.data.causal_lm_dataset` (what `keras-llm train`
  does): the pipeline tokenizes, packs and shuffles while the model trains;
- the same with tf.data's autotuning off (`Options.autotune.enabled`), the
  suspect when a pipeline's threads compete with the train step on few cores;
- `fit` over the same batches from memory (`Dataset.from_tensor_slices`):
  `fit`'s own overhead, with no pipeline work.

A mode's time is its mean step (the first step of each `fit` dropped), so
that bursts of pipeline work count; the modes alternate for several rounds
and the median round is kept, so machine noise hits all alike.

Usage:
    python benchmarks/fit_overhead.py                 # the table in RESULTS.md
    python benchmarks/fit_overhead.py --steps 10 --rounds 1   # quick look
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_llm  # noqa: E402

FLAGS = {
    "--preset": dict(default="gpt_nano", help="A GPT preset."),
    "--batch": dict(type=int, default=32, help="Sequences per step."),
    "--seq": dict(type=int, default=128, help="Tokens per sequence."),
    "--steps": dict(type=int, default=60, help="Timed steps per mode and round."),
    "--rounds": dict(type=int, default=3, help="Alternating rounds; the median is kept."),
}


class StepTimes(keras.callbacks.Callback):
    """Wall time of the train steps (batch end to batch end), the first one dropped."""

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())

    def per_step(self):
        return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)  # the mean


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = keras_llm.build_gpt(args.preset, precision="float32")
    texts = keras_llm.data.load_texts(None)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    pipeline = keras_llm.data.causal_lm_dataset(
        texts, tokenizer, args.seq, batch_size=args.batch, seed=0, repeat=True
    )
    no_autotune = tf.data.Options()
    no_autotune.autotune.enabled = False
    steps = args.steps + 1  # the first step of each fit is dropped
    batches = list(pipeline.take(steps))
    in_memory = tf.data.Dataset.from_tensor_slices(
        tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    ).repeat()

    def train_on_batch():
        model.train_on_batch(*batches[0])  # warm
        start = time.perf_counter()
        for x, y, w in batches[1:]:
            model.train_on_batch(x, y, sample_weight=w)
        return (time.perf_counter() - start) / (len(batches) - 1)

    def fit(dataset):
        timer = StepTimes()
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
        return timer.per_step()

    modes = {
        "train_on_batch (anchor)": train_on_batch,
        "fit over causal_lm_dataset": lambda: fit(pipeline),
        "the same, tf.data autotuning off": lambda: fit(pipeline.with_options(no_autotune)),
        "fit over the batches in memory": lambda: fit(in_memory),
    }
    fit(in_memory)  # trace fit's step once before timing
    results = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, run in modes.items():
            results[name].append(run())
    anchor = statistics.median(results["train_on_batch (anchor)"])
    print(f"{args.preset}, batch {args.batch} x {args.seq}, {args.steps} steps x {args.rounds} "
          f"rounds, {os.cpu_count()} CPUs")
    print("| mode | ms per step (median round) | rounds | / train_on_batch |")
    print("|---|---|---|---|")
    for name, times in results.items():
        median = statistics.median(times)
        rounds = ", ".join(f"{t * 1000:.0f}" for t in times)
        print(f"| {name} | {median * 1000:.0f} | {rounds} | {median / anchor:.2f}x |")


if __name__ == "__main__":
    main()
