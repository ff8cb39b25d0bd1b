"""Checkpoints written once per session by keras_llm.save_pretrained; each test edits a copy."""

import shutil

import pytest

import keras_llm
from tests.pretrained.checkpoints import SIZES, write


@pytest.fixture(scope="session")
def _originals(tmp_path_factory):
    base = tmp_path_factory.mktemp("checkpoints")
    return {
        "bert": write(keras_llm.build_bert_classifier(num_classes=3, **SIZES),
                      str(base / "bert"), label_names=["negative", "neutral", "positive"]),
        "bert_pretrainer": write(keras_llm.build_bert_pretrainer(**SIZES),
                                 str(base / "bert_pretrainer")),
        "gpt": write(keras_llm.build_gpt(**SIZES), str(base / "gpt")),
    }


@pytest.fixture
def checkpoint(_originals, tmp_path):
    """checkpoint(kind) -> the path of a fresh copy of a "bert", "bert_pretrainer" or "gpt" one."""

    copies = []

    def copy(kind):
        copies.append(kind)
        path = tmp_path / f"{kind}_{len(copies)}"
        shutil.copytree(_originals[kind], path)
        return str(path)

    return copy
