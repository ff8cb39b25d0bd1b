"""Quantized models exported and served: every task from text in a TensorFlow-only process, with
int8 matmuls in the graph (and a GGUF-kept and a GPTQ decoder, without), and `keras-llm quantize`.

Each served answer is checked against the quantized model loaded from `.keras`, recomputed in
NumPy by the checks of tests/export/test_registry_exports.py (full passes, float64 softmax),
not against the export's own numbers."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.models import registry
from tests.export.test_registry_exports import CASES
from tests.models.test_registry import _examples
from tests.pretrained.test_gguf_kept_blocks import _write as write_gguf
from tests.test_cli import keras_llm_command
from tests.test_cli_commands import cli

pytestmark = pytest.mark.slow  # an export per task (10-25 s each on 2 cores), subprocesses
KEPT = "causal_lm_gguf_q4_kept"
GPTQ = "causal_lm_gptq"

TENSORFLOW_ONLY = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry
    before = set(sys.modules)  # `import tensorflow` itself imports parts of keras
    result = {}
    for name, (path, request) in json.loads(sys.stdin.read()).items():
        loaded = tf.saved_model.load(path)
        ops, int8_matmuls = set(), 0
        for signature in loaded.signatures.values():
            graph = signature.graph.as_graph_def()
            nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
            ops |= {n.op for n in nodes} - {f.signature.name for f in graph.library.function}
            int8_matmuls += sum(n.op.startswith("BatchMatMul") and n.attr["Ta"].type == tf.int8
                                for n in nodes)
        served = loaded.signatures["serving_default"](
            **{k: tf.constant(v) for k, v in request.items()})
        result[name] = {
            "served": {k: [v.numpy().tolist(), v.dtype.name] for k, v in served.items()},
            "unregistered": sorted(op for op in ops if op_def_registry.get(op) is None),
            "xla": sorted(op for op in ops if op.startswith("Xla")),
            "int8_matmuls": int8_matmuls,
        }
    result["imported"] = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                                & {"tensorflow_text", "keras", "keras_llm", "keras_hub"})
    print(json.dumps(result, default=lambda b: b.decode("utf-8")))
    """
)


def test_every_task_quantized_to_int8_serves_text_from_a_tensorflow_only_process(tmp_path):
    restored, request = {}, {}
    for name, (arguments, tokenizer, _, _) in _examples().items():
        if name not in CASES:
            continue  # an encoder does not export
        _, _, settings, texts, _ = CASES[name]
        # A GPT also weights-only (float activations: no int8 x int8 matmul).
        for weights_only in (False, True) if name == "causal_lm" else (False,):
            model = registry.TASKS[name].resolve("builder")(tokenizer=tokenizer, **arguments)
            keras_llm.quantize(model, "int8", weights_only=weights_only)
            key = f"{name}_weights_only" if weights_only else name
            model.save(str(tmp_path / f"{key}.keras"))
            restored[key] = keras.saving.load_model(str(tmp_path / f"{key}.keras"))
            # A GPT's export also under XLA: its int8 matmuls compiled for the CPU.
            for jit in (False, True) if key == "causal_lm" else (False,):
                served_key = f"{key}_xla" if jit else key
                path = keras_llm.export(restored[key], str(tmp_path / served_key), jit_compile=jit,
                                        **settings)
                request[served_key] = (path, texts)
    # A Llama read from a GGUF file with its 4-bit blocks kept (`keep_quantized=True`: int4 with
    # offsets, no int8 matmul), served in the same process as a causal LM.
    kept = keras_llm.from_pretrained(write_gguf(tmp_path / "q4.gguf"), keep_quantized=True)
    kept.tokenizer = keras_llm.tokenizers.ByteTokenizer()
    kept.save(str(tmp_path / "kept.keras"))
    restored[KEPT] = keras.saving.load_model(str(tmp_path / "kept.keras"))
    request[KEPT] = (keras_llm.export(restored[KEPT], str(tmp_path / KEPT), max_new_tokens=4),
                     CASES["causal_lm"][3])
    # A GPT whose blocks GPTQ calibrated (4-bit blocks, float activations), the same way.
    arguments, tokenizer, _, _ = _examples()["causal_lm"]
    gptq = registry.TASKS["causal_lm"].resolve("builder")(tokenizer=tokenizer, **arguments)
    keras_llm.quantize(gptq, "gptq", calibration=[textwrap.__doc__], num_samples=4,
                       sequence_length=16)
    gptq.save(str(tmp_path / "gptq.keras"))
    restored[GPTQ] = keras.saving.load_model(str(tmp_path / "gptq.keras"))
    request[GPTQ] = (keras_llm.export(restored[GPTQ], str(tmp_path / GPTQ), **CASES["causal_lm"][2]),
                     CASES["causal_lm"][3])
    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY], input=json.dumps(request), capture_output=True,
        text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served.pop("imported") == []
    for key, answer in served.items():
        assert answer["unregistered"] == [] and answer["xla"] == [], key
        model_key = key.removesuffix("_xla")
        name = "causal_lm" if key in (KEPT, GPTQ) else model_key.removesuffix("_weights_only")
        # W8A8: int8 x int8 -> int32 in core ops; weights-only: float products only.
        assert (answer["int8_matmuls"] > 0) == (model_key == name), key
        _, _, _, texts, check = CASES[name]
        outputs = {k: tf.constant(v, dtype=dtype) for k, (v, dtype) in answer["served"].items()}
        check(restored[model_key], outputs, next(iter(texts.values())))


def _run_cli(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(keras_llm_command() + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_keras_llm_quantize_saves_a_loadable_model_and_exports_it(tmp_path, capsys, monkeypatch):
    keras.utils.set_random_seed(0)
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, hidden_dim=16, num_heads=2,
                                intermediate_dim=32, max_sequence_length=32,
                                tokenizer=keras_llm.tokenizers.ByteTokenizer())
    model.save(str(tmp_path / "gpt.keras"))
    result = _run_cli("quantize", "--model", "gpt.keras", "--mode", "int4", "--export", "served",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "saved: gpt.int4.keras" in result.stdout and "exported:" in result.stdout
    quantized = keras.saving.load_model(str(tmp_path / "gpt.int4.keras"))
    assert quantized.get_layer("embeddings").token_embedding.quantization_mode == "int4"
    keras_llm.quantize(model, "int4")  # the same formula in this process: the same outputs
    ids = np.array([[72, 105, 33]], "int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    np.testing.assert_array_equal(np.asarray(quantized(x)), np.asarray(model(x)))
    assert os.listdir(tmp_path / "served") == ["1"]

    # Bad input: one line, exit status 2, nothing written (in this process: the
    # run above showed the command's start-up).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")
    for args, message in [
        (["--model", "missing.keras"], "no such file"),
        (["--model", "notes.txt"], "--model must be a .keras file"),
        (["--model", "gpt.keras", "--mode", "int16"], "invalid choice: 'int16'"),
        (["--model", "gpt.int4.keras", "--output", "again.keras"], "is already quantized"),
        (["--model", "gpt.keras", "--mode", "int4", "--weights-only"],
         "--weights-only is an option of --mode int8"),
    ]:
        before = sorted(os.listdir(tmp_path))
        code, _, err = cli(capsys, "quantize", *args)
        assert code == 2, (args, err[-2000:])
        last = err.strip().splitlines()[-1]  # argparse's usage, then the error line
        assert last.startswith("keras-llm quantize: error:") and message in last, args
        assert sorted(os.listdir(tmp_path)) == before, args
