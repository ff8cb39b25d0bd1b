"""Training survives being killed: a rerun of the same command ends with the same model.

The kill tests run `keras-llm train` in subprocesses and SIGKILL them; the
reference is an uninterrupted run of the same command with the same seed. The
runs to completion (the reference and each rerun) need no process of their
own: they run in this one, as `keras_llm_cli.main`.
"""

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
import keras_llm_cli
from tests.test_cli import keras_llm_command, shakespeare_like

# 24 steps = 8 epochs of 3 steps; backups after steps 4, 8, 12, ...: those
# after steps 4, 8, 16 and 20 fall inside an epoch. A small local corpus
# (written into each run's directory, the same every time): the built-in one
# would be parsed from the standard library by each of the five processes.
COMMAND = [
    "train", "--data", "plays.txt", "--steps", "24", "--batch-size", "8", "--sequence-length",
    "64", "--sample-length", "5", "--backup-every", "4", "--output", "out/model.keras",
]
STEPS_PER_EPOCH = 3
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _with_corpus(cwd):
    if not (cwd / "plays.txt").exists():
        shakespeare_like(cwd / "plays.txt")
    return cwd


def _run_to_completion(cwd):
    """The command in this process, from `cwd`; what it printed."""
    _with_corpus(cwd)
    out, err, previous = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = keras_llm_cli.main(list(COMMAND))
    except SystemExit as exit:
        code = exit.code
    finally:
        os.chdir(previous)
    assert code == 0, err.getvalue()[-3000:]
    return out.getvalue()


def _weights(cwd):
    return keras.saving.load_model(cwd / "out" / "model.keras").get_weights()


def _start_and_kill_when(cwd, ready, command=None):
    """Starts the command, SIGKILLs it as soon as `ready()` is true, while it still runs."""
    _with_corpus(cwd)
    process = subprocess.Popen((command or keras_llm_command()) + COMMAND, cwd=cwd, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not ready():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (cwd / "out" / "model.keras").exists()  # killed before it finished


def _backup_steps(cwd):
    directory = cwd / "out" / "model_backup"
    return sorted(int(m.group(1)) for p in directory.iterdir()
                  if (m := re.match(r"step-(\d+)\.weights\.h5$", p.name)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted")
    _run_to_completion(cwd)
    assert not (cwd / "out" / "model_backup").exists()  # removed once the model is saved
    return _weights(cwd)


def _assert_same_weights(ours, reference):
    assert len(ours) == len(reference)
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, reference))
    assert difference <= 1e-6, difference


@pytest.mark.slow
def test_killed_mid_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path, uninterrupted):
    backup_dir = tmp_path / "out" / "model_backup"
    _start_and_kill_when(tmp_path, lambda: backup_dir.is_dir() and _backup_steps(tmp_path))
    killed_at = _backup_steps(tmp_path)[-1]
    assert killed_at % STEPS_PER_EPOCH, f"backup {killed_at} is at an epoch's end"
    output = _run_to_completion(tmp_path)
    assert f"resumed at step {killed_at} of 24" in output
    _assert_same_weights(_weights(tmp_path), uninterrupted)
    assert not backup_dir.exists()


# Runs the CLI with `save_weights` slowed down from the step-8 backup on: the
# file is written, cut to half its size (as a kill mid-write leaves it), and
# then the writer stalls before the rename, until the test kills it.
STALLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import keras
    from keras_llm.cli import main

    save_weights = keras.Model.save_weights

    def stalled(self, filepath, *args, **kwargs):
        save_weights(self, filepath, *args, **kwargs)
        if int(self.optimizer.iterations.numpy()) >= 8:
            with open(filepath, "r+b") as f:
                f.truncate(os.path.getsize(filepath) // 2)
            open(os.environ["STALLED_MARKER"], "w").close()
            time.sleep(600)

    keras.Model.save_weights = stalled
    sys.argv[0] = "keras-llm"
    sys.exit(main())
    """
)


@pytest.mark.slow
def test_killed_while_writing_a_backup_then_rerun_equals_an_uninterrupted_run(
    tmp_path, uninterrupted, monkeypatch
):
    marker = tmp_path / "stalled"
    monkeypatch.setitem(ENV, "STALLED_MARKER", str(marker))
    _start_and_kill_when(tmp_path, marker.exists, command=[sys.executable, "-c", STALLED_WRITER])
    backup_dir = tmp_path / "out" / "model_backup"
    leftovers = [p.name for p in backup_dir.iterdir() if p.name.startswith(".step-000000008.incomplete-")]
    assert leftovers, "the half-written backup should still be under its temporary name"
    assert _backup_steps(tmp_path) == [4]  # step 8's never became a backup
    output = _run_to_completion(tmp_path)
    assert "resumed at step 4 of 24" in output
    _assert_same_weights(_weights(tmp_path), uninterrupted)
    assert not backup_dir.exists()  # the temporary file is cleaned up too


def _tiny_gpt():
    return keras_llm.build_gpt(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16, dropout=0.1,
    )


class _Crash(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == 7:
            raise RuntimeError("crash")


@pytest.mark.slow
def test_fit_resumable_restores_optimizer_schedule_dropout_and_data_position(tmp_path):
    ids = np.random.default_rng(0).integers(0, 50, size=(40, 17)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices(
        ({"token_ids": ids[:, :-1], "padding_mask": np.ones((40, 16), "int32")}, ids[:, 1:])
    ).batch(4).repeat()  # 10 different batches, so the data position matters
    fit = dict(epochs=3, steps_per_epoch=4, backup_every=5, verbose=0)

    keras.utils.set_random_seed(1)
    reference = _tiny_gpt()
    keras_llm.training.fit_resumable(reference, data, backup_dir=tmp_path / "a", **fit)

    keras.utils.set_random_seed(1)
    crashed = _tiny_gpt()
    with pytest.raises(RuntimeError, match="crash"):
        keras_llm.training.fit_resumable(crashed, data, backup_dir=tmp_path / "b", callbacks=[_Crash()], **fit)
    keras.utils.set_random_seed(2)  # a different initialisation: all of it must come from the backup
    resumed = _tiny_gpt()
    assert keras_llm.training.fit_resumable(resumed, data, backup_dir=tmp_path / "b", **fit) == 5
    assert int(resumed.optimizer.iterations.numpy()) == 12
    _assert_same_weights(resumed.get_weights(), reference.get_weights())
    for ours, theirs in zip(resumed.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6)


@pytest.mark.slow
def test_a_backup_from_a_longer_run_is_refused(tmp_path):
    model = _tiny_gpt()
    data = tf.data.Dataset.from_tensor_slices(
        ({"token_ids": np.ones((4, 8), "int32"), "padding_mask": np.ones((4, 8), "int32")},
         np.ones((4, 8), "int32"))
    ).batch(2).repeat()
    keras_llm.training.fit_resumable(model, data, epochs=2, steps_per_epoch=2, backup_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="at step 4, past this run's 2 steps"):
        keras_llm.training.fit_resumable(model, data, epochs=1, steps_per_epoch=2, backup_dir=tmp_path, verbose=0)
