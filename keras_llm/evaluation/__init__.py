"""Evaluation: from model outputs to answers, and the scores that fine-tuning reports.

- `metrics.py`: `accuracy`, `entity_f1` (CoNLL's entity-level precision,
  recall and F1 of BIO tags, as seqeval computes them) and `squad_scores`
  (SQuAD v1.1's exact match and F1). Plain Python. `accuracy` and
  `entity_f1` give fractions in [0, 1] (as Keras and seqeval);
  `squad_scores` gives percentages in [0, 100] (as SQuAD's official script
  and Hugging Face's squad metric).
- `question_answering.py`: `best_spans` (the best answer span of start and
  end logits) and `answer_questions` (questions and contexts in, answers
  as substrings of the contexts out), in core TensorFlow ops: the
  question-answering export serves the same code.
"""

from keras_llm.evaluation.metrics import accuracy, entity_f1, squad_scores
from keras_llm.evaluation.question_answering import answer_questions, best_spans

__all__ = ["accuracy", "answer_questions", "best_spans", "entity_f1", "squad_scores"]
