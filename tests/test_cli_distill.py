"""`keras-llm distill` in a subprocess, on a tiny teacher and files the test writes."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from tests.test_cli_commands import cli

pytestmark = pytest.mark.slow  # subprocesses that train

WORDS = ["good", "bad", "film", "plot", "fun", "dull", "the", "is"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


def keras_llm_command():
    script = os.path.join(os.path.dirname(sys.executable), "keras-llm")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "keras_llm.cli"]


def run_cli(tmp_path, *flags):
    return subprocess.run(keras_llm_command() + ["distill", *flags], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


def batch(tokenizer, texts):
    """The classifier's inputs for `texts`: [CLS] ids [SEP], padded."""
    ids = [[2] + tokenizer.tokenize(t).numpy().tolist() + [3] for t in texts]
    width = max(map(len, ids))
    return {"token_ids": np.array([i + [0] * (width - len(i)) for i in ids], "int32"),
            "segment_ids": np.zeros((len(ids), width), "int32"),
            "padding_mask": np.array([[1] * len(i) + [0] * (width - len(i)) for i in ids], "int32")}


@pytest.fixture
def files(tmp_path):
    """train.tsv and dev.tsv (string labels neg/pos) and teacher.keras, trained on them."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(96):
        label = int(rng.integers(2))
        words = [["bad", "dull"], ["good", "fun"]][label][rng.integers(2)]
        rows.append((["neg", "pos"][label], f"the {rng.choice(['film', 'plot'])} is {words}"))
    for name, part in (("train.tsv", rows), ("dev.tsv", rows[:32])):
        (tmp_path / name).write_text("label\tsentence\n" + "".join(f"{a}\t{b}\n" for a, b in part))
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(VOCAB)
    keras.utils.set_random_seed(0)
    teacher = keras_llm.build_bert_classifier(
        num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, num_classes=2,
        vocabulary_size=len(VOCAB), max_sequence_length=32, tokenizer=tokenizer,
    )
    keras_llm.compile_model(teacher, learning_rate=1e-2, total_steps=100, warmup_steps=5)
    x = batch(tokenizer, [text for _, text in rows])
    teacher.fit(x, np.array([label == "pos" for label, _ in rows], "int32"), epochs=10,
                batch_size=16, verbose=0)
    teacher.save(tmp_path / "teacher.keras")
    return rows, tokenizer


def test_distill_trains_scores_saves_and_serves_a_student(tmp_path, files):
    rows, tokenizer = files
    teacher_bytes = (tmp_path / "teacher.keras").read_bytes()
    result = run_cli(tmp_path, "--teacher", "teacher.keras", "--student-preset", "bert_tiny",
                     "--train", "train.tsv", "--eval", "dev.tsv", "--epochs", "6",
                     "--batch-size", "16", "--learning-rate", "3e-3", "--temperature", "2",
                     "--alpha", "0.7", "--output", "student.keras", "--export", "served")
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "labels neg, pos" in out and "temperature 2.0, alpha 0.7" in out

    # The printed accuracy is the saved student's, recomputed from its logits.
    student = keras.saving.load_model(tmp_path / "student.keras")
    assert student.task == "classifier" and student.vocabulary_size == len(VOCAB)
    assert student.count_params() > 100_000  # bert_tiny's width, not the teacher's
    dev = rows[:32]
    predicted = np.argmax(student.predict(batch(tokenizer, [t for _, t in dev]), verbose=0), -1)
    accuracy = np.mean(predicted == np.array([label == "pos" for label, _ in dev]))
    line = next(line for line in out.splitlines() if line.startswith("eval, student: "))
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(accuracy, abs=1e-4)
    assert accuracy >= 0.9  # the task is learnable: the teacher's and the labels' signal
    assert (tmp_path / "teacher.keras").read_bytes() == teacher_bytes

    # The export serves raw text, with the teacher's class names.
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"]
    answer = served(text=tf.constant([t for _, t in dev[:4]]))
    assert [n.decode() for n in answer["label"].numpy()] == [["neg", "pos"][p] for p in predicted[:4]]


def test_bad_flags_are_one_line_errors_and_write_nothing(tmp_path, files, capsys, monkeypatch):
    # In this process (the test above shows the command's start-up): exit status 2, one line.
    monkeypatch.chdir(tmp_path)
    common = ["distill", "--teacher", "teacher.keras", "--train", "train.tsv",
              "--output", "student.keras", "--export", "served"]
    for flags, message in [
        (["--alpha", "1.5"], "--alpha must be in [0, 1] (the weight of the teacher's term); received 1.5"),
        (["--temperature", "0"], "--temperature must be positive; received 0.0"),
        (["--label-names", "neg,pos,neutral"],
         "the teacher has 2 classes; --label-names name 3: neg, pos, neutral"),
    ]:
        code, _, err = cli(capsys, *common, *flags)
        assert code == 2 and message in err, (flags, err[-2000:])
    assert not os.path.exists(tmp_path / "student.keras") and not os.path.exists(tmp_path / "served")
