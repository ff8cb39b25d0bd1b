"""`OffsetDense`: Keras's Dense when float, and int4 blocks with float offsets against NumPy float64."""

import os

import keras
import numpy as np
import pytest

from keras_llm.layers import OffsetDense
from tests.harness import check_layer

RNG = np.random.default_rng(0)


def _int4_layer(input_dim, units=6, use_bias=True, block_size=32):
    layer = OffsetDense(units, use_bias=use_bias)
    layer.build((None, input_dim))
    layer.quantize("int4", config=keras.quantizers.Int4QuantizationConfig(block_size=block_size))
    return layer


def _write_blocks(layer, input_dim, units, groups):
    """Random 4-bit values, scales, zero points and offsets written into `layer`; returned."""
    values = RNG.integers(-8, 8, size=(input_dim, units)).astype("int8")
    scale = RNG.uniform(0.01, 0.1, size=(groups, units)).astype("float32")
    zero = RNG.integers(-3, 4, size=(groups, units)).astype("int8")
    offset = RNG.normal(size=(groups, units)).astype("float32")
    layer._kernel.assign(keras.quantizers.pack_int4(values, axis=-1)[0])
    for variable, value in ((layer.kernel_scale, scale), (layer.kernel_zero, zero),
                            (layer.kernel_offset, offset)):
        variable.assign(value)
    return values, scale, zero, offset


def test_a_float_offset_dense_passes_the_layer_harness(tmp_path):
    check_layer(OffsetDense, {"units": 5}, RNG.normal(size=(2, 3, 8)).astype("float32"),
                tmp_path=tmp_path, atol=1e-5)


@pytest.mark.parametrize("input_dim", [64, 80])  # 80: a last block of 16 inputs
def test_int4_blocks_with_offsets_compute_the_float64_formula(input_dim):
    groups = -(-input_dim // 32)
    layer = _int4_layer(input_dim)
    layer.bias.assign(RNG.normal(size=6).astype("float32"))
    values, scale, zero, offset = _write_blocks(layer, input_dim, 6, groups)
    block = np.arange(input_dim) // 32
    kernel = ((values.astype(np.float64) - zero[block]) * scale[block].astype(np.float64)
              + offset[block])  # [in, units]
    x = RNG.normal(size=(2, 3, input_dim)).astype("float32")
    expected = x.astype(np.float64) @ kernel + np.asarray(layer.bias, np.float64)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-4)


def test_offsets_round_trip_through_a_keras_file(tmp_path):
    layer = _int4_layer(64, use_bias=False)
    _write_blocks(layer, 64, 6, 2)
    inputs = keras.Input((64,))
    model = keras.Model(inputs, layer(inputs))
    path = os.path.join(tmp_path, "offsets.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom objects
    x = RNG.normal(size=(4, 64)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    np.testing.assert_array_equal(np.asarray(loaded.layers[-1].kernel_offset), np.asarray(layer.kernel_offset))


def test_lora_is_refused_once_offsets_are_written():
    plain = _int4_layer(64)  # Keras's own int4 (offsets zero): QLoRA as Keras does it
    plain.enable_lora(2)
    assert plain.lora_enabled
    layer = _int4_layer(64)
    _write_blocks(layer, 64, 6, 2)
    with pytest.raises(ValueError, match=r"GGUF file's 4-bit blocks with offsets.*rank=2"):
        layer.enable_lora(2)
    assert not layer.lora_enabled


def test_an_activation_is_refused_by_name():
    with pytest.raises(ValueError, match=r"takes no activation. Received: activation='relu'"):
        OffsetDense(4, activation="relu")
