"""Training throughput of keras_llm's GPT and BERT against keras-hub's.

Same sizes, same batch, same optimizer, loss and metric, the same data, in
one process; the two libraries' models are timed alternately for several
rounds and the median is reported, so machine noise hits both alike. Prints
tokens per second, the ratio keras_llm / keras-hub, and the model FLOPs
utilisation (MFU) against this machine's measured float32 matmul throughput.

FLOPs per trained token follow the usual accounting (Kaplan et al. 2020;
nanoGPT's `estimate_mfu`): 6 x the parameters a token passes through in a
matmul (forward 2, backward 4) plus 12 x layers x hidden x sequence for the
attention scores and weighted sum. Embedding lookups are not matmuls; the tied
output projection is, and counts only for the positions that have a loss
(every position for GPT, the masked ones for BERT).

Usage:
    python benchmarks/train_throughput.py            # the table in RESULTS.md
    python benchmarks/train_throughput.py --rounds 1 --steps 5   # quick look
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
from matmul_peak import measure_matmul_flops  # noqa: E402  (benchmarks/, beside this script)

FLAGS = {
    "--layers": dict(type=int, default=4, help="Transformer blocks."),
    "--hidden": dict(type=int, default=256, help="Hidden width."),
    "--heads": dict(type=int, default=4, help="Attention heads."),
    "--intermediate": dict(type=int, default=1024, help="Feed-forward width."),
    "--vocab": dict(type=int, default=8192, help="Vocabulary size."),
    "--batch": dict(type=int, default=16, help="Sequences per step."),
    "--seq": dict(type=int, default=128, help="Tokens per sequence."),
    "--predictions": dict(type=int, default=20, help="Masked positions per BERT sequence."),
    "--dropout": dict(type=float, default=0.1, help="Dropout rate for both libraries."),
    "--steps": dict(type=int, default=20, help="Timed steps per round."),
    "--rounds": dict(type=int, default=3, help="Alternating rounds; the median is kept."),
    "--jit": dict(choices=["off", "on", "both"], default="both", help="XLA compilation."),
    "--models": dict(default="gpt,bert", help="Comma-separated: gpt, bert."),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    return parser.parse_args()


def gpt_models(args):
    sizes = dict(
        vocabulary_size=args.vocab, num_layers=args.layers, num_heads=args.heads,
        hidden_dim=args.hidden, intermediate_dim=args.intermediate,
        max_sequence_length=args.seq, dropout=args.dropout,
    )
    ours = keras_llm.build_gpt(**sizes)
    backbone = keras_hub.models.GPT2Backbone(**sizes)
    theirs = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab, size=(args.batch, args.seq + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((args.batch, args.seq), "int32")}
    data = (x, ids[:, 1:], np.ones((args.batch, args.seq), "float32"))
    return ours, theirs, data, data, 1.0


def bert_models(args):
    sizes = dict(
        vocabulary_size=args.vocab, num_layers=args.layers, num_heads=args.heads,
        hidden_dim=args.hidden, intermediate_dim=args.intermediate,
        max_sequence_length=args.seq, dropout=args.dropout,
    )
    ours = keras_llm.build_bert_pretrainer(**sizes)
    backbone = keras_hub.models.BertBackbone(**sizes)
    theirs = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    rng = np.random.default_rng(0)
    b, t, p = args.batch, args.seq, args.predictions
    x = {
        "token_ids": rng.integers(0, args.vocab, size=(b, t)).astype("int32"),
        "segment_ids": np.zeros((b, t), "int32"),
        "padding_mask": np.ones((b, t), "int32"),
        "mask_positions": np.sort(
            np.stack([rng.choice(t, p, replace=False) for _ in range(b)]), axis=1
        ).astype("int32"),
    }
    masked_ids = rng.integers(0, args.vocab, size=(b, p)).astype("int32")
    weights = np.ones((b, p), "float32")
    ours_data = (
        x,
        {"mlm_logits": masked_ids, "nsp_logits": np.zeros((b,), "int32")},
        {"mlm_logits": weights, "nsp_logits": np.ones((b,), "float32")},
    )
    theirs_x = {k: v for k, v in x.items()}
    return ours, theirs, ours_data, (theirs_x, masked_ids, weights), p / t


def compile_same(model, jit, multi_output):
    """The same optimizer, loss and metric for both libraries."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.01, global_clipnorm=1.0)
    if multi_output:
        model.compile(
            optimizer=optimizer,
            loss={"mlm_logits": loss, "nsp_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
            weighted_metrics={"mlm_logits": [metric]},
            jit_compile=jit,
        )
    else:
        model.compile(optimizer=optimizer, loss=loss, weighted_metrics=[metric], jit_compile=jit)


def time_steps(model, data, steps):
    """Seconds for `steps` training steps, after one untimed step that traces.

    Steps run through `train_on_batch`, i.e. the same compiled train function
    as `fit`, on one batch already in memory, so input pipelines play no part.
    (On the sandboxed CPU where RESULTS.md was measured, `fit` over a
    `tf.data` iterator showed per-step times quantised to ~0.51 s for both
    libraries alike, hiding any difference; `train_on_batch` did not.)
    """
    x, y, sample_weight = keras.tree.map_structure(tf.convert_to_tensor, data)
    model.train_on_batch(x, y, sample_weight)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y, sample_weight)
    return time.perf_counter() - start


