"""Preset resolution and argument checks shared by every builder."""

import keras

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


def resolve_config(builder, presets, preset, overrides, defaults):
    """Merges `defaults`, `presets[preset]` and `overrides`, then validates.

    Args:
        builder: The builder's name, for error messages.
        presets: The builder's dict of preset dicts.
        preset: A preset name, or None to take every size from `overrides`.
        overrides: The keyword arguments the user passed (None values dropped).
        defaults: Values of the optional arguments.

    Returns:
        A dict with every architecture argument set.
    """
    if preset is not None and preset not in presets:
        raise ValueError(
            f"{builder}: unknown preset. Received: preset={preset!r}; "
            f"known presets: {', '.join(sorted(presets))}."
        )
    config = dict(defaults)
    if preset is not None:
        config.update(presets[preset])
    config.update({k: v for k, v in overrides.items() if v is not None})
    missing = [name for name in ARCHITECTURE_ARGUMENTS if config.get(name) is None]
    if missing:
        raise ValueError(
            f"{builder}: pass a `preset` or every size argument; missing "
            f"{', '.join(missing)}. Known presets: {', '.join(sorted(presets))}."
        )
    for name in ARCHITECTURE_ARGUMENTS:
        if name == "dropout":
            continue
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"{builder}: `{name}` must be a positive int. "
                f"Received: {name}={value!r}"
            )
    if not 0.0 <= config["dropout"] < 1.0:
        raise ValueError(
            f"{builder}: `dropout` must be in [0, 1). "
            f"Received: dropout={config['dropout']!r}"
        )
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
