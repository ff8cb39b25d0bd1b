import numpy as np
import pytest

import keras_llm


@pytest.fixture(scope="module")
def model():
    return keras_llm.build_gpt(vocabulary_size=17, num_layers=2, num_heads=2, hidden_dim=16,
                               intermediate_dim=32, max_sequence_length=32)


def test_greedy_tokens_are_the_argmax_of_one_full_pass(model):
    out = keras_llm.generation.generate(model, [3, 1, 4], max_new_tokens=8, temperature=0)
    assert out.shape == (11,)
    logits = np.asarray(model({"token_ids": out[None], "padding_mask": np.ones((1, 11), "int32")}))
    # Causality makes position t of the full pass the prediction from out[:t+1].
    np.testing.assert_array_equal(out[3:], logits[0, 2:-1].argmax(-1))


def test_sampling_is_reproducible_and_top_k_bounded(model):
    a = keras_llm.generation.generate(model, [5], 20, temperature=1.0, top_k=1, seed=0)
    greedy = keras_llm.generation.generate(model, [5], 20, temperature=0)
    np.testing.assert_array_equal(a, greedy)  # top_k=1 is greedy
    b = keras_llm.generation.generate(model, [5], 20, temperature=2.0, seed=7)
    c = keras_llm.generation.generate(model, [5], 20, temperature=2.0, seed=7)
    np.testing.assert_array_equal(b, c)


def test_stops_at_end_token(model):
    first = int(keras_llm.generation.generate(model, [2], 1, temperature=0)[-1])
    out = keras_llm.generation.generate(model, [2], 10, temperature=0, end_token_id=first)
    assert out.tolist() == [2, first]


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="max_new_tokens=-1"):
        keras_llm.generation.generate(model, [1], -1)
    with pytest.raises(ValueError, match="prompt_ids"):
        keras_llm.generation.generate(model, [], 3)
    assert keras_llm.generation.generate(model, [1, 2], 0).tolist() == [1, 2]
