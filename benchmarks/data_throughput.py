"""Input pipeline throughput against what the model consumes: is tf.data the bottleneck?

For each configuration, the same tokenizer and `keras_llm.data` pipeline are
measured twice in one process:

- pipeline tokens/s: the dataset is iterated alone, with no model running,
  for `--batches` batches after `--warmup` untimed ones (the first batch
  waits for the shuffle buffers to fill; BytePairTokenizer's word cache
  fills during the warm-up and the first pass over the corpus);
- model tokens/s: `--warmup` + `--steps` batches are taken from the same
  iterator into memory, then `model.train_on_batch(x, y, sample_weight=w)`
  runs once per batch; the first `--warmup` steps (tracing) are not timed.

Tokens are `batch x sequence` positions in both columns, padding included
(BERT's examples are padded to the full sequence). The ratio pipeline /
model is how many times faster the pipeline produces batches than the
model trains on them: above 1 the pipeline keeps up, and 1 / ratio is
roughly the share of the CPU it takes away from training when both run
together under `fit` (on this 2-core sandbox they share the same cores).
Steps run through `train_on_batch`, the same compiled train function as
`fit`, because `fit` step times on the sandbox are quantised to ~0.51 s
(see `train_throughput.py`). The last line gives the CPU seconds that other
processes used during the run: on a shared machine, a table is only clean
when that is near 0.

Configurations: `gpt_nano` on `causal_lm_dataset` with a byte-level BPE of
`--vocab` tokens trained on the corpus (`train_byte_pair`,
`BytePairTokenizer`) and with `ByteTokenizer` (258 ids, `keras-llm
train`'s default for GPT); `bert_small` on `masked_lm_dataset` with a WordPiece
vocabulary trained on the corpus (`train_word_piece`,
`WordPieceTokenizer`). The corpus is `--data` read by `load_texts` (one
element per line: documents for causal LM, segments for masked LM), or the
embedded default corpus when the file is absent. Models keep the builders'
compile settings (`compile_model`'s defaults, XLA off on CPU).

Usage:
    python benchmarks/data_throughput.py            # the table in RESULTS.md
    python benchmarks/data_throughput.py --batches 50 --steps 2   # quick look
"""

import argparse
import os
import resource
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_llm  # noqa: E402

DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "tinyshakespeare.txt"
)

FLAGS = {
    "--data": dict(
        default=DEFAULT_DATA,
        help="Text file, one element per line; the embedded default corpus if absent.",
    ),
    "--vocab": dict(type=int, default=8192, help="Trained BPE and WordPiece vocabulary size."),
    "--batch": dict(type=int, default=32, help="Sequences per batch."),
    "--seq": dict(type=int, default=128, help="Tokens per sequence."),
    "--batches": dict(type=int, default=1000, help="Timed pipeline batches per row."),
    "--steps": dict(type=int, default=10, help="Timed train_on_batch steps per row."),
    "--warmup": dict(type=int, default=3, help="Untimed batches and steps per row."),
    "--seed": dict(type=int, default=0, help="Seed of the pipelines and of the model weights."),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    return parser.parse_args()


def cpu_seconds():
    """(busy CPU seconds of the whole machine, of this process); None where /proc is absent."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system, irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK"), usage.ru_utime + usage.ru_stime


def pipeline_and_model_speed(dataset, model, args):
    """(pipeline tokens/s, model tokens/s) for one dataset and model."""
    tokens_per_batch = args.batch * args.seq
    batches = iter(dataset)
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    pipeline = args.batches * tokens_per_batch / (time.perf_counter() - start)

    held = [next(batches) for _ in range(args.warmup + args.steps)]  # in memory
    del batches  # stop the pipeline's threads: the model is timed alone
    for x, y, w in held[: args.warmup]:
        model.train_on_batch(x, y, sample_weight=w)
    start = time.perf_counter()
    for x, y, w in held[args.warmup :]:
        model.train_on_batch(x, y, sample_weight=w)
    consumed = args.steps * tokens_per_batch / (time.perf_counter() - start)
    return pipeline, consumed


def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    if os.path.isfile(args.data):
        texts = keras_llm.data.load_texts(args.data)
        corpus = os.path.normpath(args.data)
    else:
        texts = keras_llm.data.load_texts(None)
        corpus = f"the embedded default corpus ({args.data} not found)"
    print(
        f"corpus: {corpus}, {int(texts.cardinality()):,} elements; batch {args.batch}, "
        f"sequence {args.seq}; pipeline: {args.batches} batches, model: {args.steps} "
        f"train_on_batch steps, after {args.warmup} warm-up each\n"
    )
    cpu_at_start = cpu_seconds()
    pipeline_options = dict(
        sequence_length=args.seq, batch_size=args.batch, seed=args.seed, repeat=True
    )
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        vocab_json, merges_txt = keras_llm.tokenizers.train_byte_pair(
            texts, args.vocab, os.path.join(directory, "bpe")
        )
        vocab_txt = keras_llm.tokenizers.train_word_piece(
            texts, args.vocab, os.path.join(directory, "word_piece")
        )
        byte_pair = keras_llm.tokenizers.BytePairTokenizer(vocab_json, merges_txt)
        gpt_tokenizers = [
            (f"BytePairTokenizer ({byte_pair.vocabulary_size})", byte_pair),
            ("ByteTokenizer (258)", keras_llm.tokenizers.ByteTokenizer()),
        ]
        for label, tokenizer in gpt_tokenizers:
            dataset = keras_llm.data.causal_lm_dataset(texts, tokenizer, **pipeline_options)
            # build_gpt compiles with keras_llm.compile_model(model, "causal_lm").
            model = keras_llm.build_gpt("gpt_nano", vocabulary_size=tokenizer.vocabulary_size)
            rows.append(("gpt_nano", label, *pipeline_and_model_speed(dataset, model, args)))
        tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocab_txt)
        dataset = keras_llm.data.masked_lm_dataset(texts, tokenizer, **pipeline_options)
        model = keras_llm.build_bert_pretrainer(
            "bert_small", vocabulary_size=tokenizer.vocabulary_size
        )
        label = f"WordPieceTokenizer ({tokenizer.vocabulary_size})"
        rows.append(("bert_small", label, *pipeline_and_model_speed(dataset, model, args)))

    print("| config | tokenizer | pipeline tokens/s | model tokens/s | pipeline/model |")
    print("|" + "---|" * 5)
    for config, label, pipeline, consumed in rows:
        print(
            f"| {config} | {label} | {pipeline:,.0f} | {consumed:,.0f} | "
            f"{pipeline / consumed:,.1f} |"
        )
    # Other processes on the machine slow both columns: on a shared sandbox,
    # trust a table only when they used next to no CPU during the run.
    cpu_at_end = cpu_seconds()
    if cpu_at_start and cpu_at_end:
        others = (cpu_at_end[0] - cpu_at_start[0]) - (cpu_at_end[1] - cpu_at_start[1])
        print(f"\nCPU seconds used by other processes during the run: {max(others, 0):.0f}")


if __name__ == "__main__":
    main()
