"""Training that survives being killed: atomic backups and exact resumption."""

import collections
import logging
import math
import os
import re

import h5py
import keras

from keras_llm._atomic import atomic_output, clean_interrupted_in
from keras_llm.distribute import is_chief

logger = logging.getLogger("keras_llm")

_BACKUP = re.compile(r"^step-(\d+)\.weights\.h5$")
# Keras's weight files leave out the random-number states of dropout layers
# (SeedGenerator); a backup stores them here, so a resumed run draws the same
# dropout masks as an uninterrupted one.
_RNG_GROUP = "keras_llm_rng_states"


def _rng_states(model):
    return [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]


class TrainingBackup(keras.callbacks.Callback):
    """Saves the whole training state every `every` steps, atomically.

    A backup is the model's weights, the optimizer's variables (its step
    counter, hence the learning-rate schedule's position, and its moments) and
    the random-number states of dropout (which Keras's weight files leave
    out: they go in an extra HDF5 group), in one `.weights.h5` file named
    after the global step. It is written by keras_llm's atomic writer
    (`keras_llm._atomic.atomic_output`): under a temporary name in
    `backup_dir`, renamed into place once complete, so a process killed
    while writing leaves the previous backup intact and no partial file under
    a backup's name; the next training run removes such an unfinished file.
    The newest `keep` backups are kept. In a multi-worker run only the chief
    writes. Use it through `fit_resumable`, which also restores and moves the
    data to where the backup stopped.

    Args:
        backup_dir: Directory of the backups (created if missing), on a
            filesystem that every worker mounts (a local disk for one machine;
            NFS or a mounted bucket for several). HDF5 files are written
            there directly, so `gs://` URLs are not supported.
        every: Save after every `every` training steps (and at the end of
            training).
        keep: How many backups to keep.

    Example:

    ```python
    import tempfile
    import keras_llm

    backup = keras_llm.training.TrainingBackup(tempfile.mkdtemp(), every=50)
    assert backup.latest_step() is None  # nothing saved yet
    ```
    """

    def __init__(self, backup_dir, every=100, keep=2):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
            raise ValueError(f"`every` must be a positive int. Received: every={every!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep <= 0:
            raise ValueError(f"`keep` must be a positive int. Received: keep={keep!r}")
        self.backup_dir = os.fspath(backup_dir)
        if "://" in self.backup_dir:
            raise ValueError(
                "`backup_dir` must be a local or mounted directory: backups are HDF5 files "
                f"written in place. Received: backup_dir={self.backup_dir!r}"
            )
        self.every = every
        self.keep = keep

    def _backups(self):
        """`{step: path}` of the complete backups in `backup_dir`."""
        if not os.path.isdir(self.backup_dir):
            return {}
        found = {}
        for name in os.listdir(self.backup_dir):
            match = _BACKUP.match(name)
            if match:
                found[int(match.group(1))] = os.path.join(self.backup_dir, name)
        return found

    def latest_step(self):
        """The global step of the newest backup, or None if there is none."""
        return max(self._backups(), default=None)

    def restore(self, model):
        """Loads the newest backup into `model` and returns its step (0 if none).

        The model must be compiled. A backup written for a model of another
        shape is a `ValueError` that says what differs (its weights' count or
        shapes). A backup that fails to load otherwise (it should not: backups
        are renamed into place only when complete) is reported and the next
        newest is tried. When `backup_dir` holds only what a killed writer
        left unfinished, a warning says that training starts from step 0.
        """
        if model.optimizer is None:
            raise ValueError("TrainingBackup.restore: compile the model first.")
        backups = self._backups()
        if not backups:
            unfinished = self._unfinished()
            if unfinished:
                # A run killed while writing its first backup: nothing to resume.
                logger.warning(
                    "no complete backup in %s (a killed run left %s unfinished): "
                    "training starts from step 0", self.backup_dir, ", ".join(unfinished),
                )
            return 0
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)
        for step in sorted(backups, reverse=True):
            try:
                mismatch = _mismatch(backups[step], model)
            except Exception as error:  # not readable: a damaged file
                logger.warning("backup %s could not be read (%s); trying an older one", backups[step], error)
                continue
            if mismatch:
                raise ValueError(
                    f"backup {backups[step]} was written for a model of another shape: "
                    f"{mismatch}. Use another backup_dir for this model."
                )
            try:
                model.load_weights(backups[step])
                with h5py.File(backups[step], "r") as f:
                    saved = [f[_RNG_GROUP][str(i)][()] for i in range(len(f[_RNG_GROUP]))]
            except Exception as error:  # a damaged file: fall back to the one before
                logger.warning("backup %s could not be loaded (%s); trying an older one", backups[step], error)
                continue
            states = _rng_states(model)
            if len(saved) != len(states):
                raise ValueError(
                    f"backup {backups[step]} holds {len(saved)} random-number states; this "
                    f"model has {len(states)}: was it written for another model?"
                )
            for variable, value in zip(states, saved):
                variable.assign(value)
            restored = int(model.optimizer.iterations.numpy())
            if restored != step:
                raise ValueError(
                    f"backup {backups[step]} holds optimizer step {restored}, not {step}: "
                    "was it written by another run or renamed by hand?"
                )
            logger.info("resumed from %s (step %d)", backups[step], step)
            return step
        raise ValueError(
            f"none of the backups in {self.backup_dir} could be loaded: "
            f"{sorted(backups.values())}"
        )

    def _unfinished(self):
        """Names of backups that a killed writer left under their temporary names."""
        if not os.path.isdir(self.backup_dir):
            return []
        return sorted(n for n in os.listdir(self.backup_dir)
                      if n.startswith(".step-") and ".incomplete-" in n)

    def save(self):
        """Writes a backup of the current step, unless this worker is not the chief."""
        if not is_chief(self.model.distribute_strategy):
            return
        final = os.path.join(self.backup_dir, f"step-{self._step():09d}.weights.h5")
        with atomic_output(final) as temporary:  # keeps the `.weights.h5` Keras needs
            self.model.save_weights(temporary)
            with h5py.File(temporary, "a") as f:
                group = f.create_group(_RNG_GROUP)
                for i, variable in enumerate(_rng_states(self.model)):
                    group.create_dataset(str(i), data=keras.ops.convert_to_numpy(variable.value))
        backups = self._backups()
        for old in sorted(backups)[: -self.keep]:
            os.remove(backups[old])

    def _clean_interrupted(self):
        """Cleans up after killed writers in `backup_dir` (see `keras_llm._atomic`)."""
        clean_interrupted_in(self.backup_dir)

    def remove(self):
        """Deletes the backups (and the unfinished ones of killed writers).

        Call it on the chief only; the directory goes too if that empties it.
        """
        if not os.path.isdir(self.backup_dir):
            return
        self._clean_interrupted()
        for name in os.listdir(self.backup_dir):
            # `.tmp-*`: what a killed writer of an earlier keras_llm left.
            if _BACKUP.match(name) or name.startswith(".tmp-"):
                os.remove(os.path.join(self.backup_dir, name))
        if not os.listdir(self.backup_dir):
            os.rmdir(self.backup_dir)

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        self._period = self._step() // self.every
        if is_chief(self.model.distribute_strategy):
            self._clean_interrupted()

    def on_train_batch_end(self, batch, logs=None):
        # A new period of `every` steps began (steps_per_execution > 1 can
        # step over the exact multiple).
        if self._step() // self.every > self._period:
            self._period = self._step() // self.every
            self.save()

    def on_train_end(self, logs=None):
        if self.latest_step() != self._step():
            self.save()


