"""BERT checkpoints: keras_llm's outputs equal transformers', importing and exporting."""

import numpy as np
import pytest
import torch
import transformers

import keras_llm
from tests.pretrained.checkpoints import bert_inputs
from tests.pretrained.reference import (
    assert_close,
    bert_config,
    load,
    random_checkpoint,
    run_bert,
)

pytestmark = pytest.mark.slow  # torch and transformers take seconds to import


# architecture -> pairs (transformers output, keras_llm output) that must be equal
OUTPUTS = {
    "BertModel": lambda hf, ours: [(hf.last_hidden_state, ours["sequence_output"]),
                                   (hf.pooler_output, ours["pooled_output"])],
    "BertForMaskedLM": lambda hf, ours: [(hf.logits, ours["mlm_logits"])],
    "BertForPreTraining": lambda hf, ours: [(hf.prediction_logits, ours["mlm_logits"]),
                                            (hf.seq_relationship_logits, ours["nsp_logits"])],
    "BertForSequenceClassification": lambda hf, ours: [(hf.logits, ours)],
    "BertForTokenClassification": lambda hf, ours: [(hf.logits, ours)],
    "BertForQuestionAnswering": lambda hf, ours: [(hf.start_logits, ours["start_logits"]),
                                                  (hf.end_logits, ours["end_logits"])],
}
# keras_llm's masked LM is BERT's pre-trainer: it exports as BertForPreTraining.
EXPORTED_AS = {"BertForMaskedLM": "BertForPreTraining"}


@pytest.mark.parametrize("architecture", list(OUTPUTS))
def test_bert_checkpoint_round_trip_matches_transformers(architecture, tmp_path):
    model_class = getattr(transformers, architecture)
    labels = {"id2label": {0: "O", 1: "PER", 2: "LOC"}} if "Classification" in architecture else {}
    reference = random_checkpoint(model_class, bert_config(**labels), tmp_path / "hf")
    expected = run_bert(reference)

    model = keras_llm.from_pretrained(tmp_path / "hf")
    inputs = bert_inputs(mask_positions=architecture in ("BertForMaskedLM", "BertForPreTraining"))
    ours = model(inputs)
    # Padded positions too: both attend to the real tokens only.
    for want, got in OUTPUTS[architecture](expected, ours):
        assert_close(got, want)
    if labels:
        assert model.label_names == ("O", "PER", "LOC")

    path = keras_llm.save_pretrained(model, tmp_path / "back")
    exported = EXPORTED_AS.get(architecture, architecture)
    back, info = load(getattr(transformers, exported), path)
    assert not info["unexpected_keys"], info
    assert back.config.architectures == [exported]
    if labels:
        assert back.config.id2label == {0: "O", 1: "PER", 2: "LOC"}
    # The class it came from loads it too (a masked LM leaves the next-sentence head out).
    again, _ = load(model_class, path)
    for want, got in OUTPUTS[architecture](run_bert(again), ours):
        assert_close(got, want)


def test_sharded_checkpoint_loads(tmp_path):
    config = bert_config(num_labels=2)
    reference = random_checkpoint(transformers.BertForSequenceClassification, config,
                                  tmp_path / "hf", max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 1
    model = keras_llm.from_pretrained(tmp_path / "hf")
    assert_close(model(bert_inputs()), run_bert(reference).logits)


def test_bfloat16_checkpoint_loads_as_float32(tmp_path):
    reference = random_checkpoint(transformers.BertModel, bert_config(), tmp_path / "hf",
                                  dtype=torch.bfloat16)
    assert reference.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    model = keras_llm.from_pretrained(tmp_path / "hf")
    table = model.get_layer("embeddings").token_embedding.embeddings
    want = reference.embeddings.word_embeddings.weight.float().detach().numpy()
    np.testing.assert_array_equal(np.asarray(table), want)


def test_saved_directory_with_tokenizer_loads_in_transformers(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s"]
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(vocabulary)
    model = keras_llm.build_bert_classifier(
        num_classes=2, vocabulary_size=len(vocabulary), num_layers=1, num_heads=2,
        hidden_dim=8, intermediate_dim=16, max_sequence_length=16,
    )
    path = keras_llm.save_pretrained(model, tmp_path / "bert", tokenizer=tokenizer,
                                     label_names=["no", "yes"])
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoded = hf_tokenizer(["The cats sat"], return_tensors="pt")
    assert encoded["input_ids"].tolist() == [[2, 5, 6, 8, 7, 3]]
    reference, _ = load(transformers.AutoModelForSequenceClassification, path)
    with torch.no_grad():
        expected = reference(**encoded).logits
    ours = model({"token_ids": encoded["input_ids"].numpy().astype("int32"),
                  "segment_ids": encoded["token_type_ids"].numpy().astype("int32"),
                  "padding_mask": encoded["attention_mask"].numpy().astype("int32")})
    assert_close(ours, expected)
    assert reference.config.id2label == {0: "no", 1: "yes"}
