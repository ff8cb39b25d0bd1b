"""CoreOpsWordPieceTokenizer against Hugging Face `tokenizers` (the reference)."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tokenizers as hf

from keras_llm.tokenizers import CoreOpsWordPieceTokenizer

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")

STRESS = [
    "", " ", "   \t\n ", "Hello, WORLD!!", "naïve café résumé", "Ǆ ǅ ﬁ Å Ω ŉ",
    "漢字テスト 日本語の文章", "한국어 텍스트", "emoji 🙂👍🏽 family 👨‍👩‍👧", "zero\u200bwidth\u200d joiner",
    "ctrl\x00\x07\x1bchars\x7f", "tab\tnew\nline\r\nend", "x\x85y\u2028z\u3000w\xa0v",
    "a" * 150, "supercalifragilisticexpialidocious", "12,345.67 and 3.14159e-10",
    "https://example.com/path?q=1&r=two#frag", "user@example.org", "don't «quote» „this“",
    "\u0301combining at start", "İstanbul ΣΑΣ straße", "$5+3=8^2|~`", "ﬀ ﬃ ½ ² №",
    "\ufffdreplacement", "Ελληνικά Русский עברית العربية हिन्दी",
]


def corpus():
    base = [
        "The quick brown fox jumps over the lazy dog. Café déjà vu, naïve résumé!",
        "漢字 日本語 한국어 Ελληνικά Русский עברית العربية हिन्दी 🙂 https://example.com/a?b=1",
        "Numbers 123,456.78 and emails user@example.org; quotes «like» „these“.",
    ]
    rng = np.random.default_rng(0)
    words = " ".join(base).split()
    return base * 5 + [" ".join(rng.choice(words, 12)) for _ in range(300)]


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def pair(request, tmp_path_factory):
    """A vocabulary trained by Hugging Face, loaded by both implementations."""
    lowercase = request.param
    reference = hf.BertWordPieceTokenizer(lowercase=lowercase)
    reference.train_from_iterator(corpus(), vocab_size=600)
    directory = tmp_path_factory.mktemp("vocab")
    reference.save_model(str(directory))
    ours = CoreOpsWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=lowercase)
    return ours, reference, directory / "vocab.txt"


def reference_ids(reference, texts):
    return [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]


def test_stress_set_matches_hugging_face(pair):
    ours, reference, _ = pair
    assert ours(STRESS).to_list() == reference_ids(reference, STRESS)


@pytest.mark.parametrize("name", ["sst2_train.tsv", "sst2_dev.tsv", "tinyshakespeare.txt"])
def test_shared_corpora_match_hugging_face(pair, name):
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (it exists only beside the project's checkout)")
    ours, reference, _ = pair
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for start in range(0, len(lines), 4096):
        chunk = lines[start : start + 4096]
        assert ours(chunk).to_list() == reference_ids(reference, chunk), start


def test_scalar_input_and_tf_data(pair):
    ours, reference, _ = pair
    assert ours("Café!").numpy().tolist() == reference_ids(reference, ["Café!"])[0]
    ds = tf.data.Dataset.from_tensor_slices(STRESS[:6]).batch(3).map(ours)
    got = [row for batch in ds for row in batch.to_list()]
    assert got == reference_ids(reference, STRESS[:6])


def test_invalid_utf8_bytes_are_dropped(pair):
    ours, _, _ = pair
    assert ours([b"caf\xff\xfee"]).to_list() == ours(["cafe"]).to_list()


def test_detokenize_glues_continuations(pair):
    ours, reference, _ = pair
    text = "supercalifragilisticexpialidocious"
    ids = ours(text)
    assert ours.detokenize(ids).numpy().decode() == reference.decode(ids.numpy().tolist())


def test_keras_round_trip(pair, tmp_path):
    ours, _, _ = pair
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, ours(inputs))
    clone = CoreOpsWordPieceTokenizer.from_config(ours.get_config())
    assert clone(STRESS).to_list() == ours(STRESS).to_list()
    model.save(tmp_path / "tokenizer.keras")
    loaded = keras.saving.load_model(tmp_path / "tokenizer.keras")
    assert loaded(tf.constant(STRESS)).to_list() == ours(STRESS).to_list()


def test_saved_model_runs_in_a_process_that_imports_only_tensorflow(pair, tmp_path):
    ours, reference, _ = pair

    class Serving(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def tokenize(self, texts):
            ids = self.tokenizer(texts)
            return {"ids": ids.to_tensor(-1)}

    export_dir = str(tmp_path / "saved")
    tf.saved_model.save(Serving(ours), export_dir)
    script = textwrap.dedent(
        f"""
        import sys, json
        import tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        ids = loaded.tokenize(tf.constant(json.loads(sys.stdin.read())))["ids"].numpy()
        forbidden = [m for m in ("tensorflow_text", "keras_llm", "keras_hub") if m in sys.modules]
        from tensorflow.python.framework import op_def_registry
        graph = loaded.tokenize.concrete_functions[0].graph.as_graph_def()
        ops = {{n.op for n in graph.node}}
        ops |= {{n.op for f in graph.library.function for n in f.node_def}}
        ops -= {{f.signature.name for f in graph.library.function}}
        unregistered = sorted(op for op in ops if op_def_registry.get(op) is None)
        print(json.dumps({{"ids": [[int(i) for i in row if i >= 0] for row in ids],
                          "forbidden": forbidden, "unregistered": unregistered,
                          "ops": len(ops)}}))
        """
    )
    import json

    result = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(STRESS), capture_output=True,
        text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["forbidden"] == []
    assert answer["unregistered"] == [] and answer["ops"] > 20  # op audit
    assert answer["ids"] == reference_ids(reference, STRESS)


def test_bad_vocabulary_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        CoreOpsWordPieceTokenizer(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"[UNK]\nok\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: the vocabulary file is not valid UTF-8"):
        CoreOpsWordPieceTokenizer(str(bad))
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("[UNK]\ntwo words\n")
    with pytest.raises(ValueError, match=r"spaced.txt:2: expected one WordPiece token"):
        CoreOpsWordPieceTokenizer(str(spaced))
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("[UNK]\na\na\n")
    with pytest.raises(ValueError, match=r"repeated.txt:3: token 'a' repeats line 2"):
        CoreOpsWordPieceTokenizer(str(repeated))
    with pytest.raises(ValueError, match="unknown_token='<unk>'"):
        CoreOpsWordPieceTokenizer(["[UNK]", "a"], unknown_token="<unk>")
