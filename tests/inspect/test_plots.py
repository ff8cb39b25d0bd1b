"""keras_llm.inspect's plots: the figures hold the maps, the tokens and the curves they are given."""

import builtins
import io
import math

import keras
import numpy as np
import pytest

import keras_llm
from keras_llm.inspect import AttentionMaps, plot_attention, plot_history, plot_positional_encoding

RNG = np.random.default_rng(0)


def softmax_rows(*shape):
    x = np.exp(RNG.normal(size=shape))
    return (x / x.sum(-1, keepdims=True)).astype("float32")


@pytest.fixture(scope="module")
def maps():
    # Attention maps as attention_maps returns them, for a seq2seq model: 2 encoder and
    # 3 decoder layers, 4 heads, a source of 5 tokens and a target of 3.
    return AttentionMaps(
        tokens=["a", "b", "c", "d", "</s>"], self_attention=softmax_rows(2, 4, 5, 5),
        target_tokens=["<s>", "x", "y"], decoder_self_attention=softmax_rows(3, 4, 3, 3),
        cross_attention=softmax_rows(3, 4, 3, 5),
    )


def labels(ticks):
    return [t.get_text() for t in ticks]


def test_one_head_is_one_heatmap_labelled_with_the_tokens(maps):
    figure = plot_attention(maps, layer=1, head=2)
    image_axes = [a for a in figure.axes if a.images]
    assert len(figure.axes) == 2 and len(image_axes) == 1  # the map and its color bar
    axes = image_axes[0]
    np.testing.assert_array_equal(axes.images[0].get_array(), maps.self_attention[1, 2])
    assert labels(axes.get_xticklabels()) == maps.tokens
    assert labels(axes.get_yticklabels()) == maps.tokens
    assert axes.get_title() == "layer 1, head 2"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("key", "query")


def test_a_grid_has_a_row_per_layer_and_a_column_per_head(maps):
    figure = plot_attention(maps, kind="cross_attention")
    image_axes = [a for a in figure.axes if a.images]
    assert len(image_axes) == 3 * 4 and len(figure.axes) == 3 * 4 + 1
    for i, axes in enumerate(image_axes):  # row-major: layer i // 4, head i % 4
        layer, head = divmod(i, 4)
        assert axes.get_title() == f"layer {layer}, head {head}"
        np.testing.assert_array_equal(axes.images[0].get_array(), maps.cross_attention[layer, head])
        # One color scale for all: 0 to the largest weight shown.
        assert axes.images[0].get_clim() == (0.0, pytest.approx(maps.cross_attention.max()))
    # Queries are the target tokens, keys the source tokens (shared axes: the labels
    # are drawn on the bottom row and the first column).
    assert labels(image_axes[-1].get_xticklabels()) == maps.tokens
    assert labels(image_axes[0].get_yticklabels()) == maps.target_tokens
    some = plot_attention(maps, layer=[0, 2], head=3, kind="decoder_self_attention")
    shown = [a.images[0].get_array() for a in some.axes if a.images]
    np.testing.assert_array_equal(shown, maps.decoder_self_attention[[0, 2], 3])


def test_the_maps_of_a_model_plot(maps):
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, tokenizer=keras_llm.tokenizers.ByteTokenizer())
    real = keras_llm.inspect.attention_maps(model, "ab c")
    figure = plot_attention(real, layer=0, head=0)
    assert real.tokens == ["a", "b", " ", "c"]
    assert labels(figure.axes[0].get_xticklabels()) == ["a", "b", "\u2423", "c"]  # a space shows
    figure.savefig(io.BytesIO(), format="png")  # draws on Agg


def test_bad_plot_arguments_are_named(maps):
    with pytest.raises(ValueError, match=r"`layer` must be .* in \[0, 2\). Received: layer=2"):
        plot_attention(maps, layer=2)
    with pytest.raises(ValueError, match="Received: head=-1"):
        plot_attention(maps, head=-1)
    gpt_like = AttentionMaps(tokens=["a"], self_attention=np.ones((1, 1, 1, 1), "float32"))
    with pytest.raises(ValueError, match="one of the maps' kinds: self_attention. Received: kind='cross_attention'"):
        plot_attention(gpt_like, kind="cross_attention")
    with pytest.raises(TypeError, match="Received: maps=ndarray"):
        plot_attention(np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="Received: history with val_loss"):
        plot_history({"val_loss": [1.0]})
    with pytest.raises(ValueError, match="Received: sequence_length=0"):
        plot_positional_encoding(0)


def test_positional_encoding_image_is_the_sinusoid_table():
    figure = plot_positional_encoding(sequence_length=20, hidden_dim=10)
    (image,) = figure.axes[0].images
    assert len(figure.axes) == 2  # the image and its color bar
    position = np.arange(20)[:, None]
    channel = np.arange(10)[None, :]
    angle = position / 10000.0 ** (2 * (channel // 2) / 10)
    want = np.where(channel % 2 == 0, np.sin(angle), np.cos(angle))  # Vaswani et al., 3.5
    np.testing.assert_allclose(image.get_array(), want, atol=1e-5)
    other = plot_positional_encoding(
        8, 4, layer=keras_llm.layers.PositionalEncoding(max_wavelength=100.0)
    )
    np.testing.assert_allclose(other.axes[0].images[0].get_array()[3, 2], math.sin(3 / 10.0), atol=1e-6)


def test_history_curves_are_the_logs():
    logs = {
        "loss": [5.0, 3.0, 2.0], "val_loss": [5.5, 3.5, 2.5],
        "perplexity": [140.0, 19.0, 7.0], "val_perplexity": [240.0, 33.0, 12.0],
        "accuracy": [0.1, 0.3, 0.5], "val_accuracy": [0.1, 0.2, 0.4],
    }
    loss, perplexity, accuracy = plot_history(logs).axes
    assert [line.get_label() for line in loss.lines] == ["loss", "val_loss"]
    np.testing.assert_array_equal(loss.lines[1].get_ydata(), logs["val_loss"])
    np.testing.assert_array_equal(loss.lines[0].get_xdata(), [1, 2, 3])
    # The recorded perplexity metric, where there is one.
    np.testing.assert_array_equal(perplexity.lines[0].get_ydata(), logs["perplexity"])
    np.testing.assert_array_equal(accuracy.lines[1].get_ydata(), logs["val_accuracy"])
    # Without it, exp(loss); without accuracies, no accuracy panel.
    (_, derived) = plot_history({"loss": [2.0, 1.0], "val_loss": [2.5, 1.5]}).axes
    np.testing.assert_allclose(derived.lines[0].get_ydata(), np.exp([2.0, 1.0]))
    np.testing.assert_allclose(derived.lines[1].get_ydata(), np.exp([2.5, 1.5]))
    assert len(plot_history({"loss": [1.0]}, perplexity=False).axes) == 1


def test_history_of_a_fit():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], run_eagerly=True)  # no tracing: fast
    x, y = RNG.normal(size=(8, 3)), RNG.integers(0, 2, size=8)
    history = model.fit(x, y, epochs=3, validation_data=(x, y), verbose=0)
    loss, _, accuracy = plot_history(history).axes
    np.testing.assert_allclose(loss.lines[0].get_ydata(), history.history["loss"])
    assert [line.get_label() for line in accuracy.lines] == ["accuracy", "val_accuracy"]


def test_without_matplotlib_the_error_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'keras-llm\[plot\]'"):
        plot_history({"loss": [1.0]})
