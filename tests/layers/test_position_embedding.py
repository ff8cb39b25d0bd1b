import numpy as np
import pytest

from keras_llm.layers import PositionEmbedding, TokenAndPositionEmbedding
from tests.harness import check_layer


def test_adds_rows_of_the_table():
    x = np.random.default_rng(0).normal(size=(2, 4, 6)).astype("float32")
    layer = PositionEmbedding(max_sequence_length=10)
    out = layer(x, start_index=3)
    np.testing.assert_allclose(out, x + layer.embeddings.numpy()[3:7], atol=1e-6)


def test_too_long_input_names_the_limit():
    layer = PositionEmbedding(max_sequence_length=4)
    with pytest.raises(ValueError, match="max_sequence_length=4"):
        layer(np.zeros((1, 5, 2), "float32"))


def test_rejects_non_positive_length():
    with pytest.raises(ValueError, match="max_sequence_length=0"):
        PositionEmbedding(max_sequence_length=0)


def test_position_embedding_harness(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 5, 4)).astype("float32")
    check_layer(PositionEmbedding, {"max_sequence_length": 8}, x, tmp_path=tmp_path)


def test_token_and_position_embedding_against_numpy():
    layer = TokenAndPositionEmbedding(
        vocabulary_size=11, max_sequence_length=6, hidden_dim=4, use_output_bias=True
    )
    ids = np.array([[1, 5, 10], [0, 0, 3]])
    hidden = layer(ids)
    table = layer.token_embedding.embeddings.numpy()
    positions = layer.position_embedding.embeddings.numpy()
    np.testing.assert_allclose(hidden, table[ids] + positions[:3], atol=1e-6)
    layer.output_bias.assign(np.arange(11, dtype="float32"))
    logits = layer(hidden, reverse=True)
    np.testing.assert_allclose(
        logits, np.asarray(hidden) @ table.T + np.arange(11), atol=1e-5
    )


@pytest.mark.parametrize("use_output_bias", [False, True])
def test_token_and_position_embedding_harness(tmp_path, use_output_bias):
    ids = np.array([[1, 2, 3], [4, 5, 6]], "int32")
    kwargs = dict(vocabulary_size=8, max_sequence_length=5, hidden_dim=4,
                  use_output_bias=use_output_bias)
    check_layer(TokenAndPositionEmbedding, kwargs, ids, tmp_path=tmp_path)
    hidden = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    check_layer(TokenAndPositionEmbedding, kwargs, hidden, {"reverse": True}, tmp_path=tmp_path, atol=1e-5)
