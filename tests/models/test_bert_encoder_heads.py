"""BERT as an encoder plus heads: a head on an existing encoder shares its weights; configs and tokenizers travel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.models.bert import encoder_config

TINY = dict(vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=16, dropout=0.0)
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(15)]
X = {
    "token_ids": np.array([[2, 7, 5, 9, 3], [2, 8, 3, 0, 0]], "int32"),
    "segment_ids": np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], "int32"),
    "padding_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32"),
}


def trained_encoder(seed=0):
    """A tiny encoder whose weights are random (as if trained): none is 0 or 1."""
    encoder = keras_llm.build_bert(**TINY)
    rng = np.random.default_rng(seed)
    for variable in encoder.weights:
        variable.assign(rng.normal(0.0, 0.3, variable.shape).astype("float32"))
    return encoder


def test_a_head_on_a_trained_encoder_shares_its_weights():
    encoder = trained_encoder()
    classifier = keras_llm.build_bert_classifier(encoder=encoder, num_classes=3)
    qa = keras_llm.build_bert_question_answerer(encoder=encoder)
    # The same variables, not copies (the question answerer has no use for the pooler).
    ids = lambda model: {id(v) for v in model.weights}  # noqa: E731
    assert ids(encoder) <= ids(classifier)
    assert {v.path for v in encoder.weights if id(v) not in ids(qa)} == {
        "pooled_dense/kernel", "pooled_dense/bias"}
    assert ids(qa) - ids(encoder) == {id(v) for v in qa.get_layer("qa_logits").weights}
    # Each head's logits are its Dense layer on the encoder's outputs (NumPy reference).
    outputs = {k: np.asarray(v, "float64") for k, v in encoder(X).items()}
    kernel, bias = classifier.get_layer("logits").get_weights()
    np.testing.assert_allclose(classifier(X), outputs["pooled_output"] @ kernel + bias, atol=1e-5)
    kernel, bias = qa.get_layer("qa_logits").get_weights()
    start = outputs["sequence_output"] @ kernel[:, 0] + bias[0]
    np.testing.assert_allclose(qa(X)["start_logits"], start, atol=1e-5)
    # Training the head's encoder trains the encoder: a change shows in both.
    before = np.asarray(encoder(X)["pooled_output"])
    keras_llm.compile_model(classifier, learning_rate=1e-2, total_steps=4, warmup_steps=1)
    classifier.fit(X, np.array([2, 0]), epochs=3, verbose=0)
    after = np.asarray(encoder(X)["pooled_output"])
    assert np.abs(after - before).max() > 0
    np.testing.assert_allclose(
        classifier(X), after @ classifier.get_layer("logits").get_weights()[0]
        + classifier.get_layer("logits").get_weights()[1], atol=1e-5,
    )


def test_a_pretrainer_on_an_encoder_projects_with_its_tied_table_plus_a_bias():
    encoder = trained_encoder()
    model = keras_llm.build_bert_pretrainer(encoder=encoder)
    model.get_layer("mlm_output_bias").bias.assign(np.linspace(-1, 1, 20).astype("float32"))
    x = {**X, "mask_positions": np.array([[1, 3], [2, 0]], "int32")}
    normed = np.asarray(keras.Model(model.input, model.get_layer("mlm_layer_norm").output)(x))
    table = encoder.get_layer("embeddings").token_embedding.embeddings.numpy()
    np.testing.assert_allclose(model(x)["mlm_logits"], normed @ table.T + np.linspace(-1, 1, 20),
                               atol=1e-5)


@pytest.mark.parametrize("head", ["pretrainer", "classifier", "tagger", "question_answerer"])
def test_a_head_on_an_encoder_is_the_model_its_preset_path_builds(head):
    builder = getattr(keras_llm, f"build_bert_{head}")
    classes = {"num_classes": 4} if head in ("classifier", "tagger") else {}
    on_encoder = builder(encoder=keras_llm.build_bert(**TINY), **classes)
    built = builder(**TINY, **classes)
    assert on_encoder.task == built.task
    assert on_encoder.builder_config == built.builder_config == {
        **TINY, "layer_norm_epsilon": 1e-12, "num_segments": 2, **classes,
    }
    shapes = lambda m: sorted((v.path, tuple(v.shape)) for v in m.weights)  # noqa: E731
    assert shapes(on_encoder) == shapes(built)


def test_builder_config_and_tokenizer_travel_through_keras(tmp_path):
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(VOCABULARY)
    encoder = keras_llm.build_bert(**{**TINY, "vocabulary_size": None}, tokenizer=tokenizer)
    assert encoder.vocabulary_size == 20 and encoder.tokenizer is tokenizer
    tagger = keras_llm.build_bert_tagger(encoder=encoder, num_classes=3)
    assert tagger.tokenizer is tokenizer  # inherited from the encoder
    path = str(tmp_path / "tagger.keras")
    tagger.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.builder_config == tagger.builder_config
    assert loaded.builder_config["num_classes"] == 3
    assert loaded.tokenizer.vocabulary == tokenizer.vocabulary
    np.testing.assert_allclose(loaded(X), tagger(X), atol=1e-6)


def test_every_head_takes_a_tokenizer_for_its_vocabulary_size():
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(VOCABULARY)
    sizes = {k: v for k, v in TINY.items() if k != "vocabulary_size"}
    for builder, classes in ((keras_llm.build_bert_pretrainer, {}),
                             (keras_llm.build_bert_classifier, {"num_classes": 2}),
                             (keras_llm.build_bert_tagger, {"num_classes": 2}),
                             (keras_llm.build_bert_question_answerer, {})):
        model = builder(**sizes, **classes, tokenizer=tokenizer)
        assert model.vocabulary_size == 20 and model.tokenizer is tokenizer, builder.__name__


def test_encoder_arguments_beside_an_encoder_are_refused_by_name():
    encoder = keras_llm.build_bert(**TINY)
    with pytest.raises(ValueError) as error:
        keras_llm.build_bert_classifier(encoder=encoder, num_classes=2, hidden_dim=32)
    assert str(error.value) == (
        "build_bert_classifier: with `encoder=`, the sizes are the encoder's; leave out "
        "hidden_dim. Received: hidden_dim=32"
    )
    with pytest.raises(ValueError, match="build_bert_tagger: `encoder` must be a BERT encoder.*"
                                         "task='classifier'"):
        keras_llm.build_bert_tagger(
            encoder=keras_llm.build_bert_classifier(**TINY, num_classes=2), num_classes=2)
    with pytest.raises(TypeError, match="unexpected keyword argument.*num_decoder_layers"):
        keras_llm.build_bert_question_answerer(**TINY, num_decoder_layers=2)


def test_segment_ids_outside_num_segments_are_an_error_naming_them():
    model = keras_llm.build_bert_classifier(**TINY, num_classes=2)
    bad = {**X, "segment_ids": np.array([[0, 0, 0, 2, 2], [0, 0, 0, 0, 0]], "int32")}
    with pytest.raises(ValueError) as error:
        model(bad)
    assert "`segment_ids` must be segment ids in [0, 2) (num_segments=2)" in str(error.value)
    assert "2 id(s) outside it: 2, 2" in str(error.value)
    # In a graph (a tf.function, as a SavedModel runs it) the same message fails the call.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`segment_ids` must be segment ids"):
        tf.function(model)(bad)


@pytest.mark.parametrize("positions", [[[1, 5], [1, 0]], [[1, -1], [1, 0]]])
def test_mask_positions_outside_the_sequence_are_an_error_naming_them(positions):
    # -1 used to wrap to the last token, 5 to be a gather error (or a clamp) on a 5-token row.
    model = keras_llm.build_bert_pretrainer(**TINY)
    x = {**X, "mask_positions": np.array(positions, "int32")}
    with pytest.raises(ValueError) as error:
        model(x)
    assert "`mask_positions` must be positions in [0, 5)" in str(error.value)
    assert f"1 position(s) outside it: {positions[0][1]}" in str(error.value)


def test_encoder_config_of_a_model_saved_without_one_is_read_once_with_a_warning():
    model = keras_llm.build_bert_tagger(**TINY, num_classes=3)
    recorded = model.builder_config
    model.builder_config = {}  # as a .keras file of keras_llm 0.1 loads
    with pytest.warns(DeprecationWarning, match="records no builder configuration"):
        assert encoder_config(model) == recorded
