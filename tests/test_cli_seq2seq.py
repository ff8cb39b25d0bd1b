"""`keras-llm train` and `generate` with an encoder-decoder preset, end to end."""

import re

import keras
import keras_hub
import pytest
import tensorflow_datasets as tfds

import keras_llm
import keras_llm.cli
from tests.test_cli_commands import cli

pytestmark = pytest.mark.slow  # every test trains through the CLI

SMALL = ["--steps", "4", "--batch-size", "8", "--sequence-length", "32", "--target-length", "8",
         "--backup-every", "2"]


def test_the_main_job_summarizes_functions_and_reports_bleu_before_and_after(
    tmp_path, capsys, monkeypatch
):
    # The built-in task with a small learned vocabulary (the default is 4,096), in this
    # process: tests/test_cli.py runs the installed command.
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "train", "--preset", "seq2seq_tiny", "--tokenizer", "train:600",
                         *SMALL, "--eval-pairs", "40")
    assert code == 0, err[-3000:]
    assert "summarize a standard-library function into its docstring's first line" in out
    scores = re.findall(r"(before|after) training: validation loss [\d.]+, BLEU ([\d.]+), "
                        r"ROUGE-L F1 ([\d.]+) \(greedy, (\d+) held-out pairs\)", out)
    assert [s[0] for s in scores] == ["before", "after"] and int(scores[0][3]) == 40
    assert re.search(r"BLEU [\d.]+ -> [\d.]+", out)
    assert out.count("reference: ") == 3 and out.count("generated: ") == 3
    assert "the export serves the first one as:" in out
    assert (tmp_path / "seq2seq_tiny.keras").exists()
    assert (tmp_path / "saved_models" / "seq2seq_tiny" / "1" / "saved_model.pb").exists()
    assert not (tmp_path / "seq2seq_tiny_backup").exists()  # removed once saved

    code, out, err = cli(capsys, "generate", "--model", "saved_models/seq2seq_tiny", "--prompt",
                         "def add(a, b): return a + b", "--max-new-tokens", "4")
    assert code == 0, err[-2000:]
    assert out.startswith("def add(a, b): return a + b\n-> ")
    code, out, err = cli(capsys, "generate", "--model", "seq2seq_tiny.keras", "--prompt",
                         "def f(): pass", "--max-new-tokens", "4", "--num-beams", "2")
    assert code == 0, err[-2000:]
    assert out.startswith("def f(): pass\n-> ")


def test_pairs_from_a_tsv_file_with_named_fields_and_bleu_rises(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A task learnable in 40 steps: a template around the source's two words.
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    pairs = [(f"{a} {b}", f"we return the value of {b} and {a}") for a in words for b in words] * 5
    lines = ["de\ten"] + [f"{source}\t{target}" for source, target in pairs]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = cli(capsys, "train", "--preset", "seq2seq_tiny", "--data", "pairs.tsv",
                         "--source-field", "de", "--target-field", "en", "--tokenizer", "train:300",
                         *SMALL, "--steps", "40", "--batch-size", "16", "--target-length", "16",
                         "--backup-every", "20", "--output", "pairs.keras")
    assert code == 0, err[-3000:]
    assert "pairs: pairs.tsv (de -> en); one in 50 held out (4 scored)" in out
    assert (tmp_path / "saved_models" / "pairs" / "1").exists()
    # BLEU rises: the untrained model's (printed before training) against the trained one's,
    # recomputed here from the saved model's greedy outputs with keras-hub's BLEU.
    before, after = map(float, re.search(r"BLEU ([\d.]+) -> ([\d.]+)", out).groups())
    held_out = pairs[::50]
    model = keras.saving.load_model(tmp_path / "pairs.keras")
    outputs = keras_llm.generate(model, [s for s, _ in held_out], 16, tokenizer=model.tokenizer)
    bleu = keras_hub.metrics.Bleu()
    bleu.update_state([[t] for _, t in held_out], outputs)
    assert after == pytest.approx(float(bleu.result()), abs=1e-4)
    assert after > before + 0.2, out
    code, _, err = cli(capsys, "train", "--preset", "seq2seq_tiny", "--data", "pairs.tsv",
                       "--target-field", "en", *SMALL)
    assert code == 2 and "no field --source-field='source'" in err
    assert "it has ['de', 'en']" in err


def test_a_tfds_translation_data_set_by_its_feature_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with tfds.testing.mock_data(num_examples=120):
        code = keras_llm.cli.main([
            "train", "--preset", "seq2seq_tiny", "--data", "tfds:ted_hrlr_translate/pt_to_en",
            "--source-field", "pt", "--target-field", "en", "--tokenizer", "byte", *SMALL,
            "--output", "ted.keras",
        ])
    assert code == 0 and (tmp_path / "ted.keras").exists()