def _mismatch(path, model):
    """What differs between the weights in backup `path` and `model`'s, or None.

    Keras loads a backup of a larger model into a smaller one without a word
    (skipping the optimizer's variables), and fails on other shapes with a
    message listing every value; the shapes say it shorter.
    """
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            return None  # not a layout this check knows: Keras's loader judges
        saved = []
        f["layers"].visititems(
            lambda _, item: saved.append(tuple(item.shape)) if isinstance(item, h5py.Dataset) else None
        )
    rng = {id(v) for v in _rng_states(model)}  # not in Keras's weight files
    ours = [tuple(v.shape) for v in model.weights if id(v) not in rng]
    saved_shapes, our_shapes = collections.Counter(saved), collections.Counter(ours)
    if saved_shapes == our_shapes:
        return None
    # The largest first: the tables say most (the vocabulary, the width).
    largest = lambda shapes: sorted(shapes.elements(), key=lambda s: (-math.prod(s), s))
    only_saved, only_ours = largest(saved_shapes - our_shapes), largest(our_shapes - saved_shapes)
    counts = (f"it holds {len(saved)} weights and this model {len(ours)} (a different number "
              "of layers?); " if len(saved) != len(ours) else "")
    return (f"{counts}shapes only in the backup: {only_saved[:5] or 'none'}, only in this "
            f"model: {only_ours[:5] or 'none'}")


