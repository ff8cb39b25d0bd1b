"""Pretrained checkpoints: Hugging Face model directories in and out of keras_llm's builders.

`from_pretrained(path, task=None, **head_arguments)` reads a Hugging Face
directory (`config.json` + safetensors weights) into a compiled model of
keras_llm's builders; `save_pretrained(model, path, tokenizer=None)` writes
one back that `transformers` loads with the same outputs.

| file | what it holds |
|---|---|
| `hugging_face.py` | `from_pretrained` (attaching the checkpoint's tokenizer), `checkpoint_task` |
| `saving.py` | `save_pretrained`: what to write from the model's task and builder configuration |
| `_families.py` | which family maps which task: the family modules joined to `keras_llm.models.registry` |
| `_files.py` | the directory: config.json, safetensors (one file or shards); no pickles |
| `_bert.py`, `_gpt2.py`, `_bart.py` | per family: the parts of each architecture, config.json <-> builder arguments, tensors <-> variables |
| `_tensors.py` | the transforms between PyTorch's and Keras's layouts, shared by both directions |
| `_config.py` | typed reading of config.json values |
"""

from keras_llm.pretrained.hugging_face import checkpoint_task, from_pretrained
from keras_llm.pretrained.saving import save_pretrained

__all__ = ["checkpoint_task", "from_pretrained", "save_pretrained"]
