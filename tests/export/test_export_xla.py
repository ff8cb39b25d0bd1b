"""`export(..., jit_compile=True)`: XLA-compiled decoding over shape buckets, served as the plain graph serves."""

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

# Empty, longer than the context (48), an emoji, a lone combining mark.
TEXTS = ["The cat sat", "", "a dog!" * 40, "caf\u00e9 \U0001F642", "\u0301"]
CONTEXT = 48


def _bucket(value, multiple, context):
    return min(-(-value // multiple) * multiple, context)


@pytest.mark.parametrize(
    "lengths, max_new, source_width, context",
    [([3], [4], None, 256), ([1, 40, 7], [30, 5, 0], None, 256), ([33] * 5, [31] * 5, None, 48),
     ([1] * 9, [20] * 9, 70, 256), ([1] * 2, [47, 3], 48, 48), ([200], [55], None, 256)],
)
def test_bucket_shapes_are_the_documented_roundings(lengths, max_new, source_width, context):
    seq2seq = source_width is not None
    if seq2seq:
        model = keras_llm.build_seq2seq(
            vocabulary_size=16, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=8,
            max_sequence_length=context,
        )
        generator = Generator(model, start_token_id=1)
    else:
        model = keras_llm.build_gpt(vocabulary_size=16, num_layers=1, num_heads=2, hidden_dim=8,
                                    intermediate_dim=8, max_sequence_length=context)
        generator = Generator(model)
    lengths, row_end = np.array(lengths), np.array(lengths) + np.array(max_new)
    shapes = generator.bucket_shapes(
        tf.constant(lengths, tf.int32), tf.constant(row_end, tf.int32), source_width
    )
    total = _bucket(row_end.max(), 64, context)
    expected = [
        2 ** int(np.ceil(np.log2(len(lengths)))),  # the next power of two
        1 if seq2seq else min(_bucket(lengths.max(), 32, context), total),
        total,
        _bucket(source_width, 32, context) if seq2seq else None,
    ]
    assert [None if s is None else int(s) for s in shapes] == expected


def test_only_generative_exports_take_jit_compile(tmp_path):
    classifier = keras_llm.build_bert_classifier(
        "bert_tiny", num_classes=2, vocabulary_size=300, max_sequence_length=16
    )
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    with pytest.raises(ValueError, match="jit_compile is for other models .*causal LMs and seq2seq"):
        keras_llm.export(classifier, tmp_path / "c", tokenizer, jit_compile=True)
    gpt = keras_llm.build_gpt("gpt_nano", num_layers=1)
    with pytest.raises(ValueError, match="`jit_compile` must be True or False. Received: "
                                         "jit_compile='yes'"):
        keras_llm.export(gpt, tmp_path / "g", tokenizer, jit_compile="yes")
    assert not os.path.exists(tmp_path / "c") and not os.path.exists(tmp_path / "g")


TENSORFLOW_ONLY = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    before = set(sys.modules)
    request = json.loads(sys.stdin.read())
    texts = tf.constant([t.encode("utf-8") for t in request["texts"]])
    n = len(request["texts"])
    result = {}
    for name in ("gpt", "seq2seq"):
        loaded = tf.saved_model.load(request[name])
        out = {"served": loaded.signatures["serving_default"](text=texts)["generated_text"].numpy().tolist()}
        # Batches of 1 and 3 (padded to 4 rows inside): other buckets, the same rows.
        out["alone"] = [loaded.signatures["serving_default"](text=texts[i:i + 1])["generated_text"].numpy().tolist()[0]
                        for i in range(n)]
        out["three"] = loaded.signatures["serving_default"](text=texts[:3])["generated_text"].numpy().tolist()
        sampled = loaded.signatures["generate"](
            text=texts, max_new_tokens=tf.fill([n], 4), temperature=tf.fill([n], 0.8),
            top_k=tf.fill([n], 20), top_p=tf.fill([n], 0.9), seed=tf.range(n))
        out["sampled"] = [row[:k].tolist() for row, k in zip(
            sampled["generated_ids"].numpy(), sampled["generated_length"].numpy())]
        empty = loaded.signatures["serving_default"](text=tf.zeros([0], tf.string))
        out["empty"] = {k: v.shape.as_list() for k, v in empty.items()}
        errors = []
        for bad in (dict(temperature=[-1.0]), dict(max_new_tokens=[48]), dict(seed=[1, 2])):
            settings = dict(max_new_tokens=[4], temperature=[0.0], top_k=[0], top_p=[1.0], seed=[0])
            settings.update(bad)
            try:
                loaded.signatures["generate"](text=texts, **{
                    k: tf.constant(v, tf.float32 if k in ("temperature", "top_p") else tf.int32)
                    for k, v in settings.items()})
                errors.append(None)
            except tf.errors.InvalidArgumentError as error:
                errors.append(error.message)
        out["errors"] = errors
        # Which saved functions XLA must compile: the decoding loops.
        compiled = set()
        for signature in loaded.signatures.values():
            for f in signature.graph.as_graph_def().library.function:
                if f.attr["_XlaMustCompile"].b:
                    compiled.add(f.signature.name)
        out["xla_functions"] = sorted(compiled)
        result[name] = out
    result["imported"] = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                                & {"tensorflow_text", "keras", "keras_llm", "keras_hub"})
    print(json.dumps(result, default=lambda b: b.decode("utf-8")))
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(3)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    gpt = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=CONTEXT)
    seq2seq = keras_llm.build_seq2seq(
        vocabulary_size=tokenizer.vocabulary_size, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=CONTEXT, dropout=0.0, tie_embeddings=False,
    )
    # Large random kernels: outputs that differ by text (a fresh model repeats one token).
    rng = np.random.default_rng(1)
    for model in (gpt, seq2seq):
        for weight in model.weights:
            if len(weight.shape) >= 2:
                weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    base = tmp_path_factory.mktemp("xla")
    paths = {
        name: keras_llm.export(model, str(base / name), tokenizer, max_new_tokens=6,
                               stop_token_ids=[], jit_compile=True)
        for name, model in (("gpt", gpt), ("seq2seq", seq2seq))
    }
    return dict(gpt=gpt, seq2seq=seq2seq, tokenizer=tokenizer, paths=paths)


