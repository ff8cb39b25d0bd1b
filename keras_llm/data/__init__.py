"""Data: sources of text and the `tf.data` pipelines that feed the models.

- `sources.py`: `load_texts` from TFDS, local .txt/.csv/.tsv/.jsonl files,
  Python lists, or the embedded default corpus (`default_corpus.py`, the
  standard library's docstrings, which needs no download; and its functions'
  sources paired with their docstrings' first lines, for seq2seq).
- `causal_lm.py`: packing documents into next-token training windows.
- `masked_lm.py`: BERT's dynamic masking and pre-training batches
  (masked LM + next sentence).
- `fine_tuning.py`: classification and token-tagging batches with padding
  and length bucketing.
- `seq2seq.py`: encoder-decoder batches (source, teacher-forced target)
  with padding weights and length bucketing.
- `question_answering.py`: SQuAD-style examples cut into overlapping windows
  of `[CLS] question [SEP] context [SEP]`, with answer-span labels.
- `question_answering_files.py`: `read_qa_examples`, SQuAD-style examples from
  `.jsonl`/`.tsv`/`.csv` files or `tfds:NAME` (what `keras-llm finetune --task qa` reads).
"""

from keras_llm.data.causal_lm import causal_lm_dataset
from keras_llm.data.default_corpus import stdlib_docstrings, stdlib_function_summaries
from keras_llm.data.fine_tuning import classification_dataset, token_tagging_dataset
from keras_llm.data.masked_lm import mask_tokens, masked_lm_dataset
from keras_llm.data.question_answering import question_answering_dataset, question_answering_windows
from keras_llm.data.question_answering_files import read_qa_examples
from keras_llm.data.seq2seq import seq2seq_dataset
from keras_llm.data.sources import load_texts

__all__ = [
    "causal_lm_dataset",
    "classification_dataset",
    "load_texts",
    "mask_tokens",
    "masked_lm_dataset",
    "question_answering_dataset",
    "question_answering_windows",
    "read_qa_examples",
    "seq2seq_dataset",
    "stdlib_docstrings",
    "stdlib_function_summaries",
    "token_tagging_dataset",
]
