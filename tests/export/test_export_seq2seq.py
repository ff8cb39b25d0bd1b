"""A seq2seq export serves text to text, as the Generator decodes, from a TensorFlow-only process."""

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
from keras_llm.generation import Generator

# Hostile inputs too: empty, 5,000 characters, an emoji, invalid UTF-8 is not
# possible in a JSON request but a lone combining mark is.
TEXTS = ["def add(a, b): return a + b", "", "x" * 5000, "caf\u00e9 \U0001F642", "\u0301"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_seq2seq(
        vocabulary_size=tokenizer.vocabulary_size, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=48, dropout=0.0, tie_embeddings=False,
    )
    # Large random kernels, so that outputs differ by source (a fresh model
    # repeats the end token).
    rng = np.random.default_rng(1)
    for weight in model.weights:
        if len(weight.shape) >= 2:
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    path = keras_llm.export(model, str(tmp_path_factory.mktemp("s") / "seq2seq"), tokenizer,
                            max_new_tokens=6, stop_token_ids=[])
    return model, tokenizer, path


@pytest.mark.slow  # 11 s with its export; the GPT export tests cover the shared code fast
def test_served_text_is_what_the_generator_writes(exported):
    model, tokenizer, path = exported
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(TEXTS))
    generator = Generator(model, tokenizer)
    expected = generator.generate(TEXTS, 6, stop_token_ids=[])
    assert [t.decode("utf-8") for t in served["generated_text"].numpy()] == expected
    ids = [row[:n].tolist() for row, n in zip(served["generated_ids"].numpy(),
                                               served["generated_length"].numpy())]
    # The sources as seq2seq_dataset lays them out: cut to 47 bytes, then the end token.
    sources = [list(t.encode("utf-8"))[:47] + [256] for t in TEXTS]
    assert ids == [row.tolist() for row in generator.generate(sources, 6, stop_token_ids=[])]
    assert len({tuple(row) for row in ids}) > 1


TENSORFLOW_ONLY = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry
    before = set(sys.modules)
    request = json.loads(sys.stdin.read())
    loaded = tf.saved_model.load(request["path"])
    texts = tf.constant([t.encode("utf-8") for t in request["texts"]])
    n = len(request["texts"])
    result = {"served": loaded.signatures["serving_default"](text=texts)["generated_text"].numpy().tolist()}
    sampled = loaded.signatures["generate"](
        text=texts, max_new_tokens=tf.fill([n], 4), temperature=tf.fill([n], 0.8),
        top_k=tf.fill([n], 20), top_p=tf.fill([n], 0.9), seed=tf.range(n))
    result["sampled"] = [row[:k].tolist() for row, k in zip(
        sampled["generated_ids"].numpy(), sampled["generated_length"].numpy())]
    errors = []
    for bad in (dict(temperature=[-1.0]), dict(top_p=[1.5]), dict(max_new_tokens=[48]),
                dict(seed=[1, 2])):
        settings = dict(max_new_tokens=[4], temperature=[0.0], top_k=[0], top_p=[1.0], seed=[0])
        settings.update(bad)
        try:
            loaded.signatures["generate"](text=texts, **{
                k: tf.constant(v, tf.float32 if k in ("temperature", "top_p") else tf.int32)
                for k, v in settings.items()})
            errors.append(None)
        except tf.errors.InvalidArgumentError as error:
            errors.append(error.message)
    result["errors"] = errors
    ops = set()
    for signature in loaded.signatures.values():
        graph = signature.graph.as_graph_def()
        ops |= {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        ops -= {f.signature.name for f in graph.library.function}
    result["unregistered"] = sorted(op for op in ops if op_def_registry.get(op) is None)
    result["xla"] = sorted(op for op in ops if op.startswith("Xla"))
    result["imported"] = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                                & {"tensorflow_text", "keras", "keras_llm", "keras_hub"})
    print(json.dumps(result, default=lambda b: b.decode("utf-8")))
    """
)


@pytest.mark.slow
def test_a_tensorflow_only_process_serves_text_to_text_and_names_bad_settings(exported):
    model, tokenizer, path = exported
    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY],
        input=json.dumps({"path": path, "texts": TEXTS}), capture_output=True, text=True,
        timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["imported"] == [] and served["unregistered"] == [] and served["xla"] == []
    generator = Generator(model, tokenizer)
    assert served["served"] == generator.generate(TEXTS, 6, stop_token_ids=[])
    # Seeded samples: the same ids as the Generator's, row by row.
    sources = [list(t.encode("utf-8"))[:47] + [256] for t in TEXTS]
    sampled = generator.generate(sources, 4, temperature=0.8, top_k=20, top_p=0.9,
                                 seed=list(range(len(TEXTS))), stop_token_ids=[])
    assert served["sampled"] == [row.tolist() for row in sampled]
    assert "temperature must be >= 0" in served["errors"][0]
    assert "top_p must be in (0, 1]" in served["errors"][1]
    assert "max_new_tokens must be less than the context of 48 tokens" in served["errors"][2]
    assert "`seed` must have one value per prompt (5 prompts)" in served["errors"][3]