@pytest.mark.slow  # a subprocess compiling a dozen XLA programs: about 40 s
def test_a_tensorflow_only_process_serves_the_plain_graphs_outputs_xla_compiled(exported):
    request = dict(texts=TEXTS, **exported["paths"])
    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY], input=json.dumps(request), capture_output=True,
        text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["imported"] == []
    tokenizer = exported["tokenizer"]
    for name in ("gpt", "seq2seq"):
        out = served[name]
        assert any("_loop_" in f for f in out["xla_functions"]), out["xla_functions"]
        # The reference: the same model's plain-graph loop, in this process.
        generator = Generator(exported[name], tokenizer, jit_compile=False)
        expected = generator.generate(TEXTS, 6, stop_token_ids=[])
        assert out["served"] == expected and out["alone"] == expected
        assert out["three"] == expected[:3]
        assert len(set(expected)) > 2
        if name == "gpt":
            rows = [list(tokenizer.encode_numpy(t)) or [tokenizer.end_token_id] for t in TEXTS]
        else:
            rows = [list(t.encode("utf-8"))[: CONTEXT - 1] + [256] for t in TEXTS]
        sampled = generator.generate(rows, 4, temperature=0.8, top_k=20, top_p=0.9,
                                     seed=list(range(len(TEXTS))), stop_token_ids=[])
        assert out["sampled"] == [row.tolist() for row in sampled]
        assert out["empty"] == {"generated_text": [0], "generated_ids": [0, 0],
                                "generated_length": [0]}
        assert "temperature must be >= 0" in out["errors"][0]
        assert f"max_new_tokens must be less than the context of {CONTEXT}" in out["errors"][1]
        assert "`seed` must have one value per prompt (5 prompts)" in out["errors"][2]
