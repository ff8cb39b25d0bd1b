"""Training defaults: optimizer, learning-rate schedule, losses and metrics.

All of them live in `keras_llm/training/defaults.py`; its module docstring has
the table of values and where each comes from.
"""

from keras_llm.training.defaults import (
    NO_WEIGHT_DECAY,
    PEAK_LEARNING_RATE,
    TRAINING_DEFAULTS,
    WarmupLinearDecay,
    compile_model,
    make_optimizer,
)

__all__ = [
    "NO_WEIGHT_DECAY",
    "PEAK_LEARNING_RATE",
    "TRAINING_DEFAULTS",
    "WarmupLinearDecay",
    "compile_model",
    "make_optimizer",
]
