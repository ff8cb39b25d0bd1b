"""The shared layer harness: config, `.keras`, XLA and mixed-precision checks."""

import os

import keras
import numpy as np
import tensorflow as tf


def _as_tensors(inputs):
    return keras.tree.map_structure(tf.convert_to_tensor, inputs)


def _numpy(outputs):
    return [np.asarray(o, dtype="float32") for o in keras.tree.flatten(outputs)]


def check_layer(layer_cls, init_kwargs, inputs, call_kwargs=None, tmp_path=None, atol=1e-6):
    """Checks what every keras_llm layer must do.

    - `get_config` / `from_config` gives a layer with the same config and, with
      the same weights, the same outputs;
    - a functional model around it saves to `.keras` and loads with
      `keras.saving.load_model` with no `custom_objects` and `safe_mode` on,
      giving the same outputs;
    - under `tf.function(jit_compile=True)` it gives the same outputs as eagerly;
    - built with the `mixed_bfloat16` policy it computes in bfloat16 and gives
      finite outputs within bfloat16 tolerance of float32.

    `inputs` is one tensor (the first positional argument); `call_kwargs` may
    hold further tensors (masks, encoder outputs).
    """
    call_kwargs = dict(call_kwargs or {})
    tensor_kwargs = {k: v for k, v in call_kwargs.items() if isinstance(v, (np.ndarray, tf.Tensor))}
    static_kwargs = {k: v for k, v in call_kwargs.items() if k not in tensor_kwargs}
    layer = layer_cls(**init_kwargs)
    expected = _numpy(layer(inputs, **call_kwargs))

    def same(got, want, **tolerance):
        assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **tolerance)

    # Config round trip.
    clone = layer_cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(inputs, **call_kwargs)
    clone.set_weights(layer.get_weights())
    same(_numpy(clone(inputs, **call_kwargs)), expected, atol=atol)

    # `.keras` round trip of a functional model holding the layer.
    def spec(x):
        x = np.asarray(x)
        return keras.Input(shape=x.shape[1:], dtype=str(x.dtype), batch_size=x.shape[0])

    symbolic = spec(inputs)
    symbolic_kwargs = {k: spec(v) for k, v in tensor_kwargs.items()}
    model = keras.Model(
        [symbolic, *symbolic_kwargs.values()],
        layer(symbolic, **symbolic_kwargs, **static_kwargs),
    )
    model_inputs = [inputs, *tensor_kwargs.values()]
    path = os.path.join(str(tmp_path), f"{layer.name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    same(_numpy(loaded(model_inputs)), expected, atol=atol)

    # XLA.
    compiled = tf.function(lambda *a: model(list(a)), jit_compile=True)
    same(_numpy(compiled(*_as_tensors(model_inputs))), expected, atol=1e-5, rtol=1e-5)

    # Mixed precision: same weights, bfloat16 compute.
    mixed = layer_cls(**{**init_kwargs, "dtype": "mixed_bfloat16"})
    mixed(inputs, **call_kwargs)
    mixed.set_weights(layer.get_weights())
    outputs = keras.tree.flatten(mixed(inputs, **call_kwargs))
    assert len(outputs) == len(expected)
    for out, want in zip(outputs, expected):
        if "float" in str(out.dtype) and out.ndim == np.ndim(want):
            got = np.asarray(tf.cast(out, tf.float32))
            assert np.all(np.isfinite(got))
            np.testing.assert_allclose(got, want, atol=0.1, rtol=0.05)
    return layer


def _same_outputs(got, want, atol):
    got, want = keras.tree.flatten(got), keras.tree.flatten(want)
    assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=atol)


def check_model(model, x, y, sample_weight=None, tmp_path=None, atol=1e-6):
    """Checks what every model a keras_llm builder returns must do.

    - it comes compiled: `train_on_batch` on `(x, y, sample_weight)` gives a
      finite loss and changes (nearly) every trainable weight (two steps: the
      default schedule's warm-up starts at a learning rate of 0);
    - `type(model).from_config(model.get_config())` rebuilds it: same class,
      same `task`, same number of parameters and, with the same weights,
      the same outputs;
    - it saves to `.keras` and loads with no `custom_objects` and `safe_mode`
      on: same outputs, same optimizer state (so training resumes where it
      was) and the same loss on the batch.

    Returns the trained model.
    """
    assert model.optimizer is not None, "builders return compiled models"
    before = [np.asarray(v) for v in model.trainable_variables]
    for _ in range(2):
        loss = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)["loss"]
        assert np.isfinite(loss), loss
    changed = [not np.array_equal(b, np.asarray(v)) for b, v in zip(before, model.trainable_variables)]
    assert sum(changed) > 0.9 * len(changed), (
        f"only {sum(changed)} of {len(changed)} weights changed in two training steps"
    )
    expected = model(x)

    # Config round trip.
    clone = type(model).from_config(model.get_config())
    assert type(clone) is type(model) and clone.task == model.task
    assert clone.count_params() == model.count_params()
    clone.set_weights(model.get_weights())
    _same_outputs(clone(x), expected, atol)

    # `.keras` round trip, compiled state included.
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.task == model.task
    _same_outputs(loaded(x), expected, atol)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    want = model.evaluate(x, y, sample_weight=sample_weight, verbose=0, return_dict=True)["loss"]
    got = loaded.evaluate(x, y, sample_weight=sample_weight, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    return model
