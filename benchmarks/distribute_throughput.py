"""Training throughput of keras_llm's GPT under tf.distribute, against no strategy.

Rows: no strategy at all (the anchor); `MirroredStrategy` over one device (what
the strategy machinery costs by itself); `MirroredStrategy` over two devices
with the same global batch. On a CPU the two devices are the physical CPU split
into two logical devices; with two or more GPUs they are GPUs 0 and 1; with one
GPU that row is skipped. Each runs with XLA off and on. Each row is measured in
its own subprocess of this script, because logical devices must be configured
before TensorFlow initialises its runtime; the parent collects one JSON line
from each child and prints the table.

Timing. Steps run through `train_on_batch` on one batch held in memory, after a
one-step `fit` and `--warmup` untimed steps; the median of `--rounds` rounds of
`--steps` steps is reported. (On the sandboxed CPU of RESULTS.md, `fit` over a
`tf.data` iterator showed per-step times quantised to ~0.51 s, hiding
differences; `train_on_batch` does not.) Under a `MirroredStrategy`, Keras 3's
`train_on_batch` hands the batch to `strategy.run` as it is, and `strategy.run`
gives a value that is not distributed to every replica whole: with plain
tensors, N replicas would each train on the whole global batch. So the batch
is split once with `strategy.experimental_distribute_dataset` (one slice
placed on each device) and `train_on_batch` gets those per-replica values. The
one-step `fit` before it builds the metrics and optimizer, which
`train_on_batch` cannot do from per-replica values (it reads `.shape`). The
"per-replica batch" column is the batch size `train_step` was traced with:
the proof that the batch was split.

XLA with two replicas fails in Keras 3: `jit_compile=True` compiles the
function that calls `strategy.run`, so one XLA cluster on the first device
would read variables held on the second, which TensorFlow refuses ("Trying to
access resource ... located in device ...:1 from device ...:0";
keras-team/keras#19005). The row says so instead of a number.

On a CPU the two logical devices share the same cores and thread pools, so the
two-replica row measures what splitting the batch and all-reducing the
gradients costs, not a speed-up.

GPU mode (on by default when a GPU is visible; `--gpt2-small` forces it,
`--no-gpt2-small` skips it): the `gpt2_small` preset in `mixed_bfloat16` with
XLA, no strategy, and its model FLOPs utilisation (MFU) against the GPU's
measured bfloat16 matmul throughput. FLOPs per trained token (Kaplan et al.
2020; nanoGPT's `estimate_mfu`): 6 x the parameters a token passes through in
a matmul (forward 2, backward 4), here every kernel plus the tied output
projection (vocabulary x hidden; the embedding lookups are not matmuls), plus
12 x layers x hidden x sequence for the attention scores and weighted sum.

Usage:
    python benchmarks/distribute_throughput.py                # the full table
    python benchmarks/distribute_throughput.py --steps 3 --rounds 1 --warmup 1 --layers 1  # quick look
    python benchmarks/distribute_throughput.py --gpt2-small   # add gpt2_small MFU on any machine
"""

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
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
    "--batch": dict(type=int, default=16, help="Global batch: sequences per step over all replicas."),
    "--seq": dict(type=int, default=128, help="Tokens per sequence."),
    "--dropout": dict(type=float, default=0.0, help="Dropout rate."),
    "--steps": dict(type=int, default=10, help="Timed steps per round."),
    "--rounds": dict(type=int, default=3, help="Timed rounds per row; the median is kept."),
    "--warmup": dict(type=int, default=2, help="Untimed train_on_batch steps before timing (at least 1 runs)."),
    "--jit": dict(choices=["off", "on", "both"], default="both", help="XLA compilation."),
    "--gpt2-small": dict(
        action=argparse.BooleanOptionalAction, default=None,
        help="Measure gpt2_small (mixed_bfloat16, XLA) and its MFU; default: when a GPU is visible.",
    ),
    "--gpt2-batch": dict(type=int, default=16, help="gpt2_small: sequences per step."),
    "--gpt2-seq": dict(type=int, default=1024, help="gpt2_small: tokens per sequence (at most 1024)."),
    "--matmul-size": dict(type=int, default=8192, help="Side of the bf16 matmul measuring peak."),
    # Internal: what one child process measures, as JSON.
    "--child": dict(default=None, help=argparse.SUPPRESS),
}

