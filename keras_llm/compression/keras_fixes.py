"""Three fixes for Keras 3.15's GPTQ and AWQ: calibrating, saving, and GPTQ's speed on TensorFlow.

1. Calibrating. Keras collects the statistics GPTQ and AWQ weigh their
   rounding by (each projection's input Hessian `X^T X`, AWQ's activation
   sizes) by wrapping each layer's `call` while the calibration text runs
   through a block (`gptq_core.stream_hessians`, `awq_core`'s hooks). But
   `model.quantize` has already given those layers the "gptq"/"awq" dtype
   policy, and a quantized layer runs `quantized_call` (`_gptq_call`,
   `_awq_call`), never `call`: no statistic is collected (checked here: zero
   Hessian updates for a whole model), GPTQ's Hessian stays zero (its dead
   columns are set to 1: plain rounding to nearest) and AWQ's scales stay 1.
   Both then equal round-to-nearest int4. `calibrating()` makes a layer that
   is not yet calibrated run `call` (the float kernel, as Keras's
   `_gptq_call` computes it then, through the wrapper), so the statistics
   are collected; calibrated layers compute as Keras wrote them. Found
   here (no upstream report found); it can go once a Keras release collects
   them itself: tests/compression/test_calibrated_quantize.py then passes
   without it.

2. Saving. Keras 3.15.1's `Dense` and `EinsumDense` save a GPTQ or AWQ
   layer without its zero points: `save_own_variables` writes `kernel_zero`
   only when `_get_kernel_with_merged_lora()` returns one, and that method
   returns `(kernel, None, None)` in those modes (the zero it means is
   LoRA's merged int4 one). `load_own_variables` expects the zeros, so a
   calibrated model's `.keras` file does not load ("expected 4 variables,
   but received 3"). `install()` makes that method return the layer's own
   `kernel_zero` in modes "gptq" and "awq" (the kernel and scale it returns
   are not read in those modes); nothing changes in other modes, or where
   Keras already returns a zero point. keras-team/keras#23321 (merged
   2026-07-24, not in a release as of 3.15.1) fixes it the same way; this
   can go once keras_llm requires a Keras release with it.
   `keras_llm.compression.quantize` installs it when imported, so it holds
   in every process that can quantize, load or save a keras_llm model.

3. Speed. GPTQ rounds one weight column at a time, eagerly, and writes each
   column with `keras.ops.slice_update`, which Keras's TensorFlow backend
   runs as XLA's DynamicUpdateSlice: eagerly, XLA compiles it anew for every
   shape, and the shape of what is written changes with each column (the
   columns left in a block of 128), so every write costs a compilation
   (20 ms here; 80% of calibrating a tiny Llama block). `calibrating()`
   makes those eager writes a NumPy copy with the slice assigned (the same
   values, no compilation); inside a traced function Keras's op is kept.
   It can go when Keras's TensorFlow backend writes eager slices without XLA.

`keras_llm.quantize` runs Keras's GPTQ and AWQ inside `calibrating()`.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow import core as _tensorflow_core

_PATCHED = "_keras_llm_saves_gptq_zero_points"


def install():
    """Installs the fix once per process (idempotent)."""
    for cls in (keras.layers.Dense, keras.layers.EinsumDense):
        if getattr(cls, _PATCHED, False):
            continue
        original = cls._get_kernel_with_merged_lora

        def kernel_scale_and_zero(self, original=original):
            kernel, scale, zero = original(self)
            if zero is None and self.quantization_mode in ("gptq", "awq"):
                zero = self.kernel_zero
            return kernel, scale, zero

        cls._get_kernel_with_merged_lora = kernel_scale_and_zero
        setattr(cls, _PATCHED, True)


@contextlib.contextmanager
def calibrating():
    """Fixes 1 and 3 (above) while the block runs: Keras's GPTQ and AWQ see their statistics."""
    with _uncalibrated_layers_run_call(), _eager_slice_updates():
        yield


@contextlib.contextmanager
def _uncalibrated_layers_run_call():
    patched = []
    for cls in (keras.layers.Dense, keras.layers.EinsumDense):
        for mode in ("gptq", "awq"):
            name = f"_{mode}_call"
            original = getattr(cls, name)

            def quantized_call(self, *args, original=original, mode=mode, **kwargs):
                if getattr(self, f"is_{mode}_calibrated", False):
                    return original(self, *args, **kwargs)
                return self.call(*args, **kwargs)  # Keras's statistics wrapper, while it runs

            setattr(cls, name, quantized_call)
            patched.append((cls, name, original))
    try:
        yield
    finally:
        for cls, name, original in patched:
            setattr(cls, name, original)


@contextlib.contextmanager
def _eager_slice_updates():
    original = _tensorflow_core.slice_update

    def slice_update(inputs, start_indices, updates):
        if not tf.executing_eagerly():
            return original(inputs, start_indices, updates)
        # A copy with the slice assigned, in NumPy: one C copy instead of a
        # compilation (or of a scatter's index tensors, 3 ms a call).
        written = np.array(inputs)
        updates = np.asarray(updates, written.dtype)
        starts = np.asarray(start_indices).reshape(-1).tolist()
        written[tuple(slice(i, i + n) for i, n in zip(starts, updates.shape))] = updates
        return tf.convert_to_tensor(written)

    _tensorflow_core.slice_update = slice_update
    try:
        yield
    finally:
        _tensorflow_core.slice_update = original
