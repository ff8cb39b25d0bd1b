"""Model builders and their presets: `bert.py` (encoder) and `bert_heads.py` (its heads),
`gpt.py` (decoder), `seq2seq.py` (encoder-decoder).

Each builder is a plain function that returns a functional `keras.Model` that
says what it is (`model.task`): a `TaskModel` (the BERT builders) or, for the
models that generate, a class that also carries its decoding step
(`GPT`, `Seq2SeqTransformer`: `empty_cache`, `call_with_cache`; see
`keras_llm.generation`).
Presets are dicts of builder arguments; every builder takes `preset=` plus
keyword overrides with the same names: `vocabulary_size, num_layers,
num_heads, hidden_dim, intermediate_dim, dropout, max_sequence_length`.
"""

from keras_llm.models.bert import BERT_PRESETS, build_bert
from keras_llm.models.bert_heads import (
    build_bert_classifier,
    build_bert_pretrainer,
    build_bert_question_answerer,
    build_bert_tagger,
)
from keras_llm.models.gpt import GPT, GPT_PRESETS, build_gpt
from keras_llm.models.llama import LLAMA_PRESETS, Llama, build_llama
from keras_llm.models.seq2seq import SEQ2SEQ_PRESETS, Seq2SeqTransformer, build_seq2seq
from keras_llm.models.task_model import TaskModel

__all__ = [
    "BERT_PRESETS",
    "GPT",
    "GPT_PRESETS",
    "LLAMA_PRESETS",
    "Llama",
    "SEQ2SEQ_PRESETS",
    "Seq2SeqTransformer",
    "build_bert",
    "build_bert_classifier",
    "build_bert_pretrainer",
    "build_bert_question_answerer",
    "build_bert_tagger",
    "build_gpt",
    "build_llama",
    "build_seq2seq",
    "TaskModel",
]