class _StopAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.step:
            self.model.stop_training = True


def fit_resumable(
    model,
    dataset,
    *,
    epochs,
    steps_per_epoch,
    backup_dir,
    backup_every=100,
    remove_backups=False,
    callbacks=(),
    **fit_kwargs,
):
    """`model.fit` that a rerun continues exactly where a killed run stopped.

    Restores the newest backup in `backup_dir` (weights, optimizer state and
    step, dropout RNG state), skips the batches the backup had already
    trained on, and fits the remaining `epochs * steps_per_epoch - step`
    steps, saving a `TrainingBackup` every `backup_every` steps. So the same
    command, rerun after a kill, ends with the weights an uninterrupted run
    would have had, if `dataset` yields the same batches in the same order on
    every run's first iteration (keras_llm's `data` pipelines do, given a
    seed) and repeats (`repeat=True`) for at least that many steps. After a
    resume mid-epoch, epochs are counted from the backup's step (validation
    runs at those points) and the last one ends at the total.

    Build and compile the model (under the strategy's scope) before calling
    it. Batch `dataset` by the global batch size; `model.fit` splits it across
    replicas and, in a multi-worker run, shards it by data.

    Args:
        model: A compiled `keras.Model`.
        dataset: A repeating `tf.data.Dataset` of batches.
        epochs: Number of epochs of `steps_per_epoch` steps.
        steps_per_epoch: Steps per epoch.
        backup_dir: Where backups go (the same directory on every rerun).
        backup_every: Steps between backups.
        remove_backups: Delete the backups once training has finished (set it
            when the caller saves the finished model itself).
        callbacks: More Keras callbacks.
        **fit_kwargs: Passed to `model.fit` (`validation_data`, `verbose`, ...).

    Returns:
        The global step training resumed from (0 for a fresh run).

    Example:

    ```python
    import tempfile
    import numpy as np
    import tensorflow as tf
    import keras_llm

    model = keras_llm.build_gpt("gpt_nano", num_layers=1)
    ids = np.random.default_rng(0).integers(0, 256, size=(8, 17)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices(
        ({"token_ids": ids[:, :-1], "padding_mask": np.ones((8, 16), "int32")}, ids[:, 1:])
    ).batch(4).repeat()
    backup_dir = tempfile.mkdtemp()
    keras_llm.training.fit_resumable(
        model, data, epochs=2, steps_per_epoch=2, backup_dir=backup_dir, verbose=0
    )
    # Rerunning finds the finished run's backup and trains no further.
    assert keras_llm.training.fit_resumable(
        model, data, epochs=2, steps_per_epoch=2, backup_dir=backup_dir, verbose=0
    ) == 4
    ```
    """
    backup = TrainingBackup(backup_dir, every=backup_every)
    backup.set_model(model)
    total = epochs * steps_per_epoch
    step = backup.restore(model)
    if step > total:
        raise ValueError(
            f"The backup in {backup_dir} is at step {step}, past this run's "
            f"{total} steps (epochs={epochs} x steps_per_epoch={steps_per_epoch}): "
            "use a new backup_dir for a different run."
        )
    remaining = total - step
    if remaining:
        # One `fit` call, so one iterator over `dataset`: a second iterator
        # over a dataset that reshuffles each iteration would see another order.
        # After a resume mid-epoch, epochs run from the backup's step, and the
        # last one stops at `total`.
        epoch = step // steps_per_epoch
        model.fit(
            dataset.skip(step),
            initial_epoch=epoch,
            epochs=epoch - (-remaining // steps_per_epoch),
            steps_per_epoch=steps_per_epoch,
            callbacks=[backup, _StopAt(total), *callbacks],
            # The dataset is shuffled by its pipeline; Keras ignores (and warns
            # about) shuffle=True for a tf.data.Dataset.
            **{"shuffle": False, **fit_kwargs},
        )
    if remove_backups and is_chief(model.distribute_strategy):
        backup.remove()
    return step
