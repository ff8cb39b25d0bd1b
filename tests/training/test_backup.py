"""TrainingBackup writes through keras_llm's atomic writer: readable files, no litter."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

import keras_llm


def _tiny_gpt():
    return keras_llm.build_gpt(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )


def _data():
    ids = np.random.default_rng(0).integers(0, 50, size=(8, 17)).astype("int32")
    return tf.data.Dataset.from_tensor_slices(
        ({"token_ids": ids[:, :-1], "padding_mask": np.ones((8, 16), "int32")}, ids[:, 1:])
    ).batch(4).repeat()


def _mode(path):
    return os.stat(path).st_mode & 0o777


@pytest.mark.slow
@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_backups_get_the_modes_of_the_umask(tmp_path, umask, file_mode, dir_mode):
    backup_dir = tmp_path / "backup"
    old = os.umask(umask)
    try:
        keras_llm.training.fit_resumable(
            _tiny_gpt(), _data(), epochs=1, steps_per_epoch=2, backup_dir=backup_dir, verbose=0
        )
    finally:
        os.umask(old)
    assert os.listdir(backup_dir) == ["step-000000002.weights.h5"]
    assert _mode(backup_dir / "step-000000002.weights.h5") == file_mode
    assert _mode(backup_dir) == dir_mode


# A writer of the step-2 backup that is killed half-way through the file, before
# the rename: what `kill -9` (or a preempted machine) leaves.
KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import keras
    import keras_llm
    from tests.training.test_backup import _tiny_gpt

    def stalled(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a backup")
        open(sys.argv[2], "w").close()
        time.sleep(600)

    keras.Model.save_weights = stalled
    model = _tiny_gpt()
    model.optimizer.iterations.assign(2)
    backup = keras_llm.training.TrainingBackup(sys.argv[1])
    backup.set_model(model)
    backup.save()
    """
)


@pytest.mark.slow
def test_what_a_killed_writer_left_is_removed_by_the_next_run(tmp_path):
    backup_dir, marker = tmp_path / "backup", tmp_path / "stalled"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(backup_dir), str(marker)],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the writer never reached the point to kill it at"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = os.listdir(backup_dir)
    assert len(left) == 1 and left[0].startswith("."), left  # unfinished, under a hidden name

    # The next run (one step, so it writes no step-2 backup of its own) removes it.
    keras_llm.training.fit_resumable(
        _tiny_gpt(), _data(), epochs=1, steps_per_epoch=1, backup_dir=backup_dir, verbose=0
    )
    assert os.listdir(backup_dir) == ["step-000000001.weights.h5"]


def test_a_url_backup_dir_is_refused_before_training():
    with pytest.raises(ValueError) as error:
        keras_llm.training.TrainingBackup("gs://bucket/run_backup")
    assert str(error.value) == (
        "`backup_dir` must be a local or mounted directory: backups are HDF5 files written "
        "in place. Received: backup_dir='gs://bucket/run_backup'"
    )


def _backed_up_gpt(backup_dir, **sizes):
    model = keras_llm.build_gpt(**{
        "vocabulary_size": 50, "num_layers": 1, "num_heads": 2, "hidden_dim": 16,
        "intermediate_dim": 32, "max_sequence_length": 16, **sizes,
    })
    keras_llm.training.fit_resumable(model, _data(), epochs=1, steps_per_epoch=2,
                                     backup_dir=backup_dir, verbose=0)
    return model


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """A directory with the backup of a one-layer GPT of width 16 (trained once for the module)."""
    backup_dir = tmp_path_factory.mktemp("backup")
    _backed_up_gpt(backup_dir)
    return backup_dir


@pytest.mark.parametrize("sizes, named", [
    # Keras loaded this one without a word and left the optimizer at step 0.
    ({"num_layers": 2}, r"it holds \d+ weights and this model \d+ \(a different number of layers\?\)"),
    ({"hidden_dim": 32}, r"shapes only in the backup: \[\(50, 16\), .*\], only in this model: \[\(50, 32\), "),
])
def test_a_backup_of_another_shape_is_named(backed_up, sizes, named):
    other = keras_llm.build_gpt(**{
        "vocabulary_size": 50, "num_layers": 1, "num_heads": 2, "hidden_dim": 16,
        "intermediate_dim": 32, "max_sequence_length": 16, **sizes,
    })
    with pytest.raises(ValueError, match=r"step-000000002\.weights\.h5 was written for a model of "
                                         r"another shape: " + named):
        keras_llm.training.TrainingBackup(backed_up).restore(other)


def test_only_a_killed_writers_file_says_training_starts_at_0(tmp_path, caplog):
    # What a run killed while writing its first backup leaves (process 999999999: gone).
    leftover = tmp_path / ".step-000000004.incomplete-host-999999999-0123456789ab.weights.h5"
    leftover.write_bytes(b"half a file")
    model = _tiny_gpt()
    keras_llm.compile_model(model, "causal_lm")
    with caplog.at_level("WARNING", logger="keras_llm"):
        assert keras_llm.training.TrainingBackup(tmp_path).restore(model) == 0
    assert f"no complete backup in {tmp_path} (a killed run left {leftover.name} unfinished): " \
           "training starts from step 0" in caplog.text
