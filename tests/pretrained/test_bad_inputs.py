"""from_pretrained refuses bad checkpoints clearly and writes nothing; save_pretrained too.

Quick tests: the checkpoints are written by keras_llm.save_pretrained (no
torch), then edited; tests/pretrained/test_*_reference.py check the numbers
against transformers.
"""

import json
import os
import pickle
import shutil

import keras
import numpy as np
import pytest

import keras_llm
from tests.pretrained.checkpoints import (
    SIZES,
    bert_inputs,
    edit_config,
    edit_tensors,
    gpt_inputs,
    snapshot,
)


def refused(path, error, parts, **kwargs):
    """from_pretrained(path, **kwargs) raises `error` naming every part; nothing changed on disk."""
    parent = os.path.dirname(path)
    before = snapshot(parent)
    with pytest.raises(error) as raised:
        keras_llm.from_pretrained(path, **kwargs)
    for part in parts:
        assert part in str(raised.value), (part, str(raised.value))
    assert snapshot(parent) == before
    return str(raised.value)


@pytest.mark.parametrize(
    "changes, parts",
    [
        (dict(model_type="roberta"),
         ["model_type='roberta' is not supported", "'bert' (BERT)", "'gpt2' (GPT-2)"]),
        (dict(architectures=["BertForMultipleChoice"]),
         ["BertForMultipleChoice", "BertModel", "BertForQuestionAnswering"]),
        (dict(hidden_act="relu"), ["hidden_act='relu' is not supported", "exact (erf) GELU"]),
        (dict(position_embedding_type="relative_key"),
         ["position_embedding_type='relative_key'", "absolute"]),
        (dict(is_decoder=True), ["is_decoder=True"]),
        (dict(add_cross_attention=True), ["add_cross_attention=True"]),
        (dict(num_attention_heads=0), ["`num_attention_heads` must be a positive int"]),
        (dict(hidden_size=15), ["`hidden_size` must be divisible by `num_attention_heads`"]),
        (dict(vocab_size=None), ["`vocab_size` must be a positive int"]),
        (dict(intermediate_size=48),
         ["bert.encoder.layer.0.intermediate.dense.weight has shape [32, 16]", "need [48, 16]"]),
        (dict(vocab_size=120),
         ["bert.embeddings.word_embeddings.weight has shape [100, 16]", "need [120, 16]"]),
        (dict(id2label={"0": "a", "1": "b"}),
         ["classifier.weight has shape [3, 16]", "need [2, 16]"]),
        (dict(num_hidden_layers=1),
         ["cannot place in a BERT with num_layers=1", "bert.encoder.layer.1.attention"]),
        (dict(num_hidden_layers=3),
         ["lacks tensors", "encoder.layer.2.attention.self.query.weight"]),
    ],
)
def test_bert_config_that_does_not_fit_is_refused(checkpoint, changes, parts):
    path = checkpoint("bert")
    edit_config(path, **changes)
    refused(path, ValueError, [os.path.join(path, "")[:-1]] + parts)


@pytest.mark.parametrize(
    "changes, parts",
    [
        (dict(activation_function="relu"), ["activation_function='relu'", "'gelu_new'"]),
        (dict(scale_attn_by_inverse_layer_idx=True), ["scale_attn_by_inverse_layer_idx=True"]),
        (dict(reorder_and_upcast_attn=True), ["reorder_and_upcast_attn=True"]),
        (dict(scale_attn_weights=False), ["scale_attn_weights=False", "sqrt(head_dim)"]),
        (dict(add_cross_attention=True), ["add_cross_attention=True"]),
        (dict(tie_word_embeddings=False), ["tie_word_embeddings=False", "tied"]),
        (dict(n_inner=48), ["h.0.mlp.c_fc.weight has shape [16, 32]", "need [16, 48]"]),
        (dict(n_positions=64), ["transformer.wpe.weight has shape [32, 16]", "need [64, 16]"]),
    ],
)
def test_gpt2_config_that_does_not_fit_is_refused(checkpoint, changes, parts):
    path = checkpoint("gpt")
    edit_config(path, **changes)
    refused(path, ValueError, parts)


