"""Pretrained checkpoints: Hugging Face model directories in and out of keras_llm's builders.

`from_pretrained(path, task=None, **head_arguments)` reads a Hugging Face
directory (`config.json` + safetensors weights) into a compiled model of
keras_llm's builders; `save_pretrained(model, path, tokenizer=None)` writes
one back that `transformers` loads with the same outputs.

| file | what it holds |
|---|---|
| `hugging_face.py` | the two public functions |
| `_files.py` | the directory: config.json, safetensors (one file or shards); no pickles |
| `_bert.py`, `_gpt2.py` | per family: config.json <-> builder arguments, tensors <-> variables |
| `_tensors.py` | the transforms between PyTorch's and Keras's layouts, shared by both directions |
| `_config.py` | typed reading of config.json values |
"""

from keras_llm.pretrained.hugging_face import checkpoint_task, from_pretrained, save_pretrained

__all__ = ["checkpoint_task", "from_pretrained", "save_pretrained"]
