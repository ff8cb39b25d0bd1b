"""The embedded default corpus: docstrings of the running Python's standard library."""

import ast
import os
import sysconfig

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
    file order. About 1.8 MB on CPython 3.11.

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
    stdlib_dir = stdlib_dir or sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(stdlib_dir):
        raise FileNotFoundError(
            f"The standard library directory does not exist. Received: stdlib_dir={stdlib_dir!r}"
        )
    documents = []
    for root, dirs, files in os.walk(stdlib_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for file_name in sorted(files):
            if not file_name.endswith(".py"):
                continue
            try:
                with open(os.path.join(root, file_name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue  # a few files are templates or in other encodings
            for node in ast.walk(tree):
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    doc = ast.get_docstring(node, clean=True)
                    if doc and len(doc) >= min_chars:
                        documents.append(doc)
    return documents
