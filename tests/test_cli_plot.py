"""`keras-llm train --plot`: the flag, and the PNG of the training curves written beside the model.

A whole run with --plot is in tests/test_cli.py (slow); these call the writer directly.
"""

import importlib.util
import os

import keras
import numpy as np
import pytest

import keras_llm_cli
from keras_llm.cli._files import check_plot, write_history_plot


def history_of(logs):
    history = keras.callbacks.History()
    history.history = logs
    return history


def test_the_curves_are_written_as_a_png_beside_the_model(tmp_path, capsys):
    import matplotlib.image

    stem = str(tmp_path / "out" / "gpt_nano")
    logs = {"loss": [5.0, 3.0], "val_loss": [5.2, 3.3], "perplexity": [150.0, 20.0],
            "val_perplexity": [180.0, 27.0], "accuracy": [0.1, 0.3], "val_accuracy": [0.1, 0.2]}
    path = write_history_plot(history_of(logs), stem)
    assert path == stem + ".history.png"
    assert f"training curves: {path}" in capsys.readouterr().out
    pixels = matplotlib.image.imread(path)  # a PNG that reads back
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and np.ptp(pixels) > 0
    # Written atomically: nothing but the plot is left in the directory.
    assert os.listdir(tmp_path / "out") == ["gpt_nano.history.png"]
    # A rerun of a finished run trains no epoch: it says so and writes nothing.
    os.remove(path)
    assert write_history_plot(history_of({}), stem) is None
    assert "no epoch ran" in capsys.readouterr().out
    assert not os.path.exists(path)


def test_the_flag_is_declared_and_needs_matplotlib(monkeypatch, capsys):
    parser = keras_llm_cli.build_parser()
    args = parser.parse_args(["train", "--plot"])
    assert args.plot is True and parser.parse_args(["train"]).plot is False
    check_plot(parser, args)  # matplotlib is installed here: no error
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(SystemExit):
        check_plot(args.command_parser, args)
    assert "--plot needs matplotlib" in capsys.readouterr().err
