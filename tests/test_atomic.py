"""keras_llm._atomic: the one writer every output goes through."""

import os
import subprocess
import sys

import pytest

from keras_llm._atomic import atomic_output, clean_interrupted, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return os.stat(path).st_mode & 0o777


def test_file_gets_the_umask_mode_and_no_litter(tmp_path, umask_022):
    path = tmp_path / "out" / "model.tokenizer.json"
    write_text(path, "{}")
    assert path.read_text() == "{}"
    assert _mode(path) == 0o644  # tempfile.mkstemp would give 0600
    assert os.listdir(path.parent) == ["model.tokenizer.json"]


def test_directory_gets_the_umask_mode_and_replaces_the_old_one(tmp_path, umask_022):
    path = tmp_path / "1"
    for content in ("old", "new"):
        with atomic_output(path) as temporary:
            os.makedirs(temporary)
            (open(os.path.join(temporary, "f"), "w")).write(content)
    assert (path / "f").read_text() == "new"
    assert _mode(path) == 0o755  # tempfile.mkdtemp would give 0700
    assert sorted(os.listdir(tmp_path)) == ["1"]


def test_other_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o640


def test_a_failing_writer_leaves_the_target_as_it_was(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "before")
    with pytest.raises(ZeroDivisionError):
        with atomic_output(path) as temporary:
            open(temporary, "w").write("half")
            1 / 0
    assert path.read_text() == "before"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_no_overwrite(tmp_path):
    write_text(tmp_path / "a.txt", "x")
    with pytest.raises(FileExistsError, match="a.txt"):
        with atomic_output(tmp_path / "a.txt", overwrite=False):
            pass


def test_suffix_is_kept_for_format_detection(tmp_path):
    with atomic_output(tmp_path / "step-1.weights.h5") as temporary:
        assert temporary.endswith(".weights.h5")
        assert os.path.basename(temporary).startswith(".step-1.incomplete-")
        open(temporary, "w").close()


@pytest.mark.slow
def test_a_killed_writers_leftover_is_cleaned_by_the_next_run(tmp_path):
    """A writer killed with SIGKILL mid-write; the next write of the same path removes its file."""
    path = tmp_path / "model.keras"
    script = (
        "import os, sys, time\n"
        "from keras_llm._atomic import atomic_output\n"
        f"with atomic_output({str(path)!r}) as t:\n"
        "    open(t, 'w').write('partial')\n"
        "    print(t, flush=True)\n"
        "    time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    leftover = process.stdout.readline().strip()
    assert os.path.exists(leftover)
    # While its writer lives, the temporary is not touched.
    assert clean_interrupted(path) == [] and os.path.exists(leftover)
    process.kill()
    process.wait()
    write_text(path, "whole")
    assert not os.path.exists(leftover)
    assert os.listdir(tmp_path) == ["model.keras"]


def test_other_targets_temporaries_are_not_touched(tmp_path):
    stranger = tmp_path / ".other.incomplete-host-1-abc.keras"
    stranger.write_text("")
    write_text(tmp_path / "model.keras", "x")
    assert stranger.exists()


def _dead_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1  # no process can have it


def test_a_swap_killed_between_its_renames_gets_the_previous_version_back(tmp_path):
    from keras_llm._atomic import _host, clean_interrupted_in

    tag = f"{_host()}-{_dead_pid()}-abc123"
    old = tmp_path / f".1.replaced-{tag}"  # the previous version, moved aside
    old.mkdir()
    (old / "f").write_text("old")
    new = tmp_path / f".1.incomplete-{tag}"  # the new one, not yet renamed in
    new.mkdir()
    (new / "f").write_text("new")
    assert sorted(clean_interrupted_in(tmp_path)) == sorted([str(old), str(new)])
    assert os.listdir(tmp_path) == ["1"] and (tmp_path / "1" / "f").read_text() == "old"


def test_a_swap_failing_at_its_second_rename_keeps_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "1"
    path.mkdir()
    (path / "f").write_text("old")
    renames = []
    real_rename = os.rename

    def rename(source, target):
        renames.append(target)
        if len(renames) == 2:
            raise OSError("disk gone")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        with atomic_output(path) as temporary:
            os.makedirs(temporary)
            (open(os.path.join(temporary, "f"), "w")).write("new")
    monkeypatch.setattr(os, "rename", real_rename)
    assert os.listdir(tmp_path) == ["1"] and (path / "f").read_text() == "old"


def test_a_live_or_foreign_writers_leftover_is_named_and_kept(tmp_path, caplog):
    foreign = tmp_path / ".model.incomplete-otherhost-1-abc.keras"
    foreign.write_text("")
    with caplog.at_level("WARNING", logger="keras_llm"):
        clean_interrupted(tmp_path / "model.keras")
    assert foreign.exists() and str(foreign) in caplog.text
