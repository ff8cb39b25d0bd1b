"""A loaded checkpoint is an ordinary keras_llm model: it trains, saves to .keras and exports."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from tests.pretrained.checkpoints import PADDING_MASK, TOKEN_IDS, bert_inputs, gpt_inputs


@pytest.mark.slow  # fit compiles a training step
def test_loaded_models_train_one_step_and_round_trip_through_keras(checkpoint, tmp_path):
    cases = {
        "bert": (bert_inputs(), np.array([0, 2], "int32"), None),
        "gpt": (gpt_inputs(), np.roll(TOKEN_IDS, -1, axis=1), PADDING_MASK),
    }
    for kind, (inputs, labels, weights) in cases.items():
        model = keras_llm.from_pretrained(checkpoint(kind))
        history = model.fit(inputs, labels, sample_weight=weights, batch_size=2, epochs=1,
                            verbose=0)  # compiled by from_pretrained, with keras_llm's defaults
        assert np.isfinite(history.history["loss"][0])
        assert int(model.optimizer.iterations) == 1
        path = str(tmp_path / f"{kind}.keras")
        model.save(path)
        np.testing.assert_array_equal(keras.saving.load_model(path)(inputs), model(inputs))


# The checkpoint's 100 ids: a tokenizer with fewer is refused (it would leave ids unnamed).
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "good", "bad"] + [
    f"w{i}" for i in range(90)]


@pytest.mark.slow  # a SavedModel export takes seconds
def test_loaded_classifier_exports_with_its_label_names(checkpoint, tmp_path):
    model = keras_llm.from_pretrained(checkpoint("bert"))
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(VOCABULARY)
    path = keras_llm.export(model, str(tmp_path / "served"), tokenizer,
                            label_names=model.label_names)
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(text=tf.constant(["the cat sat", "bad"]))
    assert {label.decode() for label in out["label"].numpy()} <= set(model.label_names)
    inputs = {"token_ids": np.array([[2, 5, 6, 7, 3]], "int32"),
              "segment_ids": np.zeros((1, 5), "int32"), "padding_mask": np.ones((1, 5), "int32")}
    np.testing.assert_allclose(out["probabilities"].numpy()[:1],
                               keras.ops.softmax(model(inputs)), atol=1e-5)
