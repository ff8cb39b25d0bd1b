"""How long `keras_llm.export` and a Generator's first call take, with and without autograph.

keras_llm's decoding loops, serving signatures and core-ops tokenizers are
graph code, traced by `keras_llm._graph.graph_function` (`tf.function` with
`autograph=False`). The anchor is the same code under a plain `tf.function`
(autograph on, TensorFlow's default), which converts the source of every
function the trace calls, the model's layers included. Each mode runs in a
fresh process (the conversion caches nothing across processes), the two
alternating for several rounds; the median is kept and the outputs of both
are checked equal. The ratio is what to compare between machines.

Usage:
    python benchmarks/export_time.py              # 3 rounds
    python benchmarks/export_time.py --rounds 1   # quick look
"""

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

FLAGS = {
    "--rounds": dict(type=int, default=3, help="Timed processes of each mode."),
}

# One process: the mode's tf.function, then each case's export time and, for the
# GPT, its Generator's first (tracing) call; the outputs, to compare the modes.
CASE = textwrap.dedent(
    """
    import json, sys, tempfile, time
    import tensorflow as tf
    if sys.argv[1] == "autograph":  # the anchor: tf.function as TensorFlow defaults it
        plain = tf.function
        tf.function = lambda *a, **k: plain(*a, **{**k, "autograph": True})
    import keras
    import keras_llm
    directory, result = tempfile.mkdtemp(), {}
    keras.utils.set_random_seed(0)
    gpt = keras_llm.build_gpt("gpt_nano", num_layers=2, max_sequence_length=64,
                              tokenizer=keras_llm.tokenizers.ByteTokenizer())
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    classifier = keras_llm.build_bert_classifier(
        "bert_tiny", num_classes=2, num_layers=2, max_sequence_length=64,
        tokenizer=keras_llm.tokenizers.WordPieceTokenizer(words))
    for name, model, settings in [("GPT nano, 2 layers", gpt, dict(max_new_tokens=8)),
                                  ("BERT tiny classifier, 2 layers", classifier, {})]:
        start = time.perf_counter()
        path = keras_llm.export(model, f"{directory}/{len(result)}", **settings)
        result[f"export: {name}"] = time.perf_counter() - start
        served = tf.saved_model.load(path).signatures["serving_default"]
        result[f"outputs: {name}"] = {
            k: v.numpy().tolist() for k, v in served(tf.constant(["good film", "Hi"])).items()
            if v.dtype != tf.string}
    start = time.perf_counter()
    result["output: first generate"] = keras_llm.generate(gpt, ["Hello", "a"], 8)
    result["first keras_llm.generate: GPT nano (XLA loop)"] = time.perf_counter() - start
    print(json.dumps(result))
    """
)


def _run(mode):
    done = subprocess.run([sys.executable, "-c", CASE, mode], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, spec in FLAGS.items():
        parser.add_argument(flag, **spec)
    args = parser.parse_args()
    runs = {"autograph": [], "graph": []}
    for _ in range(args.rounds):
        for mode in runs:
            runs[mode].append(_run(mode))
    timed = [k for k in runs["graph"][0] if not k.startswith("output")]
    for key in runs["graph"][0]:
        if key.startswith("output"):
            assert runs["graph"][0][key] == runs["autograph"][0][key], key
    print(f"| {'seconds (median of ' + str(args.rounds) + ')':<52} | autograph (anchor) | "
          "graph_function (ours) | ours / anchor |")
    print(f"|{'-' * 54}|{'-' * 20}|{'-' * 23}|{'-' * 15}|")
    for key in timed:
        anchor = statistics.median(run[key] for run in runs["autograph"])
        ours = statistics.median(run[key] for run in runs["graph"])
        print(f"| {key:<52} | {anchor:>18.2f} | {ours:>21.2f} | {ours / anchor:>13.2f} |")
    print("outputs of the two modes: equal")


if __name__ == "__main__":
    main()
