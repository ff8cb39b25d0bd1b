"""keras_llm.inspect's attention maps against the NumPy references of the blocks (float64)."""

import math

import keras
import numpy as np
import pytest

import keras_llm
from keras_llm.inspect import attention_maps, attention_weights
from keras_llm.layers import LlamaBlock, TransformerBlock
from tests.layers.test_llama_layers import _gqa_reference
from tests.layers.test_transformer_block import np_block

RNG = np.random.default_rng(0)
BYTES = keras_llm.tokenizers.ByteTokenizer()
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat"]


def tanh_gelu(h):
    return 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))


def sharpened(model):
    """`model` with larger attention kernels: maps far from uniform, so that a mistake shows."""
    for weight in model.weights:
        if weight.path.endswith(("query/kernel", "key/kernel")):
            weight.assign(RNG.normal(scale=0.15, size=weight.shape).astype("float32"))
    return model


def blocks_of(model):
    return [layer for layer in model.layers if isinstance(layer, (TransformerBlock, LlamaBlock))]


def block_inputs(model, block, inputs):
    """What the model's own graph passes `block` (its input and tensor keyword arguments)."""
    node = block._inbound_nodes[0]
    tensors = {"x": node.arguments.args[0]}
    tensors.update(
        (k, v) for k, v in node.arguments.kwargs.items() if isinstance(v, keras.KerasTensor)
    )
    values = keras.Model(model.input, tensors)(inputs)
    return {k: np.asarray(v) for k, v in values.items()}


@pytest.fixture(scope="module")
def bert():
    # No tokenizer: a WordPiece one takes ~12 s to load and trace (the text test is slow).
    return sharpened(keras_llm.build_bert("bert_tiny", vocabulary_size=len(WORDS)))


@pytest.fixture(scope="module")
def gpt():
    return sharpened(keras_llm.build_gpt("gpt_nano", num_layers=2, tokenizer=BYTES))


def check_rows(weights, causal):
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert weights.min() >= 0.0
    if causal:
        assert np.all(np.triu(weights, k=1) == 0.0)


