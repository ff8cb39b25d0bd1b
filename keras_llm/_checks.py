"""The small argument predicates every keras_llm check shares (one definition each)."""

import math
import numbers

import numpy as np


def is_positive_int(value):
    """1, 2; not a bool, a float, 0 or a NumPy int (it would not serialize into a config)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_finite_real(value):
    """0, 0.1, np.float32(0.1); not a bool, a string or NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value):
    """1, -3, np.int32(7); not a bool or a float (settings that become int32 tensors)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value):
    """1, 0.5, np.float32(0.5); not a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name, value, minimum=1, where=""):
    """`value`, checked to be an int >= `minimum` (not a bool); the one such check.

    Raises a `ValueError` naming the argument and the value received, prefixed
    by `where` (a builder's or a function's name) when given.

    Example:

    ```python
    from keras_llm._checks import check_int

    assert check_int("num_heads", 4) == 4
    try:
        check_int("num_heads", True)
    except ValueError as error:
        assert str(error) == "`num_heads` must be a positive int. Received: num_heads=True"
    ```
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}`{name}` must be {expected}. Received: {name}={value!r}")
    return value
