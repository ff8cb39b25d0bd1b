"""The embedded default corpora, read from the running Python's standard library.

- `stdlib_docstrings`: the docstrings (the GPT's and BERT's `keras-llm train`
  corpus);
- `stdlib_function_summaries`: each function's source paired with the first
  line of its docstring (the seq2seq task: summarize code).

Both need no download and copy nothing into this repository.
"""

import ast
import collections
import functools
import os
import sysconfig
import zlib

# Folders of the standard library that hold third-party code, test suites or
# generated tables rather than documentation prose.
_SKIPPED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def stdlib_docstrings(stdlib_dir=None, min_chars=40):
    """Returns the docstrings of the Python standard library, in a fixed order.

    The corpus of `keras-llm train`: English prose that every Python install
    already has, so training needs no download and nothing is copied into
    this repository. Every `.py` file under the standard library directory
    (except test suites and `site-packages`) is parsed with `ast`, and the
    docstrings of modules, classes and functions are collected in sorted
    file order. About 1.8 MB on CPython 3.11. This interpreter's own
    standard library is parsed once a process (5-10 s of CPU), another
    `stdlib_dir` on every call.

    Args:
        stdlib_dir: The directory to read; defaults to this interpreter's
            standard library (`sysconfig.get_paths()["stdlib"]`).
        min_chars: Docstrings shorter than this are skipped.

    Returns:
        A list of strings, one per docstring.

    Example:

    ```python
    import keras_llm

    docs = keras_llm.data.stdlib_docstrings()
    assert len(docs) > 1000 and all(isinstance(d, str) for d in docs)
    ```
    """
    if _is_running_stdlib(stdlib_dir):
        return list(_running_stdlib_docstrings(min_chars))
    return _docstrings(stdlib_dir, min_chars)


def _is_running_stdlib(stdlib_dir):
    """Whether `stdlib_dir` is this interpreter's standard library, which cannot change while it runs."""
    return stdlib_dir is None or os.path.realpath(stdlib_dir) == os.path.realpath(
        sysconfig.get_paths()["stdlib"]
    )


# Parsing the standard library takes 5-10 s of CPU; `keras-llm train` (and a
# seq2seq run's two splits) would pay it again on every call. Another
# directory can change between calls: it is read every time.
@functools.lru_cache(maxsize=None)
def _running_stdlib_docstrings(min_chars):
    return tuple(_docstrings(None, min_chars))


def _docstrings(stdlib_dir, min_chars):
    documents = []
    for _, tree in _stdlib_trees(stdlib_dir):
        for node in _definitions(tree):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= min_chars:
                documents.append(doc)
    return documents


