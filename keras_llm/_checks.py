"""The small argument predicates every keras_llm check shares (one definition each)."""

import math
import numbers


def is_positive_int(value):
    """1, 2; not a bool, a float, 0 or a NumPy int (it would not serialize into a config)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_finite_real(value):
    """0, 0.1, np.float32(0.1); not a bool, a string or NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
