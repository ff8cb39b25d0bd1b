"""Distribution: which `tf.distribute` strategy a run trains under.

- `strategy.py`: `choose_strategy` (what "auto" picks, and why) and
  `get_strategy` (creates it), `is_chief` (whether this process writes
  files in a multi-worker run).
- `keras_fixes.py`: two patches without which Keras 3's `fit` fails on two or
  more MultiWorkerMirroredStrategy workers; `get_strategy` installs them.
"""

from keras_llm.distribute.strategy import STRATEGY_NAMES, choose_strategy, get_strategy, is_chief

__all__ = ["STRATEGY_NAMES", "choose_strategy", "get_strategy", "is_chief"]
