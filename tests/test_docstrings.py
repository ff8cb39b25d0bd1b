"""Runs every ```python example in keras_llm's docstrings and in README.md."""

import importlib
import inspect
import os
import pkgutil
import re

import pytest

import keras_llm

# Each example builds (and the README's train) models: the full tier runs them.
pytestmark = pytest.mark.slow

BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOLLM2_MARK = "# SmolLM2 from its GGUF to a served answer"


def public_objects():
    seen = {}
    for info in pkgutil.walk_packages(keras_llm.__path__, "keras_llm."):
        module = importlib.import_module(info.name)
        seen[info.name] = module
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            seen[f"{info.name}.{name}"] = obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and callable(member):
                        seen[f"{info.name}.{name}.{attr}"] = member
    return seen


def examples():
    found = []
    for name, obj in public_objects().items():
        for i, code in enumerate(BLOCK.findall(inspect.getdoc(obj) or "")):
            found.append(pytest.param(code, id=f"{name}[{i}]"))
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        for i, code in enumerate(BLOCK.findall(f.read())):
            # SmolLM2's walk-through exports a 135M-parameter model: it runs once, in
            # tests/export/test_smollm2_export.py, which also queries its export.
            if not code.startswith(SMOLLM2_MARK):
                found.append(pytest.param(code, id=f"README.md[{i}]"))
    return found


def test_public_api_has_examples():
    documented = {p.id.split("[")[0] for p in examples()}
    for name in ["build_bert", "build_bert_pretrainer", "build_bert_classifier", "build_gpt",
                 "PositionalEncoding", "PositionEmbedding", "TokenAndPositionEmbedding",
                 "TransformerBlock", "ByteTokenizer", "compile_model", "generate",
                 "build_bert_tagger", "build_bert_question_answerer", "from_pretrained",
                 "save_pretrained", "checkpoint_task", "tokenize_with_offsets",
                 "question_answering_dataset", "answer_questions", "best_spans", "entity_f1",
                 "squad_scores"]:
        assert any(d.endswith("." + name) for d in documented), name
    assert any(d == "README.md" for d in documented)


@pytest.mark.parametrize("code", examples())
def test_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<example>", "exec"), {})
