"""The reference: transformers on PyTorch (CPU, float32) with tiny random checkpoints."""

import numpy as np
import torch
import transformers

from tests.pretrained.checkpoints import PADDING_MASK, SEGMENT_IDS, TOKEN_IDS

torch.set_num_threads(1)  # the CPUs are shared; these models are tiny

ATOL = 1e-4


def bert_config(**overrides):
    return transformers.BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=32, max_position_embeddings=32, **overrides,
    )


def gpt2_config(**overrides):
    # bos/eos default to GPT-2's 50256, outside this vocabulary.
    return transformers.GPT2Config(
        vocab_size=100, n_embd=16, n_layer=2, n_head=4, n_positions=32,
        bos_token_id=None, eos_token_id=None, **overrides,
    )


def random_checkpoint(model_class, config, path, dtype=torch.float32, **save_arguments):
    """A `model_class` with every parameter random (no LayerNorm left at 1, 0), saved to `path`."""
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.to(dtype)
    model.save_pretrained(path, safe_serialization=True, **save_arguments)
    return model


def load(model_class, path):
    """`model_class.from_pretrained(path)`, asserting transformers found every tensor it needs."""
    model, info = model_class.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    return model.eval(), info


def run_bert(model):
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(TOKEN_IDS, dtype=torch.long),
            token_type_ids=torch.tensor(SEGMENT_IDS, dtype=torch.long),
            attention_mask=torch.tensor(PADDING_MASK, dtype=torch.long),
        )


def run_gpt2(model):
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(TOKEN_IDS, dtype=torch.long),
            attention_mask=torch.tensor(PADDING_MASK, dtype=torch.long),
            output_hidden_states=True,
        )


def assert_close(got, want, where=None):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    if where is not None:
        got, want = got[where], want[where]
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
