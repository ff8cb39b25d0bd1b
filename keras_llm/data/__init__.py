"""Data: corpora and `tf.data` pipelines that feed the models.

- `default_corpus.py`: the embedded default corpus (the standard library's
  docstrings), which needs no download.
- `causal_lm.py`: packing token streams into next-token training windows.
- `masked_lm.py`: BERT's masked-LM dynamic masking.
"""

from keras_llm.data.causal_lm import causal_lm_dataset
from keras_llm.data.default_corpus import stdlib_docstrings
from keras_llm.data.masked_lm import mask_tokens

__all__ = ["causal_lm_dataset", "mask_tokens", "stdlib_docstrings"]