class _RunsCode:
    """Unpickling this creates a directory: the test sees whether anything unpickled the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickles_are_refused_unopened(checkpoint, tmp_path):
    path = checkpoint("bert")
    os.remove(os.path.join(path, "model.safetensors"))
    marker = str(tmp_path / "pickle_ran")
    with open(os.path.join(path, "pytorch_model.bin"), "wb") as f:
        pickle.dump(_RunsCode(marker), f)
    parts = ["pytorch_model.bin", "pickle", "runs any code", "safetensors only",
             "save_pretrained(path, safe_serialization=True)"]
    refused(path, ValueError, parts)
    refused(os.path.join(path, "pytorch_model.bin"), ValueError, parts[1:])
    assert not os.path.exists(marker)


def test_missing_or_foreign_weights_are_named(checkpoint):
    path = checkpoint("bert")
    os.remove(os.path.join(path, "model.safetensors"))
    refused(path, FileNotFoundError, ["has no model.safetensors or model.safetensors.index.json"])
    open(os.path.join(path, "tf_model.h5"), "wb").close()
    refused(path, FileNotFoundError, ["found tf_model.h5, which it does not read", "convert.py"])


def test_missing_or_broken_config_is_named(checkpoint, tmp_path):
    path = checkpoint("bert")
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("{not json")
    refused(path, ValueError, ["config.json:1:2: not valid JSON"])
    os.remove(os.path.join(path, "config.json"))
    refused(path, FileNotFoundError, ["has no config.json"])
    refused(str(tmp_path / "nowhere"), ValueError, ["must be a Hugging Face model directory",
                                                    "does not exist"])


@pytest.mark.parametrize("keep", [0, 7, 100, 0.5])
def test_truncated_weights_are_refused(checkpoint, keep):
    path = checkpoint("bert")
    file = os.path.join(path, "model.safetensors")
    data = open(file, "rb").read()
    with open(file, "wb") as f:
        f.write(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    refused(path, ValueError, ["model.safetensors is not a complete safetensors file"])


def test_unknown_missing_duplicate_and_non_float_tensors_are_named(checkpoint):
    path = checkpoint("bert")
    rotary = "bert.encoder.layer.0.attention.self.rotary.weight"
    edit_tensors(path, lambda t: t.update({rotary: np.zeros((4, 4), "float32")}))
    refused(path, ValueError, [rotary, "Rather than drop weights", "position_ids"])

    path = checkpoint("bert")
    edit_tensors(path, lambda t: t.pop("bert.encoder.layer.1.output.dense.bias"))
    refused(path, ValueError, ["BertForSequenceClassification", "lacks tensors",
                               "encoder.layer.1.output.dense.bias"])

    path = checkpoint("bert")
    edit_tensors(path, lambda t: t.update({"pooler.dense.bias": t["bert.pooler.dense.bias"]}))
    refused(path, ValueError, ["bert.pooler.dense.bias and pooler.dense.bias are the same tensor"])

    path = checkpoint("bert")
    edit_tensors(path, lambda t: t.update({"classifier.bias": np.zeros(3, "int64")}))
    refused(path, ValueError, ["classifier.bias has dtype I64"])


def _shard(path, weight_map):
    """Splits model.safetensors in two shards and writes an index with `weight_map(names)`."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(os.path.join(path, "model.safetensors"))
    os.remove(os.path.join(path, "model.safetensors"))
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for shard, members in halves.items():
        save_file({n: tensors[n] for n in members}, os.path.join(path, shard),
                  metadata={"format": "pt"})
    index = {n: shard for shard, members in halves.items() for n in members}
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map(index)}, f)


def test_sharded_checkpoint_loads_and_bad_shards_are_named(checkpoint):
    whole = keras_llm.from_pretrained(checkpoint("bert"))
    path = checkpoint("bert")
    _shard(path, lambda index: index)
    sharded = keras_llm.from_pretrained(path)
    np.testing.assert_array_equal(sharded(bert_inputs()), whole(bert_inputs()))

    os.remove(os.path.join(path, "model-00002-of-00002.safetensors"))
    refused(path, FileNotFoundError, ["lacks shards", "model-00002-of-00002.safetensors"])

    path = checkpoint("bert")
    _shard(path, lambda index: {**index, "bert.pooler.dense.bias": "../model.safetensors"})
    refused(path, ValueError, ["must be a file name", "'../model.safetensors'"])

    path = checkpoint("bert")
    _shard(path, lambda index: {**index, "classifier.bias": "model-00002-of-00002.safetensors"}
           if index["classifier.bias"].startswith("model-00001") else
           {**index, "classifier.bias": "model-00001-of-00002.safetensors"})
    refused(path, ValueError, ["lacks tensors that model.safetensors.index.json places in it",
                               "classifier.bias"])


