"""The task registry's harness: every task builds, compiles, fits, round-trips `.keras` and exports.

A new task needs an entry in `keras_llm.models.registry` and an example
here (its tiny builder arguments and one batch): `test_every_task_has_an_example`
fails until it has one.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.models import registry
from tests.export.test_registry_exports import CASES as EXPORT_CASES
from tests.export.test_registry_exports import TINY, WORDS

B, T = 2, 6


def _ids(high, shape=(B, T), seed=0, low=5):
    return np.random.default_rng(seed).integers(low, high, size=shape).astype("int32")


def _bert_inputs():
    return {"token_ids": _ids(len(WORDS)), "segment_ids": np.zeros((B, T), "int32"),
            "padding_mask": np.ones((B, T), "int32")}


def _examples():
    """Per task: (builder keyword arguments, tokenizer, one batch, what its export is fed)."""
    byte = keras_llm.tokenizers.ByteTokenizer()
    word_piece = keras_llm.tokenizers.WordPieceTokenizer(WORDS)
    ones = np.ones((B, T), "float32")
    gpt_x = {"token_ids": _ids(256), "padding_mask": np.ones((B, T), "int32")}
    seq2seq_x = {"encoder_token_ids": _ids(256), "encoder_padding_mask": np.ones((B, T), "int32"),
                 "decoder_token_ids": _ids(256, seed=1),
                 "decoder_padding_mask": np.ones((B, T), "int32")}
    text = {"text": tf.constant(["the cat sat", "a dog"])}
    return {
        "causal_lm": (dict(TINY), byte, (gpt_x, _ids(256, seed=2), ones), text),
        "seq2seq_lm": (dict(TINY), byte, (seq2seq_x, _ids(256, seed=2), ones), text),
        "encoder": (dict(TINY), word_piece, None, None),
        "masked_lm": (
            dict(TINY), word_piece,
            ({**_bert_inputs(), "mask_positions": np.array([[1], [2]], "int32")},
             {"mlm_logits": _ids(len(WORDS), (B, 1)), "nsp_logits": np.array([0, 1], "int32")},
             {"mlm_logits": np.ones((B, 1), "float32"), "nsp_logits": np.ones(B, "float32")}),
            {"text": tf.constant(["the [MASK] sat"])},
        ),
        "classifier": (dict(TINY, num_classes=3), word_piece,
                       (_bert_inputs(), np.array([0, 2], "int32")), text),
        "tagger": (dict(TINY, num_classes=3), word_piece,
                   (_bert_inputs(), _ids(3, seed=3, low=0), ones), text),
        "question_answerer": (
            dict(TINY), word_piece,
            (_bert_inputs(), {"start_logits": np.array([1, 2], "int32"),
                              "end_logits": np.array([2, 3], "int32")}),
            {"question": tf.constant(["who sat"]), "context": tf.constant(["the cat sat"])},
        ),
    }


def test_every_task_has_an_example():
    assert sorted(_examples()) == sorted(registry.TASKS)


def _outputs(model, x):
    return [np.asarray(o) for o in keras.tree.flatten(model(x, training=False))]


@pytest.mark.slow  # an export per task: about 10 s each on 2 cores
@pytest.mark.parametrize("name", sorted(registry.TASKS))
def test_task_builds_compiles_fits_round_trips_and_exports(name, tmp_path):
    task = registry.TASKS[name]
    arguments, tokenizer, batch, request = _examples()[name]
    model = task.resolve("builder")(tokenizer=tokenizer, **arguments)
    assert model.task == name and model.tokenizer is tokenizer
    assert model.vocabulary_size == tokenizer.vocabulary_size  # taken from the tokenizer
    if batch is None:  # an encoder has no objective of its own: a head trains it
        with pytest.raises(ValueError, match="no training objective"):
            keras_llm.compile_model(model)
        x = _bert_inputs()
    else:
        keras_llm.compile_model(model, total_steps=2, warmup_steps=1)
        x, y, *weights = batch
        history = model.fit(x, y, sample_weight=weights[0] if weights else None, batch_size=B,
                            epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])

    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)  # no custom objects
    assert type(restored) is type(model) and restored.task == name
    assert restored.builder_config == model.builder_config
    assert restored.tokenizer.get_config() == tokenizer.get_config()
    for got, want in zip(_outputs(restored, x), _outputs(model, x)):
        np.testing.assert_allclose(got, want, atol=1e-6)

    if task.serving is None:
        with pytest.raises(ValueError):
            keras_llm.export(restored, str(tmp_path / "served"))
        return
    # Exported with the tokenizer it carries, served from text, and checked against the loaded
    # model recomputed in NumPy (tests/export/test_registry_exports.py).
    _, _, settings, request, check = EXPORT_CASES[name]
    version = keras_llm.export(restored, str(tmp_path / "served"), **settings)
    assert os.path.basename(version) == "1"
    served = tf.saved_model.load(version).signatures["serving_default"](
        **{key: tf.constant(value) for key, value in request.items()}
    )
    check(restored, served, next(iter(request.values())))
