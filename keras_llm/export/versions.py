"""The versioned writer: `path/VERSION/` in TF Serving's layout, whole or not at all.

A version is written through `keras_llm._atomic.atomic_output`: into a
dot-named temporary beside it (TF Serving loads only integer-named
directories) and renamed into place. Before each write, what killed exports
left anywhere in the base path (any version's temporaries, whose writer
process is gone) is cleaned up.
"""

import contextlib
import logging
import os
import re

import tensorflow as tf

from keras_llm._atomic import atomic_output, clean_interrupted_in

logger = logging.getLogger("keras_llm")


def write_version(module, path, version=None, overwrite=False):
    """Saves `module` (a `Serving`) as `path/VERSION`; returns that directory's path.

    Args:
        module: A `tf.Module` with a `signatures()` method.
        path: The model's base path: a directory, or not yet existing.
        version: An int >= 0; default: one more than the largest there.
        overwrite: Whether an existing version may be replaced.

    Returns:
        The written version's path.

    Raises:
        ValueError: `path` is a file, or `version` is not an int >= 0.
        FileExistsError: the version exists and `overwrite` is False.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            "`path` must be a directory (the model's base path, where versions go) or not "
            f"exist yet. Received: path={path!r}, which is a file"
        )
    clean_interrupted_versions(path)  # first: a killed swap's previous version comes back
    existing = [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
    if version is None:
        version = max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"`version` must be an int >= 0. Received: version={version!r}")
    target = os.path.join(path, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{target} exists; pass overwrite=True (--overwrite) to replace it, or another version."
        )
    # A dot-named temporary (TF Serving loads only integer-named directories),
    # renamed into place: a server watching `path` never sees half a version.
    with atomic_output(target, overwrite=overwrite) as temporary, _without_optimizer(
        getattr(module, "model", None)
    ):
        tf.saved_model.save(module, temporary, signatures=module.signatures(), options=_OPTIONS)
    return target


# No gradient functions: TensorFlow traces and stores one for each op written
# with a custom gradient (Keras's layers have a few per block), which only a
# caller taking gradients through the loaded graph would use; serving never
# does. 10% of SmolLM2-135M's export time (3.9 of 39.6 s).
_OPTIONS = tf.saved_model.SaveOptions(experimental_custom_gradients=False)


@contextlib.contextmanager
def _without_optimizer(model):
    """`model` with no optimizer while a SavedModel is written, then its own again.

    A compiled Keras model's optimizer is an attribute, so TensorFlow's
    object graph saves it, slot variables included: a model that trained
    with Adam exported its two moments beside its weights (3x the size, the
    weights stored under `model/optimizer`). Serving never reads them. Only
    the object graph's edge is cut (TensorFlow's `AutoTrackable` tracking:
    setting the attribute to None leaves the edge in place), and put back
    afterwards: the model keeps its optimizer and can go on training.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or "optimizer" not in model._trackable_children():
        yield
        return
    model._delete_tracking("optimizer")
    try:
        yield
    finally:
        model._track_trackable(optimizer, "optimizer", overwrite=True)


def clean_interrupted_versions(path):
    """Cleans up after killed exports of every version in `path` (`_atomic`); names older leftovers.

    Returns:
        The leftovers removed or restored.
    """
    if not os.path.isdir(path):
        return []
    handled = clean_interrupted_in(path)
    for name in sorted(os.listdir(path)):
        if re.match(r"^\.\d+-(incomplete|replaced)-", name):
            # Earlier exports named their temporaries (tempfile.mkdtemp) without
            # the writer's process: whether it is gone cannot be told.
            logger.warning(
                "%s was left by an interrupted export of an earlier keras_llm; remove it",
                os.path.join(path, name),
            )
    return handled


# The names of the previous release (keras_llm.export.saved_model).
_write_version = write_version
_clean_interrupted_versions = clean_interrupted_versions