def matmul_params(model, vocab, hidden):
    """Parameters in matmuls, excluding the embedding tables (counted apart)."""
    total = 0
    for weight in model.trainable_weights:
        if len(weight.shape) >= 2 and vocab not in weight.shape:
            total += int(np.prod(weight.shape))
    return total


def main():
    args = parse_args()
    peak = measure_matmul_flops()
    print(f"float32 matmul throughput of this machine: {peak / 1e9:.1f} GFLOP/s")
    print(
        f"config: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, "
        f"feed-forward {args.intermediate}, vocabulary {args.vocab}, batch {args.batch}, "
        f"sequence {args.seq}, dropout {args.dropout}, AdamW, {args.steps} steps x "
        f"{args.rounds} rounds (median)\n"
    )
    rows = []
    jit_modes = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
    builders = {"gpt": gpt_models, "bert": bert_models}
    for name in args.models.split(","):
        for jit in jit_modes:
            ours, theirs, ours_data, theirs_data, head_fraction = builders[name](args)
            compile_same(ours, jit, multi_output=name == "bert")
            compile_same(theirs, jit, multi_output=False)
            times = {"keras_llm": [], "keras_hub": []}
            for _ in range(args.rounds):
                times["keras_llm"].append(time_steps(ours, ours_data, args.steps))
                times["keras_hub"].append(time_steps(theirs, theirs_data, args.steps))
            tokens = args.batch * args.seq * args.steps
            flops_per_token = (
                6 * matmul_params(ours, args.vocab, args.hidden)
                + 6 * args.vocab * args.hidden * head_fraction
                + 12 * args.layers * args.hidden * args.seq
            )
            speed = {k: tokens / statistics.median(v) for k, v in times.items()}
            rows.append((
                name, "on" if jit else "off", speed["keras_llm"], speed["keras_hub"],
                speed["keras_llm"] / speed["keras_hub"],
                speed["keras_llm"] * flops_per_token / peak,
                speed["keras_hub"] * flops_per_token / peak,
            ))
    header = "| model | XLA | keras_llm tok/s | keras-hub tok/s | ratio | MFU keras_llm | MFU keras-hub |"
    print(header)
    print("|" + "---|" * 7)
    for row in rows:
        print(
            f"| {row[0]} | {row[1]} | {row[2]:,.0f} | {row[3]:,.0f} | {row[4]:.2f} | "
            f"{row[5]:.1%} | {row[6]:.1%} |"
        )


if __name__ == "__main__":
    main()