SETUPS = {
    "no strategy": dict(strategy=None, replicas=1),
    "MirroredStrategy, 1 replica": dict(strategy="mirrored", replicas=1),
    "MirroredStrategy, 2 replicas": dict(strategy="mirrored", replicas=2),
}
RESULT_PREFIX = "RESULT "


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    args = parser.parse_args()
    if args.batch % 2:
        parser.error(f"--batch must split evenly over 2 replicas. Received: batch={args.batch}")
    max_positions = keras_llm.GPT_PRESETS["gpt2_small"]["max_sequence_length"]
    if not 1 <= args.gpt2_seq <= max_positions:
        parser.error(f"--gpt2-seq must be in [1, {max_positions}]. Received: gpt2_seq={args.gpt2_seq}")
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error(
            "Expected --steps >= 1, --rounds >= 1, --warmup >= 0. Received: "
            f"steps={args.steps}, rounds={args.rounds}, warmup={args.warmup}"
        )
    return args


def machine():
    """A line each for the CPU, GPUs and library versions."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    ]
    return [
        f"CPU: {cpu}, {cores} cores usable",
        f"GPUs: {', '.join(gpus) if gpus else 'none'}",
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}",
    ]


def flops_per_token(model, vocab, hidden, layers, seq):
    """Training FLOPs per token: 6 x matmul parameters + attention (see the module docstring)."""
    kernels = sum(int(np.prod(w.shape)) for w in model.trainable_weights if w.path.endswith("kernel"))
    return 6 * (kernels + vocab * hidden) + 12 * layers * hidden * seq


def short_error(error):
    """The line of an exception that says what went wrong, not where."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("[[", "Cf."))]
    line = lines[-1] if lines else ""
    # TensorFlow's long forms: where a variable was created, the full device name.
    line = re.sub(r" \(defined @ [^)]*\)", "", line)
    line = line.replace("/job:localhost/replica:0/task:0/device:", "")
    return f"{type(error).__name__}: {line}"[:300]


def measure(args, spec):
    """Runs in a child process: builds, trains and times one row; returns a dict."""
    gpus = tf.config.list_physical_devices("GPU")
    replicas = spec["replicas"]
    if spec["strategy"] and replicas > 1 and not gpus:
        # Must precede anything that initialises the runtime.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
        )
    kind = "gpu" if gpus else "cpu"
    strategy = None
    if spec["strategy"] == "mirrored":
        strategy = tf.distribute.MirroredStrategy([f"/{kind}:{i}" for i in range(replicas)])

    if spec["model"] == "gpt2_small":
        peak = measure_matmul_flops("bfloat16", args.matmul_size)
        sizes = keras_llm.GPT_PRESETS["gpt2_small"]
        vocab, hidden, layers = sizes["vocabulary_size"], sizes["hidden_dim"], sizes["num_layers"]
        batch, seq = args.gpt2_batch, args.gpt2_seq
        build = dict(preset="gpt2_small", precision="mixed_bfloat16")
    else:
        peak = None
        vocab, hidden, layers, batch, seq = args.vocab, args.hidden, args.layers, args.batch, args.seq
        build = dict(
            vocabulary_size=vocab, num_layers=layers, num_heads=args.heads, hidden_dim=hidden,
            intermediate_dim=args.intermediate, max_sequence_length=seq, dropout=args.dropout,
        )

    with strategy.scope() if strategy else contextlib.nullcontext():
        model = keras_llm.build_gpt(**build)
        keras_llm.compile_model(model, "causal_lm", jit_compile=spec["jit"])

    # Records the batch each replica's train_step is traced with (trace time only).
    traced_batches = []
    train_step = model.train_step

    def recording_train_step(data):
        traced_batches.append(data[0]["token_ids"].shape[0])
        return train_step(data)

    model.train_step = recording_train_step

    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(batch, seq + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((batch, seq), "int32")}
    data = (x, ids[:, 1:], np.ones((batch, seq), "float32"))
    dataset = tf.data.Dataset.from_tensors(data)
    try:
        # One step through fit builds metrics and optimizer state the usual way.
        model.fit(dataset.repeat(), steps_per_epoch=1, epochs=1, verbose=0)
        if strategy:
            # One slice of the global batch on each replica's device.
            batch_data = next(iter(strategy.experimental_distribute_dataset(dataset)))
        else:
            batch_data = keras.tree.map_structure(tf.convert_to_tensor, data)
        for _ in range(max(args.warmup, 1)):
            model.train_on_batch(*batch_data)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(*batch_data)  # returns Python floats: waits for the step
            times.append(time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - the row reports it
        return dict(error=short_error(error))
    return dict(
        replicas=strategy.num_replicas_in_sync if strategy else 1,
        global_batch=batch,
        seq=seq,
        per_replica_batch=sorted(set(traced_batches)),
        tokens_per_s=batch * seq * args.steps / statistics.median(times),
        flops_per_token=flops_per_token(model, vocab, hidden, layers, seq),
        peak_flops=peak,
    )


def run_child(spec):
    """Measures one row in a fresh process and returns its dict."""
    command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return dict(error=f"child exited with {done.returncode}: {tail}"[:300])


def main():
    args = parse_args()
    if args.child:
        print(RESULT_PREFIX + json.dumps(measure(args, json.loads(args.child))))
        return

    num_gpus = len(tf.config.list_physical_devices("GPU"))
    for line in machine():
        print(line)
    print(
        f"config: GPT, {args.layers} layers, hidden {args.hidden}, {args.heads} heads, "
        f"feed-forward {args.intermediate}, vocabulary {args.vocab}, sequence {args.seq}, "
        f"dropout {args.dropout}, float32, keras_llm.compile_model defaults (AdamW); "
        f"train_on_batch, {args.warmup} warm-up + {args.steps} timed steps x {args.rounds} rounds "
        f"(median); devices: {'GPU' if num_gpus else 'CPU'}\n"
    )

    notes = []
    setups = list(SETUPS)
    if num_gpus == 1:
        setups.remove("MirroredStrategy, 2 replicas")
        notes.append("MirroredStrategy, 2 replicas: skipped, only one GPU is visible.")
    jit_modes = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
    results = {}
    for setup in setups:
        for jit in jit_modes:
            print(f"measuring: {setup}, XLA {'on' if jit else 'off'}", file=sys.stderr, flush=True)
            results[setup, jit] = run_child(dict(model="config", jit=jit, **SETUPS[setup]))

    columns = [
        "setup", "XLA", "replicas", "global batch", "per-replica batch", "tokens/s",
        "vs no strategy", "XLA on / off",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for (setup, jit), result in results.items():
        xla = "on" if jit else "off"
        if "error" in result:
            replicas = SETUPS[setup]["replicas"]
            print(f"| {setup} | {xla} | {replicas} | {args.batch} | | failed (below) | | |")
            notes.append(f"{setup}, XLA {xla}: {result['error']}")
            continue
        anchor = results.get(("no strategy", jit), {}).get("tokens_per_s")
        xla_off = results.get((setup, False), {}).get("tokens_per_s")
        vs_anchor = f"{result['tokens_per_s'] / anchor:.2f}" if anchor else ""
        vs_off = f"{result['tokens_per_s'] / xla_off:.2f}" if jit and xla_off else ""
        per_replica = "/".join(str(b) for b in result["per_replica_batch"])
        print(
            f"| {setup} | {xla} | {result['replicas']} | {result['global_batch']} | {per_replica} | "
            f"{result['tokens_per_s']:,.0f} | {vs_anchor} | {vs_off} |"
        )
    for note in notes:
        print(f"\n- {note}")

    if args.gpt2_small or (args.gpt2_small is None and num_gpus):
        print("measuring: gpt2_small, mixed_bfloat16, XLA on", file=sys.stderr, flush=True)
        result = run_child(dict(model="gpt2_small", jit=True, strategy=None, replicas=1))
        print(
            f"\ngpt2_small preset (dropout as in the preset), mixed_bfloat16, XLA on, no strategy, "
            f"batch {args.gpt2_batch}, sequence {args.gpt2_seq}; peak = measured bfloat16 "
            f"{args.matmul_size} x {args.matmul_size} tf.matmul\n"
        )
        if "error" in result:
            print(f"- gpt2_small: {result['error']}")
            return
        achieved = result["tokens_per_s"] * result["flops_per_token"]
        print("| model | tokens/s | GFLOPs/token | achieved TFLOP/s | peak bf16 TFLOP/s | MFU |")
        print("|" + "---|" * 6)
        print(
            f"| gpt2_small | {result['tokens_per_s']:,.0f} | {result['flops_per_token'] / 1e9:.2f} | "
            f"{achieved / 1e12:.1f} | {result['peak_flops'] / 1e12:.1f} | "
            f"{achieved / result['peak_flops']:.1%} |"
        )


if __name__ == "__main__":
    main()
