import os
import re
import subprocess
import sys

import keras
import numpy as np

import keras_llm


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
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.keras"]  # no temp files left
    ids = np.array([[1, 2, 3]], "int32")
    assert model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).shape == (1, 3, 258)


def test_bad_flags_are_named(tmp_path):
    result = run("train", "--steps", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--steps must be positive; received 0" in result.stderr
    result = run("train", "--preset", "gpt5", cwd=tmp_path)
    assert result.returncode == 2 and "received 'gpt5'" in result.stderr
    result = run("train", "--output", "model.h5", cwd=tmp_path)
    assert result.returncode == 2 and "--output must end in .keras" in result.stderr
