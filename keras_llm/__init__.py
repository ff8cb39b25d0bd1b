"""keras_llm: transformer language models for TensorFlow and Keras 3.

Build a model with `keras_llm.build_bert(...)` or `keras_llm.build_gpt(...)`,
train it with `model.fit`, save it with `model.save("x.keras")`. Load a
Hugging Face checkpoint with `keras_llm.from_pretrained(path)`, write one
with `keras_llm.save_pretrained(model, path)`. Look inside one with
`keras_llm.inspect`: attention maps over a text's tokens, and plots of them,
of positional encodings and of training curves.
"""

import os

# Keras 3 on TensorFlow is what keras_llm is built for.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_llm import (  # noqa: E402
    data,
    distribute,
    evaluation,
    generation,
    inspect,
    layers,
    models,
    pretrained,
    tokenizers,
    training,
)
from keras_llm.models import (  # noqa: E402
    BERT_PRESETS,
    GPT_PRESETS,
    LLAMA_PRESETS,
    SEQ2SEQ_PRESETS,
    build_bert,
    build_bert_classifier,
    build_bert_pretrainer,
    build_bert_question_answerer,
    build_bert_tagger,
    build_gpt,
    build_llama,
    build_seq2seq,
)
from keras_llm.compression import quantize  # noqa: E402
from keras_llm.export import export  # noqa: E402
from keras_llm.generation import generate  # noqa: E402
from keras_llm.pretrained import from_pretrained, save_pretrained  # noqa: E402
from keras_llm.training import compile_model  # noqa: E402

__version__ = "0.1.0"

# The builders and their presets are `keras_llm.models`' own list (its classes stay there).
__all__ = [
    *(name for name in models.__all__ if name.startswith("build_") or name.endswith("_PRESETS")),
    "compile_model",
    "data",
    "evaluation",
    "export",
    "from_pretrained",
    "generate",
    "generation",
    "inspect",
    "layers",
    "models",
    "pretrained",
    "quantize",
    "save_pretrained",
    "tokenizers",
    "training",
]
