"""save_pretrained writes what the model says it is (task, builder config, tokenizer); from_pretrained gives them back."""

import json
import os

import numpy as np
import pytest

import keras_llm
from tests.pretrained.checkpoints import SIZES, bert_inputs, read_config

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s"] + [
    f"w{i}" for i in range(92)]  # 100 ids, the checkpoints' vocabulary


def test_a_classifier_on_an_encoder_is_written_as_bert_for_sequence_classification(tmp_path):
    encoder = keras_llm.build_bert(**SIZES)
    model = keras_llm.build_bert_classifier(encoder=encoder, num_classes=3, name="on_encoder")
    path = keras_llm.save_pretrained(model, str(tmp_path / "bert"))
    config = read_config(path)
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert (config["num_hidden_layers"], config["hidden_size"], len(config["id2label"])) == (2, 16, 3)
    loaded = keras_llm.from_pretrained(path, task="classifier")  # the registry's name works too
    np.testing.assert_array_equal(loaded(bert_inputs()), model(bert_inputs()))
    assert loaded.builder_config == model.builder_config


def test_save_pretrained_reads_the_model_config_not_its_variable_names(tmp_path):
    model = keras_llm.build_bert_tagger(num_classes=3, **SIZES)
    # A model that says it is something it is not is refused by the rebuilt comparison.
    model.builder_config = {**model.builder_config, "num_layers": 1}
    with pytest.raises(ValueError, match=r"differs from what keras_llm.build_bert_tagger\(.*num_layers=1"):
        keras_llm.save_pretrained(model, str(tmp_path / "wrong"))
    assert not os.path.exists(tmp_path / "wrong")
    # One saved before models recorded their config (an empty builder_config): read once, warned.
    model.builder_config = {}
    with pytest.warns(DeprecationWarning, match="records no builder configuration"):
        path = keras_llm.save_pretrained(model, str(tmp_path / "old"))
    assert read_config(path)["architectures"] == ["BertForTokenClassification"]


def test_a_model_without_a_task_is_refused_naming_the_builders(tmp_path):
    model = keras_llm.build_gpt(**SIZES)
    model.task = "translation"  # what save_pretrained reads, not the variables
    with pytest.raises(ValueError, match="maps models of keras_llm's builders.*build_seq2seq.*"
                                         "task='translation'"):
        keras_llm.save_pretrained(model, str(tmp_path / "out"))


@pytest.mark.slow  # the tokenizer's lookup tables take seconds to build
def test_the_tokenizer_travels_from_the_model_to_the_checkpoint_and_back(tmp_path):
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(VOCABULARY)
    model = keras_llm.build_bert_classifier(num_classes=2, tokenizer=tokenizer,
                                            **{**SIZES, "vocabulary_size": None})
    assert model.vocabulary_size == 100
    path = keras_llm.save_pretrained(model, str(tmp_path / "bert"))  # no tokenizer argument
    assert {"vocab.txt", "tokenizer_config.json"} <= set(os.listdir(path))
    loaded = keras_llm.from_pretrained(path)
    assert loaded.tokenizer is not None
    assert loaded.tokenizer.vocabulary == VOCABULARY
    assert loaded.tokenizer("The cats").numpy().tolist() == [5, 6, 7]
    # A directory without tokenizer files gives a model without one.
    bare = keras_llm.save_pretrained(keras_llm.build_bert(**SIZES), str(tmp_path / "bare"))
    assert keras_llm.from_pretrained(bare).tokenizer is None


def test_a_checkpoint_tokenizer_that_does_not_fit_is_left_out_with_a_warning(tmp_path, caplog):
    path = keras_llm.save_pretrained(keras_llm.build_bert_pretrainer(**SIZES), str(tmp_path / "b"))
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCABULARY[:50]) + "\n")  # 50 ids: a masked LM names all its 100
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "BertTokenizer"}, f)
    with caplog.at_level("WARNING", logger="keras_llm"):
        model = keras_llm.from_pretrained(path)
    assert model.tokenizer is None
    assert "the checkpoint's tokenizer is not attached" in caplog.text
    assert "exactly the model's 100 token ids" in caplog.text