def test_bert_maps_are_the_blocks_numpy_reference_with_padding(bert):
    inputs = {
        "token_ids": np.array([[2, 5, 6, 7, 3], [2, 6, 3, 0, 0]], "int32"),
        "segment_ids": np.zeros((2, 5), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32"),
    }
    weights = attention_weights(bert, inputs)
    assert list(weights) == ["self_attention"]
    got = weights["self_attention"]
    assert got.shape == (2, 2, 2, 5, 5)  # batch, layers, heads, queries, keys
    for i, block in enumerate(blocks_of(bert)):
        seen = block_inputs(bert, block, inputs)
        _, (want, *_) = np_block(block, seen["x"], seen["padding_mask"])
        np.testing.assert_allclose(got[:, i], want, atol=1e-5)
    check_rows(got, causal=False)
    assert np.all(got[1, ..., 3:] == 0.0)  # no attention to padding
    assert np.all(got[1, ..., :3] > 0.0)


@pytest.mark.slow  # the WordPiece tokenizer's start-up
def test_bert_attention_maps_of_a_text(bert):
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(WORDS)
    maps = attention_maps(bert, "the cat sat", tokenizer)
    assert maps.tokens == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert maps.target_tokens is maps.decoder_self_attention is maps.cross_attention is None
    inputs = {
        "token_ids": np.array([[2, 5, 6, 7, 3]], "int32"),
        "segment_ids": np.zeros((1, 5), "int32"),
        "padding_mask": np.ones((1, 5), "int32"),
    }
    np.testing.assert_array_equal(
        maps.self_attention, attention_weights(bert, inputs)["self_attention"][0]
    )
    # A head on the encoder (its layers, shared) attends as the encoder does; it
    # carries the tokenizer it was built with.
    for head in (
        keras_llm.build_bert_classifier(encoder=bert, num_classes=2, tokenizer=tokenizer),
        keras_llm.build_bert_pretrainer(encoder=bert, tokenizer=tokenizer),
    ):
        np.testing.assert_allclose(attention_maps(head, "the cat sat").self_attention,
                                   maps.self_attention, atol=1e-6)
    with pytest.raises(ValueError, match="with \\[CLS\\] and \\[SEP\\]; the model reads at most 512"):
        attention_maps(bert, " ".join(["cat"] * 511), tokenizer)


def test_gpt_maps_are_causal_and_the_blocks_numpy_reference(gpt):
    inputs = {
        "token_ids": np.array([[72, 105, 33, 10], [72, 105, 0, 0]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32"),
    }
    got = attention_weights(gpt, inputs)["self_attention"]
    assert got.shape == (2, 2, 4, 4, 4)
    for i, block in enumerate(blocks_of(gpt)):
        seen = block_inputs(gpt, block, inputs)
        _, (want, *_) = np_block(block, seen["x"], seen["padding_mask"], activation=tanh_gelu)
        np.testing.assert_allclose(got[0, i], want[0], atol=1e-5)
        np.testing.assert_allclose(got[1, i, :, :2], want[1, :, :2], atol=1e-5)  # real queries
    check_rows(got, causal=True)
    assert np.all(got[1, ..., 2:] == 0.0)  # padded keys
    maps = attention_maps(gpt, "Hé!")
    assert maps.tokens == ["H", "\\xc3", "\\xa9", "!"]  # bytes; not UTF-8 alone: escaped
    np.testing.assert_allclose(maps.self_attention[:, :, 0, 0], 1.0)  # the first token sees itself
    assert attention_maps(gpt, "").tokens == ["<|endoftext|>"]  # an empty prompt's start


def test_seq2seq_encoder_decoder_and_cross_attention():
    model = sharpened(keras_llm.build_seq2seq("seq2seq_tiny", num_layers=1, num_decoder_layers=2,
                                              tokenizer=BYTES))
    maps = attention_maps(model, "abc", target="xy")
    assert maps.tokens == ["a", "b", "c", "<|endoftext|>"]  # the source ends with the end token
    assert maps.target_tokens == ["<|endoftext|>", "x", "y"]  # the decoder starts from it
    assert maps.self_attention.shape == (1, 4, 4, 4)
    assert maps.decoder_self_attention.shape == (2, 4, 3, 3)
    assert maps.cross_attention.shape == (2, 4, 3, 4)
    inputs = {
        "encoder_token_ids": np.array([[97, 98, 99, 256]], "int32"),
        "encoder_padding_mask": np.ones((1, 4), "int32"),
        "decoder_token_ids": np.array([[256, 120, 121]], "int32"),
        "decoder_padding_mask": np.ones((1, 3), "int32"),
    }
    relu = lambda h: np.maximum(h, 0.0)  # noqa: E731
    (encoder,) = model._encoder_blocks
    seen = block_inputs(model, encoder, inputs)
    _, (want, *_) = np_block(encoder, seen["x"], seen["padding_mask"], activation=relu)
    np.testing.assert_allclose(maps.self_attention[0], want[0], atol=1e-5)
    for i, decoder in enumerate(model._decoder_blocks):
        seen = block_inputs(model, decoder, inputs)
        _, (want_self, want_cross, _) = np_block(
            decoder, seen["x"], seen["padding_mask"], seen["encoder_outputs"],
            seen["encoder_padding_mask"], activation=relu,
        )
        np.testing.assert_allclose(maps.decoder_self_attention[i], want_self[0], atol=1e-5)
        np.testing.assert_allclose(maps.cross_attention[i], want_cross[0], atol=1e-5)
    check_rows(maps.self_attention, causal=False)
    check_rows(maps.decoder_self_attention, causal=True)
    check_rows(maps.cross_attention, causal=False)
    # Without a target the decoder reads its start token alone.
    assert attention_maps(model, "abc").cross_attention.shape == (2, 4, 1, 4)


def test_llama_maps_are_the_repeated_key_value_heads_reference():
    model = sharpened(keras_llm.build_llama("llama_tiny", num_layers=2, vocabulary_size=258,
                                            tokenizer=BYTES))
    inputs = {
        "token_ids": np.array([[72, 105, 33, 10, 9], [72, 105, 33, 0, 0]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32"),
    }
    got = attention_weights(model, inputs)["self_attention"]
    assert got.shape == (2, 2, 4, 5, 5)  # 4 query heads, from 2 key/value heads
    for i, block in enumerate(blocks_of(model)):
        seen = block_inputs(model, block, inputs)
        x = seen["x"].astype("float64")
        scale = np.asarray(block._self_attention_layer_norm.scale, "float64")
        normed = x / np.sqrt((x**2).mean(-1, keepdims=True) + block.layer_norm_epsilon) * scale
        mask = np.tril(np.ones((5, 5), bool))[None] & inputs["padding_mask"][:, None, :].astype(bool)
        _, want = _gqa_reference(block._self_attention, normed, mask, probabilities=True)
        np.testing.assert_allclose(got[0, i], want[0], atol=1e-5)
        np.testing.assert_allclose(got[1, i, :, :3], want[1, :, :3], atol=1e-5)
    check_rows(got, causal=True)
    assert np.all(got[1, ..., 3:] == 0.0)
    assert attention_maps(model, "Hi").tokens == ["H", "i"]


def test_a_loaded_model_gives_the_same_maps(gpt, tmp_path):
    path = str(tmp_path / "gpt.keras")
    gpt.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(attention_maps(loaded, "abc").self_attention,
                               attention_maps(gpt, "abc").self_attention, atol=1e-6)


def test_bad_arguments_are_named(gpt, bert):
    bare = keras_llm.build_gpt("gpt_nano", num_layers=1)
    with pytest.raises(ValueError, match="carries no tokenizer"):
        attention_maps(bare, "abc")
    assert attention_maps(bare, "abc", tokenizer=BYTES).tokens == ["a", "b", "c"]
    with pytest.raises(ValueError, match="the model's 258 token ids, or fewer padded"):
        attention_maps(gpt, "abc", tokenizer=keras_llm.tokenizers.WordPieceTokenizer(WORDS))
    with pytest.raises(ValueError, match="has no decoder. Received: target='x'"):
        attention_maps(gpt, "abc", target="x")
    with pytest.raises(TypeError, match="Received: text=3"):
        attention_maps(gpt, 3)
    with pytest.raises(ValueError, match="`text` is 257 tokens long; the model reads at most 256"):
        attention_maps(gpt, "a" * 257)
    with pytest.raises(ValueError, match="carries no tokenizer"):
        attention_maps(bert, "the cat")
    with pytest.raises(ValueError, match="must have the model's inputs, padding_mask, token_ids"):
        attention_weights(gpt, {"token_ids": np.zeros((1, 2), "int32")})
