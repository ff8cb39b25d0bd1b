"""Data: corpora and `tf.data` pipelines that feed the models.

- `default_corpus.py`: the embedded default corpus (the standard library's
  docstrings), which needs no download.
- `causal_lm.py`: packing token streams into next-token training windows.
"""

from keras_llm.data.causal_lm import causal_lm_dataset
from keras_llm.data.default_corpus import stdlib_docstrings

__all__ = ["causal_lm_dataset", "stdlib_docstrings"]
