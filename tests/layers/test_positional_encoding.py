import numpy as np
import pytest

from keras_llm.layers import PositionalEncoding
from tests.harness import check_layer


def reference_table(length, depth, start=0):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...), float64."""
    table = np.zeros((length, depth), dtype="float64")
    for pos in range(start, start + length):
        for j in range(depth):
            angle = pos / 10000.0 ** (2 * (j // 2) / depth)
            table[pos - start, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return table


@pytest.mark.parametrize("length,depth", [(1, 2), (50, 16), (37, 7), (300, 33)])
def test_zeros_give_the_table(length, depth):
    out = PositionalEncoding()(np.zeros((2, length, depth), "float32"))
    np.testing.assert_allclose(out[1], reference_table(length, depth), atol=2e-5)


def test_adds_table_to_inputs_and_honours_start_index():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 8)).astype("float32")
    out = PositionalEncoding()(x, start_index=11)
    np.testing.assert_allclose(out, x + reference_table(5, 8, start=11), atol=1e-5)


def test_harness(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 6, 10)).astype("float32")
    check_layer(PositionalEncoding, {}, x, tmp_path=tmp_path, atol=1e-5)


def test_rejects_bad_wavelength():
    with pytest.raises(ValueError, match="max_wavelength=1"):
        PositionalEncoding(max_wavelength=1)
