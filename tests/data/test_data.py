import numpy as np
import pytest

import keras_llm


BYTES = keras_llm.tokenizers.ByteTokenizer()


def byte_stream(documents):
    """The packed stream in NumPy: each document's UTF-8 bytes, then the end id."""
    parts = [np.r_[np.frombuffer(d.encode("utf-8"), np.uint8).astype(np.int64), 256] for d in documents]
    return np.concatenate(parts)


def test_causal_lm_windows_against_numpy():
    rng = np.random.default_rng(0)
    documents = ["".join(rng.choice(list("abcdé "), size=n)) for n in rng.integers(0, 700, 40)]
    stream = byte_stream(documents)
    ds = keras_llm.data.causal_lm_dataset(documents, BYTES, 10, batch_size=4, shuffle=False)
    windows = [stream[i * 10 : i * 10 + 11] for i in range((len(stream) - 1) // 10)]
    batches = list(ds)
    assert len(batches) == len(windows) // 4
    for b, (x, y, w) in enumerate(batches):
        for row in range(4):
            window = windows[b * 4 + row]
            assert x["token_ids"][row].numpy().tolist() == window[:-1].tolist()
            assert y[row].numpy().tolist() == window[1:].tolist()
        assert np.all(x["padding_mask"].numpy() == 1) and np.all(w.numpy() == 1.0)


def test_causal_lm_shuffle_is_deterministic_and_new_each_epoch():
    documents = [f"document {i} " * (i % 7 + 1) for i in range(60)]
    def epochs(seed):
        ds = keras_llm.data.causal_lm_dataset(documents, BYTES, 9, 4, seed=seed)
        return [[x["token_ids"].numpy().tolist() for x, _, _ in ds] for _ in range(2)]
    first = epochs(3)
    assert first == epochs(3)
    assert first != epochs(4)
    assert first[0] != first[1]  # reshuffled each epoch
    unshuffled = keras_llm.data.causal_lm_dataset(documents, BYTES, 9, 4, shuffle=False)
    assert len(first[0]) == len(list(unshuffled))


def test_causal_lm_needs_an_end_token():
    word_piece = keras_llm.tokenizers.WordPieceTokenizer(["[UNK]", "a"])
    with pytest.raises(ValueError, match="no `end_token_id`; pass `end_token_id=`"):
        keras_llm.data.causal_lm_dataset(["a"], word_piece, 4, 2)
    with pytest.raises(ValueError, match="sequence_length=0"):
        keras_llm.data.causal_lm_dataset(["a"], BYTES, 0, 2)


def test_stdlib_docstrings_reads_what_ast_finds(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "a.py").write_text('"""Module doc that is long enough to keep."""\ndef f():\n    """Tiny."""\n')
    (tmp_path / "pkg" / "b.py").write_text('class C:\n    """A class docstring, also long enough here."""\n')
    (tmp_path / "test" / "c.py").write_text('"""Test-suite docstrings are skipped, however long."""\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    docs = keras_llm.data.stdlib_docstrings(str(tmp_path), min_chars=10)
    assert docs == ["Module doc that is long enough to keep.", "A class docstring, also long enough here."]


@pytest.mark.slow
def test_stdlib_corpus_is_large_english_text():
    docs = keras_llm.data.stdlib_docstrings()
    size = sum(len(d.encode("utf-8")) for d in docs)
    assert size > 500_000, size  # about 1.8 MB on CPython 3.11
    assert docs == keras_llm.data.stdlib_docstrings()  # same order every time


def test_missing_stdlib_dir_is_named():
    with pytest.raises(FileNotFoundError, match="nowhere"):
        keras_llm.data.stdlib_docstrings("/nowhere")
