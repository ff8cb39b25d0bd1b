"""Latency of an exported SavedModel against calling the Keras model directly.

Two models, each exported with `keras_llm.export`, reloaded in the same
process with `tf.saved_model.load` and called through its `serving_default`
signature on raw text, against the same model called from Python on the
same inputs:

- a `bert_small` classifier (2 classes, a WordPiece vocabulary learned
  here from SST-2 sentences or synthetic ones). Direct: the tensorflow-text
  `WordPieceTokenizer`, `[CLS] ids [SEP]` packed in NumPy (truncated to the
  model's 128 positions, padded with 0 to the batch's longest row, as the
  export does), `model.predict_on_batch`, softmax. The export holds the
  core-ops twin of the tokenizer (same ids, no tensorflow-text ops).
- `gpt_nano` greedy generation of `--new-tokens` tokens with no stop
  token, from `ByteTokenizer` prompts of 8-32 bytes (one XLA shape bucket),
  exported twice: as by default (a plain-graph loop) and with
  `jit_compile=True` (the loop XLA-compiled per shape bucket). Direct:
  `Generator.generate`, XLA-compiled (its default) and with
  `jit_compile=False`, the same two loops called from Python.

Every path is warmed up (traced, compiled) before timing, and its outputs
are checked against the served ones. Latency is per request at batch 1
(p50, p99 of `--requests` requests); throughput is over `--batches`
batches of `--batch-size` (texts/s for the classifier, new tokens/s for
the GPT). Weights are random: only speed is measured. On a GPU, Keras's
`predict_on_batch` is XLA-compiled and compiles again for every new padded
length, which the warm-up does not cover.

Usage:
    python benchmarks/serving_latency.py                             # full size
    python benchmarks/serving_latency.py --requests 20 --batches 3   # quick look
"""

import argparse
import csv
import os
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_llm  # noqa: E402

FLAGS = {
    "--requests": dict(type=int, default=200, help="Timed single requests per path (batch 1)."),
    "--batches": dict(type=int, default=30, help="Timed batches per path for throughput."),
    "--batch-size": dict(type=int, default=32, help="Texts per batch for throughput."),
    "--new-tokens": dict(type=int, default=32, help="New tokens per GPT prompt."),
    "--vocabulary": dict(type=int, default=2000, help="WordPiece vocabulary size to learn."),
    "--data": dict(default="/work/shared/data", help="Has sst2_train.tsv, tinyshakespeare.txt."),
}
SEQUENCE_LENGTH = 128


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    return parser.parse_args()


def sentences(data, count):
    """SST-2 training sentences, or synthetic ones if the file is missing."""
    path = os.path.join(data, "sst2_train.tsv")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:  # header: label, sentence
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            return [row["sentence"] for row in rows][:count]
    rng = np.random.default_rng(0)
    words = "the a movie film plot actor is was very not quite good bad funny dull long".split()
    return [" ".join(rng.choice(words, size=rng.integers(4, 25))) for _ in range(count)]


def prompts(data, count):
    """Lines of 8-32 bytes (one XLA bucket) from tinyshakespeare, or synthetic ones."""
    path = os.path.join(data, "tinyshakespeare.txt")
    lines = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            lines = [line.strip()[:32] for line in f if len(line.strip()) >= 8][:count]
    return lines or [f"Prompt number {n} says" for n in range(count)]


def timed(call, inputs):
    """The seconds each call took."""
    seconds = []
    for x in inputs:
        start = time.perf_counter()
        call(x)
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def measure(call, singles, batches, items_per_batch):
    """(p50 ms, p99 ms) at batch 1 and items per second over `batches`."""
    # Warm-up: traces and XLA compiles; a few lengths, as Keras's predict
    # function traces again (with unknown shapes) for a second length.
    for x in singles[:3] + batches[:2]:
        call(x)
    latency = timed(call, singles) * 1e3
    rate = len(batches) * items_per_batch / timed(call, batches).sum()
    return np.percentile(latency, 50), np.percentile(latency, 99), rate


def print_table(title, unit, batch_size, rows, anchor):
    """One row per path; the last columns divide its p50 and its throughput by `anchor`'s."""
    anchor_p50, _, anchor_rate = rows[anchor]
    print(f"\n{title}\n")
    print(f"| path | p50 ms (batch 1) | p99 ms (batch 1) | {unit} (batch {batch_size}) "
          f"| p50 / {anchor} | {unit} / {anchor} |")
    print("|---|---|---|---|---|---|")
    for name, (p50, p99, rate) in rows.items():
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {rate:,.0f} | {p50 / anchor_p50:.2f}x "
              f"| {rate / anchor_rate:.2f}x |")