def _stdlib_trees(stdlib_dir):
    """`(path relative to stdlib_dir, ast.Module)` of each parseable file, in sorted order."""
    stdlib_dir = stdlib_dir or sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(stdlib_dir):
        raise FileNotFoundError(
            f"The standard library directory does not exist. Received: stdlib_dir={stdlib_dir!r}"
        )
    for root, dirs, files in os.walk(stdlib_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for file_name in sorted(files):
            if not file_name.endswith(".py"):
                continue
            path = os.path.join(root, file_name)
            try:
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue  # a few files are templates or in other encodings
            yield os.path.relpath(path, stdlib_dir), tree


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DOCUMENTED = (ast.Module, ast.ClassDef, *_FUNCTIONS)


def _definitions(node):
    """The modules, classes and functions at or under `node`, reached through statement bodies.

    A definition is a statement, so only the statement lists are searched
    (`ast.walk` visits every expression too: most of the time it took); the
    order is `ast.walk`'s (breadth first, fields in their `_fields` order).
    """
    todo = collections.deque([node])
    while todo:
        node = todo.popleft()
        if isinstance(node, _DOCUMENTED):
            yield node
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                todo.extend(
                    v for v in value if isinstance(v, (ast.stmt, ast.excepthandler, ast.match_case))
                )


def _unparsed_without_docstrings(function):
    """`ast.unparse(function)` with its docstrings (its own and nested ones) left out.

    The docstrings are taken out of the tree for the call and put back, not
    removed from a deep copy: copying each of the standard library's
    functions took more than half of `stdlib_function_summaries`' time.
    """
    removed = []
    for node in _definitions(function):
        if ast.get_docstring(node, clean=False) is not None:
            removed.append((node, node.body))
            node.body = node.body[1:] or [ast.Pass()]
    try:
        return ast.unparse(function)
    finally:
        for node, body in removed:
            node.body = body


def stdlib_function_summaries(
    split="train", stdlib_dir=None, held_out_percent=5, min_summary_chars=12,
    max_source_chars=1500,
):
    """Pairs of a standard-library function's source and the first line of its docstring.

    Data for an encoder-decoder task that needs no download: summarize code
    (the seq2seq model and its `keras-llm train` preset are still to come). Each documented function and
    method of the standard library (test suites and `site-packages` left out,
    as in `stdlib_docstrings`), nested ones included, gives one pair:

    - `source`: the function as `ast.unparse` writes it, with every docstring
      inside it removed (so the answer is not in the question) and comments
      gone (`ast` drops them);
    - `target`: the first line of its docstring, stripped.

    Skipped: summaries shorter than `min_summary_chars` (`"Return x."`-like
    lines still count; `"XXX"` does not) and sources longer than
    `max_source_chars` characters (they would be cut by any short window).
    A source is kept once, the first time it appears (the standard library
    has copies of some functions): no held-out source is also a training one.

    Held-out data is whole files: a file goes to `"test"` when the CRC-32 of
    its relative path, modulo 100, is below `held_out_percent`, so methods
    of one class (which often share summaries) never straddle the split, and
    the split is the same on every machine with the same Python version.
    As in `stdlib_docstrings`, this interpreter's standard library is parsed
    once a process (both splits at once).

    Args:
        split: `"train"`, `"test"` or `"all"`.
        stdlib_dir: The directory to read; defaults to this interpreter's
            standard library.
        held_out_percent: Percent of files (by hash) in `"test"`, in `[0, 100]`.
        min_summary_chars, max_source_chars: The filters above.

    Returns:
        A list of `{"source": str, "target": str}`, in file and line order
        (`"all"`: the training pairs, then the held-out ones).

    Example:

    ```python
    import keras_llm

    pairs = keras_llm.data.stdlib_function_summaries("test")
    assert len(pairs) > 200
    assert all(p["source"].startswith(("def ", "async def ", "@")) for p in pairs)
    assert all(p["target"] and "\\n" not in p["target"] for p in pairs)
    ```
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"`split` must be 'train', 'test' or 'all'. Received: split={split!r}")
    if not (isinstance(held_out_percent, int) and 0 <= held_out_percent <= 100):
        raise ValueError(
            f"`held_out_percent` must be an int in [0, 100]. Received: {held_out_percent!r}"
        )
    settings = (held_out_percent, min_summary_chars, max_source_chars)
    if _is_running_stdlib(stdlib_dir):
        pairs = _running_stdlib_summaries(*settings)  # both splits, parsed once a process
    else:
        pairs = _summaries(stdlib_dir, *settings)
    chosen = [*pairs["train"], *pairs["test"]] if split == "all" else pairs[split]
    return [dict(pair) for pair in chosen]  # the caller's to change


@functools.lru_cache(maxsize=None)
def _running_stdlib_summaries(held_out_percent, min_summary_chars, max_source_chars):
    return _summaries(None, held_out_percent, min_summary_chars, max_source_chars)


def _summaries(stdlib_dir, held_out_percent, min_summary_chars, max_source_chars):
    """`{"train": [...], "test": [...]}`: the pairs of `stdlib_function_summaries`, both splits."""
    pairs, seen = {"train": [], "test": []}, set()
    for path, tree in _stdlib_trees(stdlib_dir):
        held_out = zlib.crc32(path.replace(os.sep, "/").encode("utf-8")) % 100 < held_out_percent
        functions = [node for node in _definitions(tree) if isinstance(node, _FUNCTIONS)]
        for node in sorted(functions, key=lambda n: (n.lineno, n.col_offset)):
            doc = ast.get_docstring(node, clean=True)
            target = doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
            if len(target) < min_summary_chars:
                continue
            source = _unparsed_without_docstrings(node)
            if len(source) > max_source_chars or source in seen:
                continue
            seen.add(source)
            pairs["test" if held_out else "train"].append({"source": source, "target": target})
    return pairs
