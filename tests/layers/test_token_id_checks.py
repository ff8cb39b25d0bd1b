"""Token ids and labels outside the model's range are errors naming them, with and without XLA."""

import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm._graph_checks import CheckedSteps, check_in_range
from keras_llm.layers import TokenAndPositionEmbedding

V, CONTEXT = 50, 16


def _layer():
    return TokenAndPositionEmbedding(vocabulary_size=V, max_sequence_length=CONTEXT, hidden_dim=4)


@pytest.mark.parametrize("ids, listed", [([[1, 50, 2]], "50"), ([[-1, 3, 70]], "-1, 70")])
def test_embedding_names_ids_outside_the_vocabulary(ids, listed):
    count = len(listed.split(", "))
    with pytest.raises(ValueError, match=(
        rf"`token_ids` must be token ids in \[0, 50\) \(the vocabulary\)\. "
        rf"Received: token_ids holding {count} id\(s\) outside it: {listed}"
    )):
        _layer()(np.array(ids, "int32"))


def test_embedding_refuses_float_ids():
    with pytest.raises(TypeError, match="`token_ids` must be integer token ids. Received: token_ids of dtype float32"):
        _layer()(np.array([[1.0, 2.0]], "float32"))


def test_embedding_names_too_many_tokens_eagerly_and_in_a_graph():
    layer = _layer()
    with pytest.raises(ValueError, match="`token_ids` must hold at most 16 tokens .* of length 17"):
        layer(np.zeros((1, CONTEXT + 1), "int32"))
    graph = tf.function(layer, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    assert graph(tf.zeros((2, CONTEXT), tf.int32)).shape == (2, CONTEXT, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must hold at most 16 tokens .* of length 17"):
        graph(tf.zeros((1, CONTEXT + 1), tf.int32))


def test_ids_in_range_embed_as_the_table_says():
    layer = _layer()
    ids = np.array([[0, 49, 7]], "int32")
    out = np.asarray(layer(ids))
    table = layer.token_embedding.embeddings.numpy()
    positions = layer.position_embedding.embeddings.numpy()
    np.testing.assert_allclose(out[0], table[[0, 49, 7]] + positions[:3], rtol=1e-6)


def test_classifier_predict_and_fit_name_ids_past_the_vocabulary():
    model = keras_llm.build_bert_classifier("bert_tiny", vocabulary_size=100, num_classes=2,
                                            max_sequence_length=16)
    x = {"token_ids": np.array([[2, 100, 3]], "int32"), "segment_ids": np.zeros((1, 3), "int32"),
         "padding_mask": np.ones((1, 3), "int32")}
    message = r"`token_ids` must be token ids in \[0, 100\) .* outside it: 100"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        model.predict(x, verbose=0)
    keras_llm.compile_model(model, "classification", jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        model.fit(x, np.array([1]), verbose=0)


def test_seq2seq_call_names_ids_past_the_vocabulary():
    model = keras_llm.build_seq2seq(vocabulary_size=V, num_layers=1, num_heads=2, hidden_dim=8,
                                    intermediate_dim=16, max_sequence_length=CONTEXT)
    ids, ones = np.array([[1, 2, 3]], "int32"), np.ones((1, 3), "int32")
    with pytest.raises(ValueError, match=r"`token_ids` must be token ids in \[0, 50\) .* outside it: 60"):
        model({"encoder_token_ids": ids, "encoder_padding_mask": ones,
               "decoder_token_ids": np.array([[1, 60, 3]], "int32"), "decoder_padding_mask": ones})


def _gpt_checked_under_xla():
    model = keras_llm.build_gpt(vocabulary_size=V, num_layers=1, num_heads=2, hidden_dim=16,
                                intermediate_dim=32, max_sequence_length=CONTEXT)
    assert isinstance(model, CheckedSteps)  # every keras_llm model checks its batches
    keras_llm.compile_model(model, "causal_lm")
    assert model.jit_compile is True  # causal_lm trains XLA-compiled by default
    return model


@pytest.mark.slow  # XLA-compiles train steps
def test_xla_fit_and_predict_check_ids_and_labels():
    model = _gpt_checked_under_xla()
    ids = np.random.default_rng(0).integers(0, V, size=(4, 9)).astype("int32")
    good = ({"token_ids": ids[:, :-1], "padding_mask": np.ones((4, 8), "int32")}, ids[:, 1:])
    loss = model.fit(*good, verbose=0).history["loss"][0]  # in range: trains
    assert np.isfinite(loss) and abs(loss - np.log(V)) < 0.5  # near ln V at initialisation
    bad_ids = dict(good[0], token_ids=np.where(ids[:, :-1] == ids[0, 0], V + 3, ids[:, :-1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"`token_ids` must be token ids in \[0, 50\) .*: {V + 3}"):
        model.fit(bad_ids, good[1], verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"`token_ids` must be token ids in \[0, 50\) .*: {V + 3}"):
        model.predict(bad_ids, verbose=0)
    bad_labels = good[1].copy()
    bad_labels[2, 5] = V
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`labels` must be labels in \[0, 50\) .* 1 label\(s\) outside it: 50"):
        model.fit(good[0], bad_labels, verbose=0)
    with pytest.raises(TypeError, match="`token_ids` must be integer token ids. Received: token_ids of dtype float32"):
        model.fit(dict(good[0], token_ids=good[0]["token_ids"].astype("float32")), good[1], verbose=0)
    model.fit(*good, verbose=0)  # the checks left the model trainable


def test_check_in_range_takes_a_tensor_bound_for_positions():
    @tf.function
    def positions_checked(positions, length):
        return check_in_range(positions, "mask_positions", length, what="positions",
                              where=" (the sequence length)")

    assert positions_checked(tf.constant([[0, 3]]), tf.constant(4)).numpy().tolist() == [[0, 3]]
    with pytest.raises(tf.errors.InvalidArgumentError, match=(
        r"`mask_positions` must be positions in \[0, 4\) \(the sequence length\)\. "
        r"Received: mask_positions holding 2 value\(s\) outside it: -1, 4"
    )):
        positions_checked(tf.constant([[-1, 4]]), tf.constant(4))


def test_float_ids_in_a_direct_call_or_predict_are_refused_not_truncated():
    # A functional model used to cast them to int32 (5.5 -> 5) and return logits.
    model = keras_llm.build_bert_classifier(num_classes=2, vocabulary_size=V, num_layers=1,
                                            num_heads=2, hidden_dim=8, intermediate_dim=16,
                                            max_sequence_length=CONTEXT)
    x = {"token_ids": np.array([[2.0, 5.5, 3.0]]), "segment_ids": np.zeros((1, 3), "int32"),
         "padding_mask": np.ones((1, 3), "int32")}
    with pytest.raises(TypeError, match="`token_ids` must be integer token ids. Received: "
                                        "token_ids of dtype float64"):
        model(x)
    with pytest.raises(TypeError, match="`token_ids` must be integer token ids"):
        model.predict(x, verbose=0)
    assert model(dict(x, token_ids=x["token_ids"].astype("int32"))).shape == (1, 2)


@pytest.mark.slow  # XLA-compiles train steps
def test_xla_pretraining_checks_segment_ids_and_mask_positions():
    # bert_pretraining trains XLA-compiled by default, where the layers' own checks vanish.
    model = keras_llm.build_bert_pretrainer(vocabulary_size=V, num_layers=1, num_heads=2,
                                            hidden_dim=8, intermediate_dim=16,
                                            max_sequence_length=CONTEXT)
    assert model.jit_compile is True
    x = {"token_ids": np.full((2, 6), 7, "int32"), "segment_ids": np.zeros((2, 6), "int32"),
         "padding_mask": np.ones((2, 6), "int32"), "mask_positions": np.array([[1], [2]], "int32")}
    y = {"mlm_logits": np.array([[3], [4]], "int32"), "nsp_logits": np.array([0, 1], "int32")}
    assert np.isfinite(model.fit(x, y, verbose=0).history["loss"][0])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`segment_ids` must be segment ids in \[0, 2\) \(num_segments=2\)"):
        model.fit(dict(x, segment_ids=np.full((2, 6), 2, "int32")), y, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`mask_positions` must be positions in \[0, 6\) \(the sequence length\)"):
        model.fit(dict(x, mask_positions=np.array([[1], [6]], "int32")), y, verbose=0)