def classifier(args, tmpdir, texts):
    vocab = keras_llm.tokenizers.train_word_piece(texts, args.vocabulary, tmpdir + "/vocab")
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab)
    model = keras_llm.build_bert_classifier(
        "bert_small", num_classes=2, vocabulary_size=tokenizer.vocabulary_size,
        max_sequence_length=SEQUENCE_LENGTH,
    )
    served = tf.saved_model.load(
        keras_llm.export(model, tmpdir + "/classifier", tokenizer)
    ).signatures["serving_default"]

    def serve(batch):
        return served(text=tf.constant(batch))["probabilities"].numpy()

    def direct(batch):
        rows = tokenizer(tf.constant(batch)).to_list()
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        rows = [[cls, *row[: SEQUENCE_LENGTH - 2], sep] for row in rows]
        lengths = np.array([len(row) for row in rows])
        token_ids = np.zeros((len(rows), lengths.max()), "int32")  # [B, T], padded with 0
        for n, row in enumerate(rows):
            token_ids[n, : len(row)] = row
        padding_mask = (np.arange(lengths.max())[None, :] < lengths[:, None]).astype("int32")
        inputs = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
                  "padding_mask": padding_mask}
        logits = np.asarray(model.predict_on_batch(inputs), "float64")
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    return serve, direct


def gpt(args, tmpdir):
    model = keras_llm.build_gpt("gpt_nano")
    tokenizer = keras_llm.tokenizers.ByteTokenizer()

    def served(jit_compile):
        path = keras_llm.export(
            model, f"{tmpdir}/gpt", tokenizer, max_new_tokens=args.new_tokens, stop_token_ids=[],
            jit_compile=jit_compile,
        )
        signature = tf.saved_model.load(path).signatures["serving_default"]

        def serve(batch):
            out = signature(text=tf.constant(batch))
            assert (out["generated_length"].numpy() == args.new_tokens).all()
            return [t.decode("utf-8") for t in out["generated_text"].numpy()]

        return serve

    def direct(generator):
        return lambda batch: generator.generate(batch, args.new_tokens, stop_token_ids=[])

    Generator = keras_llm.generation.Generator
    return {
        "served (plain graph, the default)": served(False),
        "served (`jit_compile=True`)": served(True),
        "Generator (XLA, its default)": direct(Generator(model, tokenizer)),
        "Generator (`jit_compile=False`)": direct(Generator(model, tokenizer, jit_compile=False)),
    }


def run(title, unit, paths, anchor, singles, batches, items_per_batch, agree):
    """Times each path; prints the table and how each path's outputs compare with the first's."""
    rows = {name: measure(call, singles, batches, items_per_batch) for name, call in paths.items()}
    first, *others = paths
    reference = paths[first](batches[0])
    checks = [f"{name}: {agree(reference, paths[name](batches[0]))}" for name in others]
    print_table(title, unit, len(batches[0]), rows, anchor)
    print(f"\nOn one batch, against {first}: " + "; ".join(checks))


def main():
    args = parse_args()
    size = args.batch_size
    keras.utils.set_random_seed(0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = [gpu.name for gpu in tf.config.list_physical_devices("GPU")] or ["none"]
    print(f"{cores} CPU cores usable, GPUs: {', '.join(gpus)}; "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}")
    needed = max(args.requests, args.batches * size)

    def split(items):  # singles for latency, batches for throughput
        items = (items * (needed // len(items) + 1))[:needed]
        return [[t] for t in items[: args.requests]], [
            items[i * size : (i + 1) * size] for i in range(args.batches)
        ]

    with tempfile.TemporaryDirectory() as tmpdir:
        texts = sentences(args.data, max(5000, needed))
        serve, direct = classifier(args, tmpdir, texts)
        singles, batches = split(texts)
        run(f"bert_small classifier, {len(texts)} sentences for the vocabulary", "texts/s",
            {"served SavedModel": serve, "Keras direct (predict_on_batch)": direct},
            "Keras direct (predict_on_batch)", singles, batches, size,
            lambda a, b: f"largest probability difference {np.abs(a - b).max():.1e}")

        singles, batches = split(prompts(args.data, needed))
        run(f"gpt_nano, greedy, {args.new_tokens} new tokens, prompts of 8-32 bytes", "new tok/s",
            gpt(args, tmpdir), "Generator (XLA, its default)", singles, batches,
            size * args.new_tokens,
            lambda a, b: f"{sum(x == y for x, y in zip(a, b))}/{len(a)} completions equal")


if __name__ == "__main__":
    main()
