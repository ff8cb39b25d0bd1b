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
  that raises leaves the target as it was; so does a killed process, once
  the next write of the target has cleaned up (a directory replacing
  another is swapped in with two renames: the previous version, moved aside
  under `.NAME.replaced-HOST-PID-RANDOM`, is put back if the writer died
  between them).
- Before writing, what a killed writer of the same target left behind is
  cleaned up when its writer ran on this host and its process no longer
  exists (hosts are told apart by name: containers that share a filesystem
  and a host name but not their process ids would mistake each other's
  writers for dead ones); a leftover of a live process, or of another host,
  is named in a warning and left alone.
- "Whole" holds against a killed process. Against a power loss, files are
  fsynced before their rename, but a directory's files (a SavedModel) and the
  renames themselves are not.
"""

import contextlib
import logging
import os
import re
import shutil
import socket
import uuid

logger = logging.getLogger("keras_llm")

def _host():
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _split(basename):
    """("gpt.tokenizer", ".json")-style split at the first dot: the suffix keeps formats whole."""
    dot = basename.find(".", 1)
    return (basename, "") if dot < 0 else (basename[:dot], basename[dot:])


def _umask():
    """The process's umask, read without changing it where Linux tells it.

    `os.umask` can only be read by setting it: for that instant another
    thread (tf.data, TensorBoard) would create files with mode 0666.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
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


_LEFTOVER = re.compile(
    r"^\.(?P<stem>[^.]+)\.(?P<kind>incomplete|replaced)-(?P<host>\w+)-(?P<pid>\d+)-[0-9a-f]+"
    r"(?P<suffix>.*)$"
)


def clean_interrupted(path):
    """Cleans up after killed writers of `path`; returns the leftovers it removed or restored.

    A leftover of a writer that ran on this host and whose process no longer
    exists is dealt with: an unfinished output is removed; a previous version
    that a killed writer had moved aside (`.NAME.replaced-...`, during the two
    renames that swap a directory) is renamed back when `path` is missing, and
    removed otherwise. Leftovers of a writer that may still run (a live
    process, or another host of a shared filesystem) are named in a warning.
    """
    directory, basename = os.path.split(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(directory):
        return []
    stem, suffix = _split(basename)
    found = []
    for name in os.listdir(directory):
        match = _LEFTOVER.match(name)
        if match and match["stem"] == stem and match["suffix"] == suffix:
            found.append((match["kind"] != "replaced", name, match))  # moved-aside ones first
    handled = []
    for _, name, match in sorted(found):
        leftover = os.path.join(directory, name)
        pid = int(match["pid"])
        if pid == os.getpid():
            continue
        if match["host"] != _host() or _alive(pid):
            logger.warning(
                "%s is another writer's unfinished output (process %d on %s); left alone: "
                "remove it if that writer is gone", leftover, pid, match["host"],
            )
            continue
        if match["kind"] == "replaced" and not os.path.lexists(path):
            os.rename(leftover, path)  # the previous version, complete: back in place
            logger.warning("restored %s, which an interrupted writer had moved aside", path)
        else:
            _remove(leftover)
        handled.append(leftover)
    if handled:
        logger.info("cleaned up after an interrupted writer: %s", ", ".join(handled))
    return handled


def clean_interrupted_in(directory):
    """`clean_interrupted` for every target in `directory` that has leftovers of killed writers."""
    if not os.path.isdir(directory):
        return []
    targets = {
        match["stem"] + match["suffix"]
        for match in map(_LEFTOVER.match, os.listdir(directory)) if match
    }
    return [path for target in sorted(targets)
            for path in clean_interrupted(os.path.join(directory, target))]


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
    tag = f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    temporary = os.path.join(directory, f".{stem}.incomplete-{tag}{suffix}")
    old = None
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
            # os.replace cannot replace a non-empty directory: move the old one
            # aside (a name clean_interrupted restores if this process dies
            # before the next rename), then move the new one in.
            old = os.path.join(directory, f".{stem}.replaced-{tag}{suffix}")
            os.rename(path, old)
            os.rename(temporary, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        if old is not None and os.path.lexists(old) and not os.path.lexists(path):
            os.rename(old, path)  # the swap failed halfway: the previous version stays
        raise


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` through `atomic_output`."""
    with atomic_output(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
