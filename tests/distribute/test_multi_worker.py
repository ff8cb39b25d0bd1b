"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train one GPT."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # worker subprocesses

# Runs `keras-llm train` in this process and saves the weights it ended with
# (every worker's, not only the chief's) to the path in argv[1].
WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras_llm
    from keras_llm.cli import main

    fit_resumable, trained = keras_llm.training.fit_resumable, []

    def capture(model, *args, **kwargs):
        trained.append(model)
        return fit_resumable(model, *args, **kwargs)

    keras_llm.training.fit_resumable = capture
    weights_path = sys.argv.pop(1)
    sys.argv[0] = "keras-llm"
    status = main()
    np.savez(weights_path, *trained[0].get_weights())
    sys.exit(status)
    """
)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_end_with_identical_weights_and_only_the_chief_writes(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    shared_backup = tmp_path / "backup"  # the one path every worker must see
    processes = []
    for index in range(2):
        cwd = tmp_path / f"worker{index}"
        cwd.mkdir()
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = [
            sys.executable, "-c", WORKER, str(tmp_path / f"weights{index}.npz"),
            "train", "--strategy", "auto", "--steps", "6", "--batch-size", "8",
            "--sequence-length", "32", "--sample-length", "5", "--backup-every", "2",
            "--backup-dir", str(shared_backup), "--logdir", "logs", "--output", "out/model.keras",
        ]
        processes.append(subprocess.Popen(command, cwd=cwd, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=600)
            outputs.append(stdout)
            assert process.returncode == 0, stderr[-3000:]
    finally:
        for process in processes:
            process.kill()
    for stdout in outputs:
        assert "2 replica(s)" in stdout, stdout  # auto chose multi_worker: one replica per worker
    first, second = (np.load(tmp_path / f"weights{i}.npz") for i in range(2))
    assert len(first.files) == len(second.files) > 0
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    # The chief (worker 0) wrote the model (carrying its tokenizer), the TensorBoard logs and the
    # export; worker 1 wrote nothing, and the backups are gone once the model is saved.
    chief_files = {p.relative_to(tmp_path / "worker0").parts[0] for p in (tmp_path / "worker0").rglob("*")}
    assert chief_files == {"out", "logs", "saved_models"}
    assert (tmp_path / "worker0" / "saved_models" / "model" / "1" / "saved_model.pb").exists()
    # The model carries its tokenizer: no sidecar file beside it.
    assert sorted(p.name for p in (tmp_path / "worker0" / "out").iterdir()) == ["model.keras"]
    assert list((tmp_path / "worker0" / "logs" / "train").iterdir())
    assert list((tmp_path / "worker1").rglob("*")) == []
    assert not shared_backup.exists()
