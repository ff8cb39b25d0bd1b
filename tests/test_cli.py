import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import tensorflow_datasets as tfds

import keras_llm
import keras_llm.cli


def keras_llm_command():
    """The installed `keras-llm` script beside this interpreter, as README runs it."""
    script = os.path.join(os.path.dirname(sys.executable), "keras-llm")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "keras_llm.cli"]


def run(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(keras_llm_command() + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_train_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    result = run("train", "--steps", "30", "--batch-size", "8", "--sequence-length", "64",
                 "--sample-length", "20", "--learning-rate", "3e-3", "--output", "out/model.keras",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = map(float, re.search(r"validation loss ([\d.]+) -> ([\d.]+)", result.stdout).groups())
    assert after < before - 0.5, result.stdout
    assert "sample:\nReturn the " in result.stdout
    model = keras.saving.load_model(tmp_path / "out" / "model.keras")
    assert model.get_layer("embeddings").vocabulary_size == keras_llm.tokenizers.ByteTokenizer.vocabulary_size
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.keras", "model.tokenizer.json"]  # no temp files left
    ids = np.array([[1, 2, 3]], "int32")
    assert model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).shape == (1, 3, 258)


def test_bad_flags_are_named(tmp_path):
    result = run("train", "--steps", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--steps must be positive; received 0" in result.stderr
    result = run("train", "--preset", "gpt5", cwd=tmp_path)
    assert result.returncode == 2 and "received 'gpt5'" in result.stderr
    result = run("train", "--output", "model.h5", cwd=tmp_path)
    assert result.returncode == 2 and "--output must end in .keras" in result.stderr
    result = run("train", "--backup-every", "-1", cwd=tmp_path)
    assert result.returncode == 2 and "--backup-every must be positive; received -1" in result.stderr
    (tmp_path / "tiny.txt").write_text("a few words\n" * 60, encoding="utf-8")
    result = run("train", "--data", "tiny.txt", cwd=tmp_path)
    assert result.returncode == 2 and "does not fill one sequence of --sequence-length 128" in result.stderr


def shakespeare_like(path, lines=600):
    """A small local corpus the test writes (../shared/data is not required)."""
    rng = np.random.default_rng(0)
    words = "the king shall speak to thee of love and war my lord good night sweet prince".split()
    text = "\n".join(" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(lines))
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_train_gpt_from_a_local_file_with_a_learned_bpe(tmp_path):
    corpus = shakespeare_like(tmp_path / "plays.txt")
    result = run("train", "--data", str(corpus), "--tokenizer", "train:300", "--steps", "30",
                 "--batch-size", "8", "--sequence-length", "32", "--sample-length", "5",
                 "--prompt", "the king", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = map(float, re.search(r"validation loss ([\d.]+) -> ([\d.]+)", result.stdout).groups())
    assert after < before - 1.0, result.stdout
    assert "tokenizer: BytePairTokenizer, 300 ids" in result.stdout
    # The tokenizer saved beside the model is the learned one.
    with open(tmp_path / "gpt_nano.tokenizer.json") as f:
        tokenizer = keras.saving.deserialize_keras_object(json.load(f))
    learned = keras_llm.tokenizers.BytePairTokenizer(
        str(tmp_path / "gpt_nano_vocabulary" / "vocab.json"),
        str(tmp_path / "gpt_nano_vocabulary" / "merges.txt"),
    )
    assert tokenizer(["the king speaks"]).to_list() == learned(["the king speaks"]).to_list()


def test_train_bert_pretraining_from_a_file_with_a_vocab_txt(tmp_path):
    corpus = shakespeare_like(tmp_path / "plays.txt")
    vocab = keras_llm.tokenizers.train_word_piece(str(corpus), 200, str(tmp_path / "vocab"))
    result = run("train", "--preset", "bert_tiny", "--data", str(corpus), "--tokenizer", vocab,
                 "--steps", "30", "--batch-size", "8", "--sequence-length", "32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = map(float, re.search(r"validation loss ([\d.]+) -> ([\d.]+)", result.stdout).groups())
    assert after < before - 0.5, result.stdout
    model = keras.saving.load_model(tmp_path / "bert_tiny.keras")
    assert sorted(model.output) == ["mlm_logits", "nsp_logits"]
    with open(vocab, encoding="utf-8") as f:
        assert model.get_layer("embeddings").vocabulary_size == len(f.read().splitlines())


def test_train_from_a_tfds_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with tfds.testing.mock_data(num_examples=300):
        code = keras_llm.cli.main([
            "train", "--data", "tfds:imdb_reviews", "--split", "train[:50%]", "--steps", "20",
            "--batch-size", "8", "--sequence-length", "32", "--sample-length", "5",
            "--output", "imdb.keras",
        ])
    assert code == 0 and (tmp_path / "imdb.keras").exists()


def test_bad_data_and_tokenizer_flags_are_named(tmp_path):
    result = run("train", "--data", "nope.txt", cwd=tmp_path)
    assert result.returncode != 0 and "No such file: 'nope.txt'" in result.stderr
    result = run("train", "--preset", "bert_tiny", "--tokenizer", "byte", cwd=tmp_path)
    assert result.returncode == 2 and "--tokenizer byte has no [CLS]" in result.stderr
    result = run("train", "--tokenizer", "vocab.json", cwd=tmp_path)
    assert result.returncode == 2 and "--tokenizer: no such file 'vocab.json'" in result.stderr
    result = run("train", "--data", "tfds:not_a_dataset", cwd=tmp_path)
    assert result.returncode != 0 and "tfds:not_a_dataset: TensorFlow Datasets has no data set" in result.stderr
