"""Plots of attention maps, of the sinusoidal positional encoding and of training curves.

matplotlib is an optional dependency (`pip install keras-llm[plot]`),
imported when a plot is drawn. Every function returns a
`matplotlib.figure.Figure` made without pyplot: no window opens, no global
figure is left open, it draws on any backend (Agg included), and
`figure.savefig(path)` writes it. In a notebook, run `%matplotlib inline`
(or import `matplotlib.pyplot`) once, and a figure that ends a cell is shown.
"""

import math
from collections.abc import Mapping

import numpy as np

from keras_llm._checks import check_int
from keras_llm.inspect.attention import KINDS, AttentionMaps
from keras_llm.layers import PositionalEncoding


def _figure(**kwargs):
    """A new `matplotlib.figure.Figure`, or an ImportError that names the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "keras_llm.inspect's plots need matplotlib, an optional dependency: "
            "pip install 'keras-llm[plot]' (or pip install matplotlib)"
        ) from error
    return Figure(layout="constrained", **kwargs)


def _label(token):
    """A token as a tick label: spaces as `␣`, other unprintable characters escaped (`\\n`)."""
    return "".join(
        "\u2423" if c == " " else c if c.isprintable() else c.encode("unicode_escape").decode()
        for c in token
    )


def _selection(argument, value, count):
    """`value` (an int, ints, or None for all) as a list of indices in [0, count)."""
    chosen = list(range(count)) if value is None else (
        [value] if isinstance(value, (int, np.integer)) else list(value)
    )
    if not chosen or any(
        not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < count
        for i in chosen
    ):
        raise ValueError(
            f"`{argument}` must be None (all), or an index or indices in [0, {count}). "
            f"Received: {argument}={value!r}"
        )
    return [int(i) for i in chosen]


def plot_attention(maps, layer=None, head=None, *, kind="self_attention", figsize=None):
    """Heatmaps of attention weights with the tokens as labels: one head, or layers x heads.

    Each map shows query tokens as rows (y, top to bottom) and key tokens
    as columns (x), with one color scale (0 to the largest weight shown)
    and one color bar for all of them. A space token is labelled `␣`, other
    whitespace and unprintable characters by their escapes (`\\n`).

    Args:
        maps: An `AttentionMaps`, from `keras_llm.inspect.attention_maps`.
        layer: The layer to show (an index), several (a list), or None for
            every layer: one row of maps per layer.
        head: The head to show, several, or None for every head: one column
            per head.
        kind: Which attention: `"self_attention"` (over `maps.tokens`), or
            for a seq2seq model `"decoder_self_attention"` (over
            `maps.target_tokens`) or `"cross_attention"` (target tokens
            over source tokens).
        figsize: The figure's size in inches; default from the number of
            tokens and maps.

    Returns:
        A `matplotlib.figure.Figure`: one axes per map (rows: layers,
        columns: heads), titled `"layer L, head H"`, plus the color bar's.

    Example:

    ```python
    import numpy as np
    import keras_llm

    model = keras_llm.build_gpt(
        "gpt_nano", num_layers=2, tokenizer=keras_llm.tokenizers.ByteTokenizer()
    )
    maps = keras_llm.inspect.attention_maps(model, "Hi!")
    figure = keras_llm.inspect.plot_attention(maps, layer=1, head=0)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["H", "i", "!"]
    assert np.array_equal(axes.images[0].get_array(), maps.self_attention[1, 0])
    grid = keras_llm.inspect.plot_attention(maps)  # every layer x every head
    assert len(grid.axes) == 2 * 4 + 1  # and the color bar
    ```
    """
    if not isinstance(maps, AttentionMaps):
        raise TypeError(
            "`maps` must be an AttentionMaps (keras_llm.inspect.attention_maps). "
            f"Received: maps={type(maps).__name__}"
        )
    if kind not in KINDS or getattr(maps, kind) is None:
        present = [k for k in KINDS if getattr(maps, k) is not None]
        raise ValueError(
            f"`kind` must be one of the maps' kinds: {', '.join(present)}. Received: kind={kind!r}"
        )
    weights = getattr(maps, kind)  # [L, N, queries, keys]
    queries = maps.tokens if kind == "self_attention" else maps.target_tokens
    keys = maps.target_tokens if kind == "decoder_self_attention" else maps.tokens
    layers = _selection("layer", layer, weights.shape[0])
    heads = _selection("head", head, weights.shape[1])
    shown = weights[np.ix_(layers, heads)]  # [rows, columns, queries, keys]
    cell = max(2.5, 0.3 * max(len(keys), len(queries)) + 1.0)
    figure = _figure(figsize=figsize or (cell * len(heads) + 1.0, cell * len(layers)))
    grid = figure.subplots(len(layers), len(heads), squeeze=False, sharex=True, sharey=True)
    high = float(shown.max()) or 1.0
    for row, layer_index in enumerate(layers):
        for column, head_index in enumerate(heads):
            axes = grid[row][column]
            image = axes.imshow(
                shown[row, column], vmin=0.0, vmax=high, cmap="viridis",
                interpolation="nearest", aspect="auto",
            )
            axes.set_title(f"layer {layer_index}, head {head_index}", fontsize="small")
            axes.set_xticks(range(len(keys)), map(_label, keys), rotation=90, fontsize="small")
            axes.set_yticks(range(len(queries)), map(_label, queries), fontsize="small")
    for axes in grid[-1]:
        axes.set_xlabel("key")
    for row in grid:
        row[0].set_ylabel("query")
    figure.colorbar(image, ax=grid, label="attention weight", shrink=0.8)
    return figure


def plot_positional_encoding(sequence_length=64, hidden_dim=128, *, layer=None, figsize=None):
    """The sinusoidal positional-encoding table as an image: positions by channels.

    The table is what `keras_llm.layers.PositionalEncoding` adds to a
    sequence's embeddings (the layer applied to zeros): channel `2i` is
    `sin(pos / 10000^(2i / d))` and channel `2i + 1` its cosine, so the
    left channels turn fast and the right ones slowly.

    Args:
        sequence_length: Positions shown (rows).
        hidden_dim: Channels shown (columns), the model's width.
        layer: The `PositionalEncoding` layer to draw (e.g. with another
            `max_wavelength`); default `PositionalEncoding()`.
        figsize: The figure's size in inches.

    Returns:
        A `matplotlib.figure.Figure` with the image (`[sequence_length,
        hidden_dim]`, values in [-1, 1]) and its color bar.

    Example:

    ```python
    import numpy as np
    import keras_llm

    figure = keras_llm.inspect.plot_positional_encoding(sequence_length=16, hidden_dim=8)
    table = figure.axes[0].images[0].get_array()
    assert table.shape == (16, 8)
    assert np.isclose(table[5, 2], np.sin(5 / 10000 ** (2 / 8)), atol=1e-6)
    ```
    """
    check_int("sequence_length", sequence_length)
    check_int("hidden_dim", hidden_dim)
    layer = PositionalEncoding() if layer is None else layer
    if not isinstance(layer, PositionalEncoding):
        raise TypeError(
            "`layer` must be a keras_llm.layers.PositionalEncoding. "
            f"Received: layer={type(layer).__name__}"
        )
    # The layer adds its table: applied to zeros it returns the table itself.
    table = np.asarray(layer(np.zeros((1, sequence_length, hidden_dim), "float32")))[0]
    figure = _figure(figsize=figsize or (7.0, 4.5))
    axes = figure.subplots()
    image = axes.imshow(
        table, cmap="RdBu", vmin=-1.0, vmax=1.0, interpolation="nearest", aspect="auto"
    )
    axes.set_xlabel("channel (even: sin, odd: cos)")
    axes.set_ylabel("position")
    axes.set_title(f"Sinusoidal positional encoding (max_wavelength={layer.max_wavelength:g})")
    figure.colorbar(image, ax=axes)
    return figure


def plot_history(history, *, perplexity=True, figsize=None):
    """Training curves: loss, perplexity and accuracy per epoch, validation ones beside them.

    Panels, left to right: the loss; the perplexity (with `perplexity`):
    the history's `perplexity` metric where it recorded one (keras_llm's
    language models do, free of label smoothing), else `exp(loss)`, which
    is the perplexity when the loss is a per-token cross-entropy (a GPT's,
    without label smoothing); every accuracy metric the history holds
    (`accuracy`, `mlm_logits_accuracy`, ...). Each panel draws the
    training curve and, when present, the `val_` one.

    Args:
        history: What `model.fit` returns (a `keras.callbacks.History`), or
            its `.history` dict of per-epoch lists.
        perplexity: Whether to draw the perplexity panel. Leave it out
            where the loss is no per-token cross-entropy (a BERT
            pre-trainer's sum of two losses, a classifier's).
        figsize: The figure's size in inches.

    Returns:
        A `matplotlib.figure.Figure` with one axes per panel.

    Example:

    ```python
    import numpy as np
    import keras_llm

    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.4, 2.0], "accuracy": [0.2, 0.4, 0.5]}
    figure = keras_llm.inspect.plot_history(history)
    loss, perplexity, accuracy = figure.axes
    assert np.allclose(perplexity.lines[0].get_ydata(), np.exp(history["loss"]))
    assert [line.get_label() for line in loss.lines] == ["loss", "val_loss"]
    ```
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping) or not logs.get("loss"):
        keys = ", ".join(map(str, logs)) if isinstance(logs, Mapping) else type(history).__name__
        raise ValueError(
            "`history` must be a keras History (what model.fit returns) or its `.history` dict, "
            f"holding a non-empty 'loss' list. Received: history with {keys or 'no keys'}"
        )
    count = len(logs["loss"])
    epochs = list(getattr(history, "epoch", None) or [])
    epochs = [e + 1 for e in epochs] if len(epochs) == count else list(range(1, count + 1))

    panels = [("loss", {key: logs[key] for key in ("loss", "val_loss") if key in logs})]
    if perplexity:
        curves = {}
        for prefix in ("", "val_"):
            if f"{prefix}perplexity" in logs:
                curves[f"{prefix}perplexity"] = logs[f"{prefix}perplexity"]
            elif f"{prefix}loss" in logs:
                curves[f"exp({prefix}loss)"] = [math.exp(v) for v in logs[f"{prefix}loss"]]
        panels.append(("perplexity", curves))
    accuracies = sorted(k for k in logs if k.endswith("accuracy") and not k.startswith("val_"))
    if accuracies:
        panels.append(("accuracy", {
            key: logs[key] for name in accuracies for key in (name, f"val_{name}") if key in logs
        }))

    figure = _figure(figsize=figsize or (4.0 * len(panels), 3.5))
    from matplotlib.ticker import MaxNLocator  # matplotlib is there: _figure imported it
    for axes, (title, curves) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for label, values in curves.items():
            values = np.asarray(values, "float64")
            axes.plot(epochs[: len(values)], values, marker="o", markersize=3, label=label,
                      linestyle="--" if label.startswith(("val_", "exp(val_")) else "-")
        if title == "perplexity":
            axes.set_yscale("log")  # from the vocabulary's size down to a few
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    return figure
