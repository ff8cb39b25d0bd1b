import numpy as np
import pytest

import keras_llm


def test_causal_lm_windows_against_numpy():
    stream = np.random.default_rng(0).integers(0, 50, size=203)
    ds = keras_llm.data.causal_lm_dataset(stream, 10, batch_size=4, shuffle=False)
    windows = [stream[i * 10 : i * 10 + 11] for i in range(20)]
    batches = list(ds)
    assert len(batches) == 5
    for b, (x, y, w) in enumerate(batches):
        for row in range(4):
            window = windows[b * 4 + row]
            assert x["token_ids"][row].numpy().tolist() == window[:-1].tolist()
            assert y[row].numpy().tolist() == window[1:].tolist()
        assert np.all(x["padding_mask"].numpy() == 1) and np.all(w.numpy() == 1.0)


def test_causal_lm_shuffle_is_deterministic_given_seed():
    stream = np.arange(1000)
    first = lambda seed: [x["token_ids"].numpy().tolist() for x, _, _ in keras_llm.data.causal_lm_dataset(stream, 9, 4, seed=seed)]
    assert first(3) == first(3)
    assert first(3) != first(4)


def test_causal_lm_rejects_too_little_data():
    with pytest.raises(ValueError, match="batch_size=8"):
        keras_llm.data.causal_lm_dataset(np.arange(20), 9, batch_size=8)


def test_stdlib_docstrings_reads_what_ast_finds(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "a.py").write_text('"""Module doc that is long enough to keep."""\ndef f():\n    """Tiny."""\n')
    (tmp_path / "pkg" / "b.py").write_text('class C:\n    """A class docstring, also long enough here."""\n')
    (tmp_path / "test" / "c.py").write_text('"""Test-suite docstrings are skipped, however long."""\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    docs = keras_llm.data.stdlib_docstrings(str(tmp_path), min_chars=10)
    assert docs == ["Module doc that is long enough to keep.", "A class docstring, also long enough here."]


def test_stdlib_corpus_is_large_english_text():
    docs = keras_llm.data.stdlib_docstrings()
    size = sum(len(d.encode("utf-8")) for d in docs)
    assert size > 500_000, size  # about 1.8 MB on CPython 3.11
    assert docs == keras_llm.data.stdlib_docstrings()  # same order every time


def test_missing_stdlib_dir_is_named():
    with pytest.raises(FileNotFoundError, match="nowhere"):
        keras_llm.data.stdlib_docstrings("/nowhere")
