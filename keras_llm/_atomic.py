"""The one way keras_llm writes an output: whole or not at all, readable, no litter.

Every file or directory keras_llm writes for a user (`.keras` models, tokenizer
configs, vocabularies, training backups, SavedModel versions) goes through
`atomic_output`:

- The writer writes to a temporary path beside the target, with a dot-name
  (TF Serving loads only directories named by an integer, and `ls` hides it)
  that says whose it is: `.NAME.incomplete-HOST-PID-RANDOM[SUFFIX]`. The
  suffix is the target's (`.keras`, `.weights.h5`): Keras picks the format
  from it.
- Once the writer returns, the output gets the mode the user's umask gives an
  ordinary file or directory (0644 / 0755 under umask 022; `tempfile`'s
  0600 / 0700 would hide it from a TF Serving process running as another
  user), a file is flushed to disk, and it is renamed into place. A writer
  that raises, or a process that is killed, leaves the target as it was.
- Before writing, what a killed writer of the same target left behind is
  removed when it provably died (same host, its process is gone); a
  temporary of a live process, or of another host, is named in a warning
  and left alone.
"""

import contextlib
import logging
import os
import re
import shutil
import socket
import uuid

logger = logging.getLogger("keras_llm")

_MARK = ".incomplete-"


def _host():
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _split(basename):
    """("gpt.tokenizer", ".json")-style split at the first dot: the suffix keeps formats whole."""
    dot = basename.find(".", 1)
    return (basename, "") if dot < 0 else (basename[:dot], basename[dot:])


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def clean_interrupted(path):
    """Removes the temporaries that killed writers of `path` left; returns what it removed.

    A temporary is removed when its writer ran on this host and its process
    no longer exists; others (a writer still running, or on another host of
    a shared filesystem) are named in a warning.
    """
    directory, basename = os.path.split(os.path.abspath(path))
    stem, suffix = _split(basename)
    pattern = re.compile(
        rf"^\.{re.escape(stem)}{re.escape(_MARK)}(?P<host>\w+)-(?P<pid>\d+)-[0-9a-f]+{re.escape(suffix)}$"
    )
    if not os.path.isdir(directory):
        return []
    removed = []
    for name in sorted(os.listdir(directory)):
        match = pattern.match(name)
        if not match:
            continue
        leftover = os.path.join(directory, name)
        pid = int(match["pid"])
        if match["host"] == _host() and pid != os.getpid() and not _alive(pid):
            _remove(leftover)
            removed.append(leftover)
        elif pid != os.getpid():
            logger.warning(
                "%s is another writer's unfinished output (process %d on %s); left alone: "
                "remove it if that writer is gone", leftover, pid, match["host"],
            )
    if removed:
        logger.info("removed what an interrupted writer left: %s", ", ".join(removed))
    return removed


@contextlib.contextmanager
def atomic_output(path, *, overwrite=True):
    """Yields a temporary path beside `path`; renames it to `path` once the block ends.

    The block writes a file or a directory at the yielded path (which does
    not exist yet). If the block raises, the temporary is removed and `path`
    is untouched. A directory replacing an existing one is swapped in with
    two renames, so `path` is never missing a complete version for longer
    than between them.

    Args:
        path: The output's final path. Its directory is created if needed.
        overwrite: Whether an existing `path` may be replaced; if not,
            `FileExistsError` names it before anything is written.

    Example:

    ```python
    import os
    import tempfile
    from keras_llm._atomic import atomic_output

    path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    with atomic_output(path) as temporary:
        with open(temporary, "w") as f:
            f.write("whole or not at all")
    assert open(path).read() == "whole or not at all"
    mask = os.umask(0o022); os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # not tempfile's 0600
    ```
    """
    path = os.path.abspath(os.fspath(path))
    directory, basename = os.path.split(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    os.makedirs(directory, exist_ok=True)
    clean_interrupted(path)
    stem, suffix = _split(basename)
    temporary = os.path.join(
        directory, f".{stem}{_MARK}{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"
    )
    try:
        yield temporary
        if not os.path.lexists(temporary):
            raise RuntimeError(f"the writer of {path} wrote nothing at {temporary}")
        is_directory = os.path.isdir(temporary)
        os.chmod(temporary, (0o777 if is_directory else 0o666) & ~_umask())
        if not is_directory:
            with open(temporary, "rb") as f:  # durable before it gets the final name
                os.fsync(f.fileno())
        if not overwrite and os.path.lexists(path):
            raise FileExistsError(f"{path} was created by someone else while this was written")
        if is_directory and os.path.isdir(path):
            # os.replace cannot replace a non-empty directory: move the old one aside.
            old = os.path.join(directory, f".{stem}.replaced-{uuid.uuid4().hex[:12]}")
            os.rename(path, old)
            os.rename(temporary, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` through `atomic_output`."""
    with atomic_output(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
