"""Seq2seq generation speed: keras_llm's Generator against keras-hub's BartSeq2SeqLM.

The same BART-shaped model on both sides (learned positions, a LayerNorm after
the embeddings, post-norm blocks, GELU, a shared tied vocabulary) at the sizes
of the flags, random weights, the same random sources, greedy decoding of the
same number of new tokens with no stop token, in one process. keras-hub is
called as its docs show for token ids: `BartSeq2SeqLM` with no preprocessor,
`compile(sampler="greedy")`, `generate({...}, stop_token_ids=None)` with the
decoder input padded to start token + new tokens. keras-hub runs as compiled
by default (Keras's `jit_compile="auto"`: no XLA on a CPU) and with
`compile(jit_compile=True)`; keras_llm's Generator compiles with XLA by
default. Everything is warmed up (compiled) first; the libraries are timed
alternately for several rounds and the median kept. The last columns set both
against a floor (`matmul_floor`, timed in the same rounds): the same loop
doing only the matmuls of a step, whose weights it must read once per step.

A second table splits each library's time (keras_llm and keras-hub with XLA):
the same runs generating 1 token, timed in the same rounds, give the prefill
(the encoder, the cross-attention keys and values, the first step), and
(time for all tokens - time for 1) / (new tokens - 1) the cost of each
further step, next to the floor's step.

Usage:
    python benchmarks/seq2seq_generation.py               # the table in RESULTS.md
    python benchmarks/seq2seq_generation.py --rounds 1    # quick look
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
    "--layers": dict(type=int, default=4, help="Encoder and decoder layers (each)."),
    "--hidden": dict(type=int, default=256, help="Width."),
    "--heads": dict(type=int, default=4, help="Attention heads."),
    "--vocabulary": dict(type=int, default=8192, help="Shared vocabulary."),
    "--batches": dict(default="1,8", help="Comma-separated batch sizes."),
    "--source": dict(type=int, default=64, help="Source tokens."),
    "--new": dict(type=int, default=32, help="New tokens per source."),
    "--rounds": dict(type=int, default=3, help="Alternating rounds; the median is kept."),
}
START = 2  # BART's decoder start token


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    return parser.parse_args()


def build_models(args):
    sizes = dict(vocabulary_size=args.vocabulary, num_layers=args.layers, num_heads=args.heads,
                 hidden_dim=args.hidden, intermediate_dim=4 * args.hidden, dropout=0.0,
                 max_sequence_length=max(256, args.source + args.new + 1))
    ours = keras_llm.build_seq2seq(
        **sizes, position_embedding="learned", embedding_layer_norm=True, activation="gelu",
        scale_embeddings=False, layer_norm_epsilon=1e-5,
    )
    backbone = keras_hub.models.BartBackbone(**sizes)
    theirs = {}
    for name, jit_compile in (("keras-hub", "auto"), ("keras-hub XLA", True)):
        model = keras_hub.models.BartSeq2SeqLM(backbone=backbone, preprocessor=None)
        model.compile(sampler="greedy", jit_compile=jit_compile)
        theirs[name] = model
    return ours, theirs


def timers(ours, theirs, args, batch, new=None):
    """Runners generating `new` tokens (default `args.new`) for each library."""
    new = args.new if new is None else new
    rng = np.random.default_rng(batch)
    sources = rng.integers(3, args.vocabulary, size=(batch, args.source)).astype("int32")
    generator = keras_llm.generation.Generator(ours, start_token_id=START)
    decoder = np.zeros((batch, new + 1), "int32")
    decoder[:, 0] = START
    decoder_mask = np.zeros_like(decoder)
    decoder_mask[:, 0] = 1
    inputs = {"encoder_token_ids": sources, "encoder_padding_mask": np.ones_like(sources),
              "decoder_token_ids": decoder, "decoder_padding_mask": decoder_mask}

    def run_ours():
        out = generator.generate(list(sources), new, stop_token_ids=[])
        assert all(len(row) == new for row in out)
        return np.stack(out)

    def run(model):
        def run_theirs():
            out = model.generate(inputs, stop_token_ids=None)
            ids = np.asarray(out["decoder_token_ids"])
            assert ids.shape == (batch, new + 1)
            return ids[:, 1:]

        return run_theirs

    return {"keras_llm": run_ours, **{name: run(model) for name, model in theirs.items()}}


def matmul_floor(ours, args, batch):
    """A runner of the least a greedy step must do: its matmuls, nothing else.

    Per step, one XLA-compiled loop multiplies the batch's `[B, width]` state
    by every weight matrix that a decoding step of `ours` reads (each decoder
    block's self-attention query, key, value and output, cross-attention
    query and output, both feed-forward kernels; the tied output table), in
    a chain so that nothing can be hoisted out of the loop, and feeds the
    argmax token's embedding to the next step. No attention over the cache,
    no LayerNorm, no bias, no sampling: a floor for any implementation of
    this model in float32.
    """
    kernels = {}
    for weight in ours.weights:
        layer, _, name = weight.path.partition("/")
        if layer.startswith("decoder_layer_") and name.endswith("kernel") and not (
            name.startswith(("cross_attention_key", "cross_attention_value"))
        ):
            rows = 4 * args.hidden if name.startswith("feedforward_output") else args.hidden
            kernels.setdefault(layer, {})[name.split("/")[0]] = tf.reshape(weight, [rows, -1])
    table = ours.get_layer("target_embedding").embeddings

    @tf.function(jit_compile=True)
    def loop(state):
        def step(i, h):
            for k in kernels.values():
                a = (h @ k["self_attention_query"] + h @ k["self_attention_key"]
                     + h @ k["self_attention_value"])
                h = a @ k["self_attention_output"]
                h = (h @ k["cross_attention_query"]) @ k["cross_attention_output"]
                h = tf.tanh(h @ k["feedforward_intermediate_dense"]) @ k["feedforward_output_dense"]
            logits = tf.matmul(h, table, transpose_b=True)
            return i + 1, tf.gather(table, tf.argmax(logits, axis=-1))

        return tf.while_loop(lambda i, h: i < args.new, step, (0, state))[1]

    state = tf.random.normal([batch, args.hidden])
    return lambda: loop(state).numpy()


def main():
    args = parse_args()
    keras.utils.set_random_seed(0)
    ours, theirs = build_models(args)
    print(f"BART-shaped, {args.layers}+{args.layers} layers, width {args.hidden}, "
          f"{args.heads} heads, vocabulary {args.vocabulary}; {ours.count_params():,} parameters; "
          f"source {args.source} tokens, {args.new} new tokens, greedy; TF {tf.__version__}, "
          f"keras-hub {keras_hub.__version__}")
    print("| batch | keras_llm new tok/s | keras-hub (default) | ratio | keras-hub (XLA) | ratio "
          "| matmuls only (floor) | keras_llm / floor | keras-hub XLA / floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    split = []
    for batch in [int(b) for b in args.batches.split(",")]:
        runs = timers(ours, theirs, args, batch)
        runs["floor"] = matmul_floor(ours, args, batch)
        one = timers(ours, {"keras-hub XLA": theirs["keras-hub XLA"]}, args, batch, new=1)
        runs.update({f"{name}, 1 token": run for name, run in one.items()})
        for run in runs.values():  # compile
            run()
        seconds = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
        median = {name: statistics.median(s) for name, s in seconds.items()}
        rate = {name: batch * args.new / median[name] for name in ("keras_llm", "keras-hub",
                                                                    "keras-hub XLA", "floor")}
        ours_rate, floor = rate["keras_llm"], rate["floor"]
        print(f"| {batch} | {ours_rate:,.0f} | {rate['keras-hub']:,.0f} | "
              f"{ours_rate / rate['keras-hub']:.2f}x | {rate['keras-hub XLA']:,.0f} | "
              f"{ours_rate / rate['keras-hub XLA']:.2f}x | {floor:,.0f} | "
              f"{ours_rate / floor:.2f} | {rate['keras-hub XLA'] / floor:.2f} |")
        # Where the time goes: generating 1 token is the prefill (encoder, the
        # cross-attention keys and values, the first step); each further token
        # costs (time for all - time for 1) / (new - 1).
        parts = {}
        for name in ("keras_llm", "keras-hub XLA"):
            first = median[f"{name}, 1 token"]
            parts[name] = (first * 1e3, (median[name] - first) / (args.new - 1) * 1e3)
        split.append((batch, parts, median["floor"] / args.new * 1e3))
    print("\nWhere the time goes (ms; prefill = generating 1 token; step = each further token):")
    print("| batch | keras_llm prefill | keras_llm step | keras-hub XLA prefill "
          "| keras-hub XLA step | step ratio | floor step (matmuls only) |")
    print("|---|---|---|---|---|---|---|")
    for batch, parts, floor_step in split:
        (op, os_), (tp, ts) = parts["keras_llm"], parts["keras-hub XLA"]
        print(f"| {batch} | {op:.1f} | {os_:.2f} | {tp:.1f} | {ts:.2f} | {ts / os_:.2f}x "
              f"| {floor_step:.2f} |")

if __name__ == "__main__":
    main()