def test_task_and_head_arguments_are_checked(checkpoint):
    path = checkpoint("bert")
    refused(path, ValueError,
            ["task='causal_lm'", "'backbone', 'masked_lm', 'classify', 'tag', 'qa'"],
            task="causal_lm")
    refused(path, ValueError, ["num_classes are for task='classify' or 'tag'"],
            task="masked_lm", num_classes=3)
    refused(path, ValueError, ["A fresh tag head needs `num_classes` or `label_names`"], task="tag")
    refused(path, ValueError, ["num_classes=5", "has 3 classes", "Leave num_classes out"],
            num_classes=5)
    refused(path, ValueError, ["must name the checkpoint's 3 classes"], label_names=["a", "b"])
    refused(path, ValueError, ["must be a list of distinct strings"], label_names=["a", "a", "b"])
    refused(path, TypeError, ["unexpected keyword arguments vocabulary_size"], vocabulary_size=3)
    refused(checkpoint("gpt"), ValueError, ["for a GPT-2 checkpoint", "'causal_lm'"], task="qa")


def test_labels_heads_and_fresh_parts(checkpoint, caplog):
    path = checkpoint("bert")
    classifier = keras_llm.from_pretrained(path)
    assert classifier.label_names == ("negative", "neutral", "positive")
    renamed = keras_llm.from_pretrained(path, task="classify", label_names=["n", "m", "p"])
    assert renamed.label_names == ("n", "m", "p")
    np.testing.assert_array_equal(renamed(bert_inputs()), classifier(bert_inputs()))
    # Another task: a fresh head on the same body (the classifier's tensors are not a tagger's).
    with caplog.at_level("INFO", logger="keras_llm"):
        tagger = keras_llm.from_pretrained(path, task="tag", label_names=["O", "B", "I", "X"])
    assert tagger.label_names == ("O", "B", "I", "X")
    assert "tagger_logits not in the checkpoint" in caplog.text
    assert "the checkpoint's pooler, classifier not used" in caplog.text
    backbone = keras_llm.from_pretrained(path, task="backbone", dropout=0.0, name="encoder")
    assert backbone.name == "encoder" and not hasattr(backbone, "label_names")
    assert backbone.get_layer("transformer_layer_0").dropout == 0.0


def test_masked_lm_checkpoint_gets_a_fresh_next_sentence_head(checkpoint, caplog):
    # BertForMaskedLM files have no pooler and no next-sentence head.
    path = checkpoint("bert_pretrainer")
    full = keras_llm.from_pretrained(path)
    edit_config(path, architectures=["BertForMaskedLM"])
    edit_tensors(path, lambda t: [t.pop(n) for n in list(t) if "pooler" in n or "seq_rel" in n])
    with caplog.at_level("WARNING", logger="keras_llm"):
        masked_lm = keras_llm.from_pretrained(path)
    assert "nsp_dense, pooled_dense not in the checkpoint: freshly initialized" in caplog.text
    inputs = bert_inputs(mask_positions=True)
    np.testing.assert_array_equal(masked_lm(inputs)["mlm_logits"], full(inputs)["mlm_logits"])


def test_other_namings_and_skipped_tensors_load(checkpoint):
    """TensorFlow-era LayerNorm names, prefix-less (sentence-transformers) names, buffers and
    tied copies all load."""
    path = checkpoint("bert_pretrainer")
    expected = keras_llm.from_pretrained(path)(bert_inputs(mask_positions=True))

    def legacy(tensors):
        for name in list(tensors):
            renamed = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta")
            tensors[renamed.removeprefix("bert.")] = tensors.pop(name)
        tensors["embeddings.position_ids"] = np.arange(32, dtype="int64")[None]
        tensors["cls.predictions.decoder.weight"] = tensors["embeddings.word_embeddings.weight"]
        tensors["cls.predictions.decoder.bias"] = tensors["cls.predictions.bias"]

    edit_tensors(path, legacy)
    got = keras_llm.from_pretrained(path)(bert_inputs(mask_positions=True))
    for key in ("mlm_logits", "nsp_logits"):
        np.testing.assert_array_equal(got[key], expected[key])

    path = checkpoint("gpt")
    expected = keras_llm.from_pretrained(path)(gpt_inputs())
    edit_config(path, architectures=["GPT2Model"])

    def base_model(tensors):
        for name in list(tensors):
            tensors[name.removeprefix("transformer.")] = tensors.pop(name)
        tensors["h.0.attn.bias"] = np.tril(np.ones((32, 32), "bool"))[None, None]
        tensors["lm_head.weight"] = tensors["wte.weight"]

    edit_tensors(path, base_model)
    np.testing.assert_array_equal(keras_llm.from_pretrained(path)(gpt_inputs()), expected)


