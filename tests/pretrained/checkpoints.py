"""Tiny checkpoints and inputs shared by tests/pretrained (no torch: the quick tests use these)."""

import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

import keras_llm

SIZES = dict(vocabulary_size=100, num_layers=2, num_heads=4, hidden_dim=16,
             intermediate_dim=32, max_sequence_length=32)

# Two rows, the second padded on the right: [CLS] a b c [SEP] d e [SEP] / [CLS] f g [SEP] pad...
TOKEN_IDS = np.array([[2, 11, 12, 13, 3, 14, 15, 3], [2, 21, 22, 3, 0, 0, 0, 0]], "int32")
SEGMENT_IDS = np.array([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]], "int32")
PADDING_MASK = (TOKEN_IDS != 0).astype("int32")


def bert_inputs(mask_positions=False):
    inputs = dict(token_ids=TOKEN_IDS, segment_ids=SEGMENT_IDS, padding_mask=PADDING_MASK)
    if mask_positions:  # every position: mlm_logits for the whole sequence, as transformers gives
        inputs["mask_positions"] = np.tile(np.arange(TOKEN_IDS.shape[1], dtype="int32"), (2, 1))
    return inputs


def gpt_inputs():
    return dict(token_ids=TOKEN_IDS, padding_mask=PADDING_MASK)


def write(model, path, **kwargs):
    """`model` saved by keras_llm.save_pretrained, with every weight random (not 1 or 0)."""
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.normal(0.0, 0.2, variable.shape).astype("float32"))
    return keras_llm.save_pretrained(model, path, **kwargs)


def read_config(path):
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def edit_config(path, **changes):
    config = read_config(path)
    config.update(changes)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)


def edit_tensors(path, edit):
    """Rewrites model.safetensors with `edit(tensors)` applied to its dict of arrays."""
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def snapshot(path):
    """Every file under `path` with its size and modification time: to show nothing was written."""
    found = {}
    for root, directories, files in os.walk(path):
        for name in directories + files:
            full = os.path.join(root, name)
            info = os.stat(full)
            found[os.path.relpath(full, path)] = (info.st_size, info.st_mtime_ns)
    return found
