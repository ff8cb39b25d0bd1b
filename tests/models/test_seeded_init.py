"""Seeded initial weights follow the order of the layers, as they did before the decoders shared
their graph code (`DecoderModel._build_decoder`)."""

import keras
import numpy as np
import pytest

import keras_llm


@pytest.mark.parametrize("build", [
    lambda n: keras_llm.build_gpt("gpt_nano", num_layers=n, dropout=0.1),
    lambda n: keras_llm.build_llama("llama_tiny", num_layers=n),
])
def test_a_deeper_model_starts_with_the_shallower_ones_layers(build):
    # Each layer is made just before it is built, so with one seed the embedding and the first
    # block of a 3-block model are those of a 1-block model (and `keras-llm train --seed N`
    # starts where it did). Making every block before building any drew their seeds first.
    keras.utils.set_random_seed(11)
    shallow = {v.path: np.asarray(v) for v in build(1).weights}
    keras.utils.set_random_seed(11)
    deep = {v.path: np.asarray(v) for v in build(3).weights}
    assert set(shallow) <= set(deep) and any("_0/" in path for path in shallow)
    for path, value in shallow.items():
        np.testing.assert_array_equal(deep[path], value, err_msg=path)