def test_half_precision_tensors_load_as_float32(checkpoint):
    path = checkpoint("gpt")
    edit_tensors(path, lambda t: t.update({n: a.astype("float16") for n, a in t.items()}))
    model = keras_llm.from_pretrained(path)
    from safetensors.numpy import load_file

    wte = load_file(os.path.join(path, "model.safetensors"))["transformer.wte.weight"]
    table = model.get_layer("embeddings").token_embedding.embeddings
    assert table.dtype == "float32"
    np.testing.assert_array_equal(np.asarray(table), wte.astype("float32"))


# -- save_pretrained ----------------------------------------------------------


def saving_refused(model, path, error, parts, **kwargs):
    parent = os.path.dirname(path)
    before = snapshot(parent)
    with pytest.raises(error) as raised:
        keras_llm.save_pretrained(model, path, **kwargs)
    for part in parts:
        assert part in str(raised.value), (part, str(raised.value))
    assert snapshot(parent) == before
    return str(raised.value)


def test_save_refuses_models_it_cannot_map(tmp_path):
    path = str(tmp_path / "out")
    inputs = keras.Input((None,), dtype="int32")
    plain = keras.Model(inputs, keras.layers.Embedding(10, 4)(inputs), name="plain")
    saving_refused(plain, path, ValueError, ["maps models of keras_llm's builders", "build_gpt",
                                             "model='plain'"])
    saving_refused("gpt.keras", path, TypeError, ["must be a keras.Model"])
    gpt = keras_llm.build_gpt(**SIZES)
    gpt.get_layer("transformer_layer_1").activation = keras.activations.relu
    saving_refused(gpt, path, ValueError, ["differs from what keras_llm.build_gpt(", "num_layers=2",
                                           "'transformer_layer_1'", "activation='relu'"])
    saving_refused(keras_llm.build_gpt(**SIZES), path, ValueError, ["`label_names` is for"],
                   label_names=["a", "b"])
    classifier = keras_llm.build_bert_classifier(num_classes=3, **SIZES)
    saving_refused(classifier, path, ValueError, ["must have the model's 3 names"],
                   label_names=["a", "b"])


def test_save_is_atomic(tmp_path, checkpoint):
    gpt = keras_llm.build_gpt(**SIZES)
    path = checkpoint("gpt")
    saving_refused(gpt, path, FileExistsError, ["exists; refusing to overwrite it"])
    # The tokenizer's writer fails once the model's files are written: nothing is left.
    saving_refused(keras_llm.build_gpt("gpt_nano", num_layers=1), str(tmp_path / "new"),
                   TypeError, ["must be a WordPiece tokenizer"],
                   tokenizer=keras_llm.tokenizers.ByteTokenizer())
    big = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(200)])
    saving_refused(gpt, str(tmp_path / "new"), ValueError, ["at most the model's 100 token ids",
                                                            "vocabulary_size=205"], tokenizer=big)
    keras_llm.save_pretrained(gpt, path, overwrite=True)
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
    np.testing.assert_array_equal(keras_llm.from_pretrained(path)(gpt_inputs()), gpt(gpt_inputs()))


@pytest.mark.slow  # the tokenizer's lookup tables take seconds to build
def test_save_writes_the_tokenizer_beside_the_model(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s"]
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(vocabulary)
    model = keras_llm.build_bert(**{**SIZES, "vocabulary_size": len(vocabulary)})
    path = keras_llm.save_pretrained(model, str(tmp_path / "bert"), tokenizer=tokenizer)
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(os.listdir(path))
    assert keras_llm.tokenizers.from_pretrained(path)("The cats").numpy().tolist() == [5, 6, 7]
    shutil.rmtree(path)
