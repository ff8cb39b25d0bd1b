import ast
import os
import sysconfig
import zlib

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
    # Same order every time: a package with subpackages (email.mime), parsed twice
    # (another directory than the running library is never cached), and within the
    # whole library's documents in the same order.
    email = os.path.join(sysconfig.get_paths()["stdlib"], "email")
    first = keras_llm.data.stdlib_docstrings(email)
    assert len(first) > 50 and first == keras_llm.data.stdlib_docstrings(email)
    starts = [i for i, doc in enumerate(docs) if doc == first[0]]
    assert any(docs[i:i + len(first)] == first for i in starts)


def test_missing_stdlib_dir_is_named():
    with pytest.raises(FileNotFoundError, match="nowhere"):
        keras_llm.data.stdlib_docstrings("/nowhere")


FUNCTIONS = '''
def documented(x):
    """Return x doubled, as documented here.

    More lines that are not the summary.
    """

    def inner():
        """A nested docstring that must go too."""
        return 2

    # a comment
    return x * inner()


async def fetch():
    """Fetch something, asynchronously.   """
    return "not a docstring"


def short():
    """Tiny."""


def undocumented():
    return 1


class Thing:
    """Class docstrings are not summaries."""

    def method(self):
        """Name the thing for its method."""
        pass
'''


def test_function_summaries_pair_sources_without_docstrings_with_first_lines(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "lib" / "mod.py").write_text(FUNCTIONS)
    (tmp_path / "lib" / "copy.py").write_text(FUNCTIONS)  # the same pairs again: kept once
    (tmp_path / "tests" / "t.py").write_text(FUNCTIONS)  # test suites are skipped
    (tmp_path / "long.py").write_text(
        'def long():\n    """A function whose source is too long."""\n' + "    x = 1\n" * 400
    )
    pairs = keras_llm.data.stdlib_function_summaries("all", str(tmp_path))
    assert [p["target"] for p in pairs] == [
        "Return x doubled, as documented here.",
        "A nested docstring that must go too.",
        "Fetch something, asynchronously.",
        "Name the thing for its method.",
    ]
    # The source is the function itself, with every docstring inside it gone.
    first = ast.parse(pairs[0]["source"]).body[0]
    assert first.name == "documented"
    assert all(ast.get_docstring(n) is None for n in ast.walk(first)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    assert "nested docstring" not in pairs[0]["source"] and "comment" not in pairs[0]["source"]
    assert pairs[1]["source"] == "def inner():\n    return 2"
    assert ast.parse(pairs[2]["source"]).body[0].body[0].value.value == "not a docstring"
    assert ast.dump(ast.parse(pairs[3]["source"]).body[0].body[0]) == ast.dump(ast.Pass())
    # Held-out data is whole files, by the CRC-32 of their path (copy.py's is 40 % 100,
    # mod.py's 47). A source is kept once, where it first appears (copy.py): never in both.
    lib = str(tmp_path / "lib")
    for percent in (0, 45, 100):
        held_out = {f for f in ("copy.py", "mod.py") if zlib.crc32(f.encode()) % 100 < percent}
        test = keras_llm.data.stdlib_function_summaries("test", lib, held_out_percent=percent)
        train = keras_llm.data.stdlib_function_summaries("train", lib, held_out_percent=percent)
        assert len(test) == (4 if held_out else 0), percent
        assert len(train) == (0 if held_out else 4), percent
    with pytest.raises(ValueError, match="`split` must be"):
        keras_llm.data.stdlib_function_summaries("dev", str(tmp_path))
    with pytest.raises(ValueError, match="`held_out_percent`"):
        keras_llm.data.stdlib_function_summaries("test", str(tmp_path), held_out_percent=0.5)


@pytest.mark.slow
def test_stdlib_function_summaries_split_the_real_library():
    train = keras_llm.data.stdlib_function_summaries("train")
    test = keras_llm.data.stdlib_function_summaries("test")
    assert len(train) > 3000 and len(test) > 100, (len(train), len(test))  # 6081 / 402 on 3.11
    assert not {p["source"] for p in train} & {p["source"] for p in test}
    for pair in train[::50] + test[::10]:
        function = ast.parse(pair["source"]).body[0]
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        assert ast.get_docstring(function) is None and pair["target"] not in pair["source"]


NESTED_DEFINITIONS = '''
"""Module."""
try:
    def in_try():
        """In a try."""
except ImportError:
    def in_handler():
        """In a handler."""
else:
    class InElse:
        """In an else."""
finally:
    def in_finally():
        """In a finally."""
if True:
    async def in_if():
        """In an if."""
        def nested():
            """Nested."""
        return lambda: 1
while False:
    def in_while():
        """In a while."""
with open(__file__):
    def in_with():
        """In a with."""
match 1:
    case 1:
        def in_case():
            """In a case."""
for _ in ():
    pass
else:
    def in_for_else():
        """In a for's else."""
'''


def test_definitions_are_found_as_ast_walk_finds_them_in_its_order():
    # The corpora look for definitions through statement bodies only (faster
    # than `ast.walk`); the reference is `ast.walk`'s order and selection.
    from keras_llm.data import default_corpus

    tree = ast.parse(NESTED_DEFINITIONS)
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    expected = [n for n in ast.walk(tree) if isinstance(n, kinds)]
    assert len(expected) == 11  # the module and the ten definitions
    assert list(default_corpus._definitions(tree)) == expected


def test_the_docstrings_left_out_of_a_source_are_put_back_in_the_tree():
    from keras_llm.data import default_corpus

    tree = ast.parse(NESTED_DEFINITIONS)
    before = ast.dump(tree)
    in_if = next(n for n in ast.walk(tree) if getattr(n, "name", "") == "in_if")
    source = default_corpus._unparsed_without_docstrings(in_if)
    assert "In an if" not in source and "Nested" not in source and "pass" in source
    assert ast.dump(tree) == before  # the tree is unchanged for the next definition
