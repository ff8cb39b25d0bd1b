"""Preset resolution and argument checks shared by every builder."""

import keras

from keras_llm._checks import is_finite_real, is_positive_int

# What a builder's `precision` takes: Keras dtype policy names.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

ARCHITECTURE_ARGUMENTS = (
    "vocabulary_size",
    "num_layers",
    "num_heads",
    "hidden_dim",
    "intermediate_dim",
    "dropout",
    "max_sequence_length",
)


def preset_table(rows, **shared):
    """Preset dicts from `(name, num_layers, hidden_dim, num_heads)` rows.

    The feed-forward width is 4x the hidden width, as in every published
    size here (BERT, GPT-2, the Transformer's base and big). `shared` holds
    the arguments every row takes; a row may end with a dict of its own
    that overrides them.

    Example:

    ```python
    from keras_llm.models._config import preset_table

    presets = preset_table(
        [("small", 2, 128, 2), ("wide", 2, 256, 4, dict(dropout=0.0))],
        vocabulary_size=100, max_sequence_length=64, dropout=0.1,
    )
    assert presets["small"]["intermediate_dim"] == 512
    assert presets["wide"]["dropout"] == 0.0
    ```
    """
    table = {}
    for name, num_layers, hidden_dim, num_heads, *own in rows:
        table[name] = dict(
            shared,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=4 * hidden_dim,
        )
        for overrides in own:
            table[name].update(overrides)
    return table


# What each builder argument must be, and how to tell. Every argument a
# builder resolves has an entry: a new one without it fails with a KeyError.
_CHECKS = {
    **{name: ("a positive int", is_positive_int) for name in ARCHITECTURE_ARGUMENTS},
    "num_segments": ("a positive int", is_positive_int),
    "dropout": ("a float in [0, 1)", lambda v: is_finite_real(v) and 0.0 <= v < 1.0),
    "layer_norm_epsilon": ("a positive float", lambda v: is_finite_real(v) and v > 0.0),
    "normalize_first": ("a bool (pre-norm: True, post-norm: False)", lambda v: isinstance(v, bool)),
}
_FLOATS = ("dropout", "layer_norm_epsilon")


def merged_config(builder, presets, preset, overrides, defaults, sizes, tokenizer=None):
    """`defaults`, then `presets[preset]`, then `overrides` (None values dropped); every size set.

    What every builder does before checking its own arguments: a keyword
    that neither `sizes` nor `defaults` names is Python's TypeError, an
    unknown preset and a size that neither the preset nor `overrides` give
    are errors naming them. `vocabulary_size` is the one given, else the
    tokenizer's, else the preset's.

    Args:
        builder: The builder's name, for error messages.
        presets: The builder's dict of preset dicts.
        preset: A preset name, or None to take every size from `overrides`.
        overrides: The keyword arguments the user passed.
        defaults: Values of the optional arguments.
        sizes: The names of the arguments without a default.
        tokenizer: The builder's tokenizer, or None.

    Example:

    ```python
    from keras_llm.models._config import merged_config

    presets = {"small": dict(vocabulary_size=100, num_layers=2)}
    config = merged_config("build", presets, "small", {"num_layers": 4}, dict(dropout=0.1),
                           ("vocabulary_size", "num_layers"))
    assert config == dict(dropout=0.1, vocabulary_size=100, num_layers=4)
    ```
    """
    unknown = sorted(set(overrides) - set(sizes) - set(defaults))
    if unknown:
        # What Python says of a keyword argument the signature does not name.
        raise TypeError(f"{builder}() got an unexpected keyword argument {unknown[0]!r}")
    if preset is not None and preset not in presets:
        raise ValueError(
            f"{builder}: unknown preset. Received: preset={preset!r}; "
            f"known presets: {', '.join(sorted(presets))}."
        )
    config = dict(defaults)
    if preset is not None:
        config.update(presets[preset])
    config.update({k: v for k, v in overrides.items() if v is not None})
    vocabulary_size = tokenizer_vocabulary_size(tokenizer, overrides.get("vocabulary_size"))
    if vocabulary_size is not None:
        config["vocabulary_size"] = vocabulary_size
    missing = [name for name in sizes if config.get(name) is None]
    if missing:
        raise ValueError(
            f"{builder}: pass a `preset` or every size argument; missing "
            f"{', '.join(missing)}. Known presets: {', '.join(sorted(presets))}."
        )
    return config


def resolve_config(builder, presets, preset, overrides, defaults, tokenizer=None):
    """Merges `defaults`, `presets[preset]` and `overrides` (`merged_config`), then validates.

    Args:
        builder: The builder's name, for error messages.
        presets: The builder's dict of preset dicts.
        preset: A preset name, or None to take every size from `overrides`.
        overrides: The keyword arguments the user passed (None values
            dropped): `ARCHITECTURE_ARGUMENTS` and the keys of `defaults`.
        defaults: Values of the optional arguments.
        tokenizer: The builder's tokenizer, whose size is the default
            `vocabulary_size` (over the preset's), or None.

    Returns:
        A dict with every architecture argument set.
    """
    config = merged_config(
        builder, presets, preset, overrides, defaults, ARCHITECTURE_ARGUMENTS, tokenizer
    )
    for name, value in config.items():
        expected, check = _CHECKS[name]
        if not check(value):
            raise ValueError(f"{builder}: `{name}` must be {expected}. Received: {name}={value!r}")
        if name in _FLOATS:
            config[name] = float(value)  # 0 or a NumPy float: a plain float in get_config
    if config["hidden_dim"] % config["num_heads"]:
        raise ValueError(
            f"{builder}: `hidden_dim` must be divisible by `num_heads`. "
            f"Received: hidden_dim={config['hidden_dim']}, "
            f"num_heads={config['num_heads']}"
        )
    return config


def resolve_precision(builder, precision):
    """The dtype policy of `precision`; None keeps Keras's global policy."""
    if precision is None:
        return keras.config.dtype_policy()
    if precision not in PRECISIONS:
        raise ValueError(
            f"{builder}: unknown precision. Received: precision={precision!r}; "
            f"expected one of {', '.join(PRECISIONS)} (or None for Keras's global policy)."
        )
    return keras.DTypePolicy(precision)


def tokenizer_vocabulary_size(tokenizer, vocabulary_size):
    """A builder's `vocabulary_size`: the one given, else its tokenizer's (None if neither).

    A given size that differs from the tokenizer's is checked when the
    model takes the tokenizer (`keras_llm.models.task_model.check_tokenizer`).
    """
    if vocabulary_size is not None or tokenizer is None:
        return vocabulary_size
    return getattr(tokenizer, "vocabulary_size", None)
