"""Shared checks for tokenizers meant for serving: stress strings, a TF-only process."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")

STRESS = [
    "", " ", "   \t\n ", "Hello, WORLD!!", "naïve café résumé", "Ǆ ǅ ﬁ Å Ω ŉ",
    "漢字テスト 日本語の文章", "한국어 텍스트", "emoji 🙂👍🏽 family 👨‍👩‍👧", "zero\u200bwidth\u200d joiner",
    "ctrl\x00\x07\x1bchars\x7f", "tab\tnew\nline\r\nend", "x\x85y\u2028z\u3000w\xa0v",
    "a" * 150, "supercalifragilisticexpialidocious", "12,345.67 and 3.14159e-10",
    "https://example.com/path?q=1&r=two#frag", "user@example.org", "don't «quote» „this“",
    "\u0301combining at start", "İstanbul ΣΑΣ straße", "$5+3=8^2|~`", "ﬀ ﬃ ½ ² №",
    "\ufffdreplacement", "Ελληνικά Русский עברית العربية हिन्दी", "  two  spaces  ",
    "tab\t\tthen\t x", "we'll  's it's", "trailing   ", "\u3000\u3000ideographic", " \t x",
]

TRAINING_CORPUS = [
    "The quick brown fox jumps over the lazy dog. Café déjà vu, naïve résumé!",
    "漢字 日本語 한국어 Ελληνικά Русский עברית العربية हिन्दी 🙂 https://example.com/a?b=1",
    "Numbers 123,456.78 and emails user@example.org; quotes «like» „these“. Don't, it's, we'll.",
] * 20


def shared_lines(name):
    """Lines of a file in ../shared/data, or None when it is absent."""
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


SHARED_FILES = ["sst2_train.tsv", "sst2_dev.tsv", "tinyshakespeare.txt"]


def lines_with_new_words(lines):
    """The lines that hold a (whitespace-separated) word no earlier line holds, in order.

    Together they hold every word of `lines`, each in a real line of them: for a
    tokenizer that splits on whitespace before anything else (WordPiece), a line
    left out gives the ids of words already checked, in the order it has them.
    On sst2_train.tsv they are 16% of the text, on tinyshakespeare.txt 60%.
    """
    seen, kept = set(), []
    for line in lines:
        words = set(line.split())
        if not words <= seen:
            kept.append(line)
            seen |= words
    return kept


def assert_same_ids_on_shared_file(name, tokenize, reference_ids, chunk=4096, every_line=True):
    """Every line of ../shared/data/NAME gives the same ids from both functions.

    With `every_line=False`, the lines of `lines_with_new_words`: every word of
    the file, in a line of the file, for tokenizers that split on whitespace first.
    Skips when the file is absent: shared/data exists only beside the
    project's checkout (CI has it), never on a user's machine.
    """
    lines = shared_lines(name)
    if lines is None:
        pytest.skip(f"../shared/data/{name} is absent (it exists only beside the project's checkout)")
    if not every_line:
        lines = lines_with_new_words(lines)
    for start in range(0, len(lines), chunk):
        texts = lines[start : start + chunk]
        assert tokenize(texts) == reference_ids(texts), f"{name}, lines checked {start + 1}-{start + len(texts)}"


def run_in_tensorflow_only_process(tokenizer, texts, tmp_path):
    """Saves `tokenizer` in a SavedModel, runs it in a fresh `python` that
    imports only tensorflow, and audits the graph's ops.

    Returns the ids per text, which of tensorflow_text, keras, keras_llm and
    keras_hub loading and running imported (beyond what `import tensorflow`
    imports by itself), the ops TensorFlow's registry does not know, and the
    number of distinct ops. A tokenizer with `tokenize_with_offsets` serves
    it too, in the same signature: its ids, starts and ends per text are
    returned as well (`offset_ids`, `starts`, `ends`), and audited with the rest.
    """

    class Serving(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def tokenize(self, texts):
            outputs = {"ids": self.tokenizer(texts).to_tensor(-1)}
            if hasattr(self.tokenizer, "tokenize_with_offsets"):
                ids, starts, ends = self.tokenizer.tokenize_with_offsets(texts)
                outputs.update(offset_ids=ids.to_tensor(-1), starts=starts.to_tensor(-1),
                               ends=ends.to_tensor(-1))
            return outputs

    export_dir = str(tmp_path / "saved")
    tf.saved_model.save(Serving(tokenizer), export_dir)
    script = textwrap.dedent(
        f"""
        import json, sys
        import tensorflow as tf
        from tensorflow.python.framework import op_def_registry
        before = set(sys.modules)  # `import tensorflow` itself brings parts of keras
        loaded = tf.saved_model.load({export_dir!r})
        outputs = loaded.tokenize(tf.constant(json.loads(sys.stdin.read())))
        rows = {{name: [[int(i) for i in row if i >= 0] for row in value.numpy()]
                 for name, value in outputs.items()}}
        graph = loaded.tokenize.concrete_functions[0].graph.as_graph_def()
        ops = {{n.op for n in graph.node}}
        ops |= {{n.op for f in graph.library.function for n in f.node_def}}
        ops -= {{f.signature.name for f in graph.library.function}}
        print(json.dumps({{
            **rows,
            "imported": sorted({{m.split(".")[0] for m in set(sys.modules) - before}}
                               & {{"tensorflow_text", "keras", "keras_llm", "keras_hub"}}),
            "unregistered": sorted(op for op in ops if op_def_registry.get(op) is None),
            "ops": len(ops),
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(texts), capture_output=True,
        text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
