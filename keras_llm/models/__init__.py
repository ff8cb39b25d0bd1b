"""Model builders and their presets: `bert.py` (encoder) and `gpt.py` (decoder).

Each builder is a plain function that returns a functional `keras.Model`.
Presets are dicts of builder arguments; every builder takes `preset=` plus
keyword overrides with the same names: `vocabulary_size, num_layers,
num_heads, hidden_dim, intermediate_dim, dropout, max_sequence_length`.
"""

from keras_llm.models.bert import (
    BERT_PRESETS,
    build_bert,
    build_bert_classifier,
    build_bert_pretrainer,
    build_bert_question_answerer,
    build_bert_tagger,
)
from keras_llm.models.gpt import GPT_PRESETS, build_gpt

__all__ = [
    "BERT_PRESETS",
    "GPT_PRESETS",
    "build_bert",
    "build_bert_classifier",
    "build_bert_pretrainer",
    "build_bert_question_answerer",
    "build_bert_tagger",
    "build_gpt",
]
