"""Training defaults: optimizer, learning-rate schedule, losses and metrics.

All of them live in `keras_llm/training/defaults.py`; its module docstring has
the table of values and where each comes from. `token_loss.py` holds the
language-model loss, averaged over the global batch's real tokens;
`optimizer.py` the AdamW that clips the global batch's gradient;
`backup.py` atomic backups and `fit_resumable`, training that survives a kill;
`lora.py` LoRA adapters: enabled and merged for serving; `lora_files.py` them
saved and loaded alone;
`distillation.py` `distill`, a student trained on a frozen teacher's logits.
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
from keras_llm.training.distillation import distill
from keras_llm.training.lora import enable_lora, lora_spec, merge_lora
from keras_llm.training.lora_files import load_lora, save_lora
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
    "distill",
    "enable_lora",
    "fit_resumable",
    "load_lora",
    "lora_spec",
    "make_optimizer",
    "merge_lora",
    "save_lora",
]
