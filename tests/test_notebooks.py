"""The Colab notebooks (colab/*.ipynb): committed clean, and run top to bottom in their small mode.

Every notebook runs in a Jupyter kernel of this interpreter (a kernelspec
written here, so no kernel needs to be installed) with KERAS_LLM_SMALL=1,
from colab/ as a user's working directory would be. The notebooks share one
kernel, whose namespace is reset before each: each still has to import and
define all it uses, and TensorFlow is imported once instead of eight times.
A cell that fails (or runs past CELL_TIMEOUT) fails the test with its
source; a cell that plots must show a PNG.
"""

import base64
import glob
import json
import os
import re
import sys

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

COLAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "colab")
NOTEBOOKS = sorted(os.path.basename(path) for path in glob.glob(os.path.join(COLAB, "*.ipynb")))
COLAB_URL = "https://colab.research.google.com/github/keras-llm/keras_llm/blob/main/colab/"
INSTALL = "keras_llm @ git+https://github.com/keras-llm/keras_llm"
CELL_TIMEOUT = 300  # seconds: a cell that hangs fails instead of stalling the suite
# A cell that draws: pyplot, keras_llm.inspect's plot_* helpers, or tagged "plot".
PLOTS = re.compile(r"\bplt\.show\(|\binspect\.plot_\w+\(")
# Before each notebook: a clean namespace and Keras's defaults (modules stay imported).
RESET = """\
%reset -f
import sys as _sys
if "keras" in _sys.modules:
    _sys.modules["keras"].backend.clear_session()
    _sys.modules["keras"].config.set_dtype_policy("float32")
del _sys
"""


def test_notebooks_are_there():
    assert [name[:3] for name in NOTEBOOKS] == [f"{n:02d}_" for n in range(1, 9)], NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name):
    """No outputs, a Colab badge to itself, the install cell first, a small mode from the environment."""
    notebook = nbformat.read(os.path.join(COLAB, name), as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    dirty = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not dirty, f"{name}: code cells {dirty} keep outputs or execution counts; clear them"
    assert notebook.cells[0].cell_type == "markdown"
    assert f"]({COLAB_URL}{name})" in notebook.cells[0].source, f"{name}: no Colab badge to itself"
    assert INSTALL in code[0].source and 'find_spec("keras_llm") is None' in code[0].source
    assert any('os.environ.get("KERAS_LLM_SMALL") == "1"' in cell.source for cell in code)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One kernel of this interpreter, started in colab/ with KERAS_LLM_SMALL=1; temp files under pytest's."""
    work = tmp_path_factory.mktemp("notebooks")
    spec = work / "kernels" / "keras_llm_small"
    spec.mkdir(parents=True)
    (work / "tmp").mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "keras_llm notebooks, small mode",
        "language": "python",
        "env": {
            "KERAS_LLM_SMALL": "1",
            "TMPDIR": str(work / "tmp"),  # exports and vocabularies go to tempfile.mkdtemp()
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        },
    }))
    manager = KernelManager(
        kernel_name="keras_llm_small",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(work / "kernels")]),
    )
    manager.start_kernel(cwd=COLAB)
    yield manager
    manager.shutdown_kernel(now=True)


def _png(output):
    data = base64.b64decode(output.get("data", {}).get("image/png", ""))
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") else b""


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, kernel):
    if not kernel.is_alive():  # a previous notebook killed it
        kernel.restart_kernel(now=True)
    notebook = nbformat.read(os.path.join(COLAB, name), as_version=4)
    client = NotebookClient(notebook, km=kernel, timeout=CELL_TIMEOUT)
    with client.setup_kernel():
        try:
            client.execute_cell(nbformat.v4.new_code_cell(RESET), -1)
            for index, cell in enumerate(notebook.cells):
                try:
                    client.execute_cell(cell, index)
                except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
                    pytest.fail(
                        f"{name}: cell {index} failed:\n{cell.source}\n\n{type(error).__name__}: {error}",
                        pytrace=False,
                    )
        finally:
            client.kc.stop_channels()  # the kernel is the fixture's: only this client goes
    for index, cell in enumerate(notebook.cells):
        plots = cell.cell_type == "code" and (
            PLOTS.search(cell.source) or "plot" in cell.metadata.get("tags", [])
        )
        if plots and not any(len(_png(output)) > 1000 for output in cell.outputs):
            pytest.fail(f"{name}: cell {index} draws but shows no PNG:\n{cell.source}", pytrace=False)
