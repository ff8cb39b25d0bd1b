"""Training defaults: optimizer, learning-rate schedule, losses and metrics.

All of them live in `keras_llm/training/defaults.py`; its module docstring has
the table of values and where each comes from. `token_loss.py` holds the
language-model loss, averaged over the global batch's real tokens;
`optimizer.py` the AdamW that clips the global batch's gradient;
`backup.py` atomic backups and `fit_resumable`, training that survives a kill.
"""

from keras_llm.training.defaults import (
    NO_WEIGHT_DECAY,
    PEAK_LEARNING_RATE,
    TRAINING_DEFAULTS,
    WarmupLinearDecay,
    compile_model,
    default_jit_compile,
    make_optimizer,
)
from keras_llm.training.backup import TrainingBackup, fit_resumable
from keras_llm.training.optimizer import AdamW
from keras_llm.training.token_loss import TokenCrossEntropy

__all__ = [
    "AdamW",
    "NO_WEIGHT_DECAY",
    "PEAK_LEARNING_RATE",
    "TRAINING_DEFAULTS",
    "TokenCrossEntropy",
    "TrainingBackup",
    "WarmupLinearDecay",
    "compile_model",
    "default_jit_compile",
    "fit_resumable",
    "make_optimizer",
]
