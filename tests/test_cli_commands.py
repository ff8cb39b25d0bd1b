"""`keras-llm`'s parser, start-up, user errors and `generate` flags, in this process where possible."""

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import keras_llm
import keras_llm_cli
from keras_llm.cli.generate import row_seed
from keras_llm.models import registry


def _subcommand_help(capsys, name):
    with pytest.raises(SystemExit):
        keras_llm_cli.main([name, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_preset_names_are_keras_llms_presets():
    assert set(keras_llm_cli.GPT_PRESET_NAMES) == set(keras_llm.GPT_PRESETS)
    assert set(keras_llm_cli.BERT_PRESET_NAMES) == set(keras_llm.BERT_PRESETS)
    assert set(keras_llm_cli.SEQ2SEQ_PRESET_NAMES) == set(keras_llm.SEQ2SEQ_PRESETS)


def test_finetune_tasks_are_the_registrys_fine_tunable_tasks():
    # --task lists them without importing TensorFlow; the registry is where they are declared.
    tasks = [registry.get_task(name) for name in keras_llm_cli.FINETUNE_TASK_NAMES]
    assert [t.alias for t in tasks] == list(keras_llm_cli.FINETUNE_TASK_NAMES)
    assert [t.name for t in tasks] == ["classifier", "tagger", "question_answerer"]


def test_help_shows_defaults_and_presets(capsys):
    text = _subcommand_help(capsys, "train")
    for preset in list(keras_llm.GPT_PRESETS) + list(keras_llm.BERT_PRESETS):
        assert preset in text
    for flag, spec in keras_llm_cli.TRAIN_FLAGS.items():
        default = spec.get("default")
        if default is not None and not isinstance(default, bool):
            shown = repr(default) if default == "Return the " else default  # a trailing space shows
            assert f"Default: {shown}" in text.split(flag, 1)[1], flag
    text = _subcommand_help(capsys, "generate")
    assert "--num-beams" in text and "--num-samples" in text and "--prompt-file" in text
    assert "Default: 64" in text.split("--max-new-tokens", 1)[1]


@pytest.mark.slow
def test_help_imports_no_tensorflow():
    # How long it takes is benchmarks/cli_startup.py's table: a timing
    # assertion fails on a loaded machine; what makes it quick is this.
    script = (
        "import sys\n"
        "import keras_llm_cli\n"
        "for command in ('train', 'generate', 'finetune', 'export'):\n"
        "    try:\n"
        "        keras_llm_cli.main([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "sys.stderr.write(' '.join(m for m in ('tensorflow', 'keras', 'keras_llm') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--preset" in result.stdout and "--checkpoint" in result.stdout
    assert result.stderr == ""  # none of them imported


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small GPT saved as `keras-llm train` saves it (model.keras, carrying its tokenizer),
    and as the previous release saved it (legacy.keras without one, legacy.tokenizer.json)."""
    directory = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(3)
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, hidden_dim=32, intermediate_dim=64,
                                num_heads=2, max_sequence_length=64)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    assert model.tokenizer is None
    model.save(directory / "legacy.keras")
    (directory / "legacy.tokenizer.json").write_text(
        json.dumps(keras.saving.serialize_keras_object(tokenizer))
    )
    model.tokenizer = tokenizer
    model.save(directory / "model.keras")
    return directory, model, tokenizer


def cli(capsys, *argv):
    """Runs keras-llm in this process; (exit code, stdout, stderr)."""
    try:
        code = keras_llm_cli.main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # end to end: generate through the CLI (XLA loop)
def test_generate_samples_have_their_own_seed_per_prompt(trained, capsys):
    directory, model, tokenizer = trained
    path = str(directory / "model.keras")
    flags = ["--max-new-tokens", "12", "--temperature", "1.5", "--seed", "7"]
    code, out, _ = cli(capsys, "generate", "--model", path, "--prompt", "ab", "--prompt", "xy",
                       "--num-samples", "2", *flags)
    assert code == 0
    # Each row is what the Python API gives that prompt alone with its derived seed.
    expected = [
        prompt + keras_llm.generate(model, prompt, 12, tokenizer=tokenizer, temperature=1.5,
                                    seed=row_seed(7, prompt, sample))
        for prompt in ("ab", "xy") for sample in (0, 1)
    ]
    headers = ["# prompt 1, sample 1", "# prompt 1, sample 2", "# prompt 2, sample 1",
               "# prompt 2, sample 2"]
    assert out == "".join(f"{h}\n{e}\n" for h, e in zip(headers, expected))
    assert expected[0] != expected[1]  # two samples of one prompt differ
    # The same prompt and seed alone: the same text as in the batch.
    code, out, _ = cli(capsys, "generate", "--model", path, "--prompt", "xy", *flags)
    assert out == expected[2] + "\n"


@pytest.mark.slow  # two exports and an XLA compile: 15 s
def test_export_jit_compile_serves_what_the_plain_export_serves(trained, capsys, tmp_path):
    import tensorflow as tf

    directory, model, tokenizer = trained
    path = str(directory / "model.keras")
    versions = {}
    for flags in ([], ["--jit-compile"]):
        code, out, _ = cli(capsys, "export", "--model", path, "--output", str(tmp_path / "m"),
                           "--max-new-tokens", "8", *flags)
        assert code == 0
        versions[bool(flags)] = out.split("exported: ")[1].strip()
    texts = tf.constant(["ab", "", "hello world"])
    served = {}
    for jit, version in versions.items():
        loaded = tf.saved_model.load(version)
        served[jit] = loaded.signatures["serving_default"](text=texts)["generated_text"].numpy()
        graph = loaded.signatures["serving_default"].graph.as_graph_def()
        compiled = [f.signature.name for f in graph.library.function if f.attr["_XlaMustCompile"].b]
        assert bool(compiled) == jit, compiled
    assert served[True].tolist() == served[False].tolist()
    expected = keras_llm.generate(model, ["ab", "", "hello world"], 8, tokenizer=tokenizer)
    assert [t.decode("utf-8") for t in served[True]] == expected


@pytest.mark.slow  # end to end: three CLI generations
def test_a_previous_release_model_and_its_sidecar_tokenizer_still_load(trained, capsys, caplog, tmp_path):
    directory, _, _ = trained
    flags = ["--prompt", "ab", "--prompt", "hello", "--max-new-tokens", "6"]
    with caplog.at_level(logging.WARNING, logger="keras_llm"):
        code, carried, _ = cli(capsys, "generate", "--model", str(directory / "model.keras"), *flags)
        assert code == 0 and not caplog.records  # the model carries its tokenizer: no message
        code, legacy, _ = cli(capsys, "generate", "--model", str(directory / "legacy.keras"), *flags)
    assert code == 0 and legacy == carried
    message = caplog.text
    assert "Deprecated" in message and "legacy.tokenizer.json" in message
    assert "model.tokenizer = tokenizer" in message  # how to save it again
    # Neither a carried tokenizer nor a sidecar: one line saying both.
    (tmp_path / "bare.keras").write_bytes((directory / "legacy.keras").read_bytes())
    code, _, err = cli(capsys, "generate", "--model", str(tmp_path / "bare.keras"), *flags)
    _one_line_error(code, err, "carries no tokenizer", "bare.tokenizer.json")


def test_row_seeds_differ_between_prompts_and_samples():
    seeds = {row_seed(0, p, s) for p in ("a", "b", "c") for s in range(3)}
    assert len(seeds) == 9 and all(0 <= s < 2**31 for s in seeds)
    assert row_seed(0, "a", 0) == row_seed(0, "a", 0) != row_seed(1, "a", 0)


@pytest.mark.slow
def test_generate_beam_search_and_stop_strings(trained, capsys):
    from tests.generation.test_generator import beam_search_by_recomputing, greedy_by_recomputing

    directory, model, tokenizer = trained
    path = str(directory / "model.keras")
    prompt = list("to be".encode())
    stop = (tokenizer.end_token_id,)
    # The reference: beam search by recomputing every step in float64. The
    # prompt is one where it differs from greedy, so a CLI ignoring
    # --num-beams would fail.
    expected = beam_search_by_recomputing(model, prompt, 10, 3, stop)
    assert expected != greedy_by_recomputing(model, prompt, 10, stop)
    code, out, _ = cli(capsys, "generate", "--model", path, "--prompt", "to be", "--num-beams", "3",
                       "--max-new-tokens", "10")
    text = tokenizer.detokenize([[t for t in expected if t not in stop]]).numpy()[0].decode(
        "utf-8", errors="replace")
    assert code == 0 and out == "to be" + text + "\n"
    # --stop cuts before the first occurrence of any stop string.
    full = keras_llm.generate(model, "q", 40, tokenizer=tokenizer, temperature=1.0,
                              seed=row_seed(0, "q", 0))
    assert len(full) >= 12, full  # room for two stop strings
    stops = [full[8:10], full[4:5]]
    code, out, _ = cli(capsys, "generate", "--model", path, "--prompt", "q", "--max-new-tokens",
                       "40", "--temperature", "1.0", "--stop", stops[0], "--stop", stops[1])
    cut = min(full.find(s) for s in stops)
    assert code == 0 and out == "q" + full[:cut] + "\n"


@pytest.mark.slow
def test_generate_prompts_from_a_file_and_stdin(trained, capsys, monkeypatch, tmp_path):
    directory, _, _ = trained
    path = str(directory / "model.keras")
    code, expected, _ = cli(capsys, "generate", "--model", path, "--prompt", "one", "--prompt",
                            "two", "--max-new-tokens", "4")
    (tmp_path / "prompts.txt").write_text("\ufeffone\r\n\ntwo\n", encoding="utf-8")
    code, out, _ = cli(capsys, "generate", "--model", path, "--prompt-file",
                       str(tmp_path / "prompts.txt"), "--max-new-tokens", "4")
    assert code == 0 and out == expected
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\n"))
    code, out, _ = cli(capsys, "generate", "--model", path, "--prompt-file", "-",
                       "--max-new-tokens", "4")
    assert code == 0 and out == expected


def _one_line_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.slow  # 16 s: a dozen commands end to end
def test_user_errors_are_one_line_with_status_2(trained, capsys, tmp_path, monkeypatch):
    directory, _, _ = trained
    monkeypatch.chdir(tmp_path)
    path = str(directory / "model.keras")
    code, _, err = cli(capsys, "generate", "--model", path)
    _one_line_error(code, err, "--prompt")
    code, _, err = cli(capsys, "generate", "--model", path, "--prompt", "a", "--num-samples", "2")
    _one_line_error(code, err, "--num-samples 2", "--temperature")
    code, _, err = cli(capsys, "generate", "--model", path, "--prompt", "a", "--num-beams", "0")
    _one_line_error(code, err, "--num-beams must be positive")
    code, _, err = cli(capsys, "generate", "--model", path, "--prompt-file", "missing.txt")
    _one_line_error(code, err, "--prompt-file 'missing.txt'")
    code, _, err = cli(capsys, "generate", "--model", path, "--prompt", "a", "--num-beams", "2",
                       "--temperature", "0.7")
    _one_line_error(code, err, "Beam search (--num-beams=2) is deterministic", "--temperature")
    code, _, err = cli(capsys, "train", "--learning-rate", "0")
    _one_line_error(code, err, "--learning-rate must be positive; received 0.0")

    # A malformed tokenizer config beside a model of the previous release.
    (tmp_path / "bad.keras").write_bytes((directory / "legacy.keras").read_bytes())
    (tmp_path / "bad.tokenizer.json").write_text("{not json", encoding="utf-8")
    code, _, err = cli(capsys, "generate", "--model", "bad.keras", "--prompt", "a")
    _one_line_error(code, err, "bad.tokenizer.json", "not a keras_llm tokenizer config")

    # A truncated .keras file (Keras itself says "File not found").
    data = (directory / "model.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.tokenizer.json").write_text((directory / "legacy.tokenizer.json").read_text())
    code, _, err = cli(capsys, "generate", "--model", "cut.keras", "--prompt", "a")
    _one_line_error(code, err, "'cut.keras' is not a loadable .keras model")
    with pytest.raises(zipfile.BadZipFile):  # the file is damaged indeed
        zipfile.ZipFile(tmp_path / "cut.keras")

    # export --output naming an existing file.
    (tmp_path / "taken").write_text("")
    code, _, err = cli(capsys, "export", "--model", path, "--output", "taken")
    _one_line_error(code, err, "--output 'taken'")
    assert (tmp_path / "taken").read_text() == ""

    # train --data missing, or an empty file.
    code, _, err = cli(capsys, "train", "--data", "nope.txt")
    _one_line_error(code, err, "--data", "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    code, _, err = cli(capsys, "train", "--data", "empty.txt")
    _one_line_error(code, err, "--data", "empty.txt")
    # --tokenizer: a vocabulary size too small to learn, a vocab.json with a shared id.
    code, _, err = cli(capsys, "train", "--tokenizer", "train:3", "--steps", "1")
    _one_line_error(code, err, "--tokenizer 'train:3'", "vocabulary_size")
    os.makedirs("bpe")
    (tmp_path / "bpe" / "vocab.json").write_text('{"a": 0, "b": 0}')
    (tmp_path / "bpe" / "merges.txt").write_text("#version: 0.2\n")
    code, _, err = cli(capsys, "train", "--tokenizer", "bpe/vocab.json", "--steps", "1")
    _one_line_error(code, err, "--tokenizer 'bpe/vocab.json'")
    for leftover in ("gpt_nano_vocabulary", "gpt_nano_backup"):
        if os.path.isdir(leftover):
            assert os.listdir(leftover) == [], leftover  # nothing half-written
            os.rmdir(leftover)
    shutil.rmtree("bpe")
    assert sorted(os.listdir(tmp_path)) == [
        "bad.keras", "bad.tokenizer.json", "cut.keras", "cut.tokenizer.json", "empty.txt", "taken"
    ]


@pytest.mark.slow
def test_start_up_is_quiet_unless_verbose(trained, tmp_path):
    """TensorFlow's start-up lines (oneDNN, CUDA drivers, cuInit) appear only with --verbose."""
    directory, _, _ = trained
    script = os.path.join(os.path.dirname(sys.executable), "keras-llm")
    command = [script, "generate", "--model", str(directory / "model.keras"), "--prompt", "a",
               "--max-new-tokens", "2"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    assert quiet.stdout.strip()  # the completion was printed
    # That the same environment shows TensorFlow's log with --verbose is checked by
    # tests/test_cli.py's `train` run (one TensorFlow start-up less here).


@pytest.mark.slow  # a short training run: 20 s
def test_a_rerun_after_a_kill_before_the_first_backup_says_it_starts_at_step_0(
    tmp_path, capsys, monkeypatch
):
    # A run killed while writing its first backup leaves its tokenizer in the
    # backup directory and no complete backup: the rerun reuses the tokenizer
    # and starts at step 0. It said "resuming: a killed run's backup is in ...".
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpt_nano_backup").mkdir()
    (tmp_path / "gpt_nano_backup" / "tokenizer.json").write_text(
        json.dumps(keras.saving.serialize_keras_object(keras_llm.tokenizers.ByteTokenizer()))
    )
    code, out, err = cli(capsys, "train", "--steps", "2", "--batch-size", "4", "--sequence-length",
                         "32", "--sample-length", "4", "--backup-every", "1")
    assert code == 0, err[-3000:]
    assert "no complete backup: training starts at step 0" in out
    assert "resuming" not in out and "resumed at step" not in out
    assert not (tmp_path / "gpt_nano_backup").exists()  # removed with the backups once saved


@pytest.mark.slow  # a step of training: 15 s
def test_a_backup_of_another_model_is_a_one_line_error_naming_backup_dir(tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    other = keras_llm.build_gpt(vocabulary_size=tokenizer.vocabulary_size, num_layers=1, num_heads=2,
                                hidden_dim=16, intermediate_dim=32, max_sequence_length=32)
    keras_llm.compile_model(other)
    # A backup of a narrower GPT, and the tokenizer that a killed run keeps beside it.
    ids = np.ones((4, 32), "int32")
    batches = tf.data.Dataset.from_tensors(({"token_ids": ids, "padding_mask": ids}, ids)).repeat()
    keras_llm.training.fit_resumable(other, batches, epochs=1, steps_per_epoch=1,
                                     backup_dir="gpt_nano_backup", backup_every=1, verbose=0)
    (tmp_path / "gpt_nano_backup" / "tokenizer.json").write_text(
        json.dumps(keras.saving.serialize_keras_object(tokenizer))
    )
    code, _, err = cli(capsys, "train", "--steps", "2", "--batch-size", "4", "--sequence-length",
                       "32", "--sample-length", "4")
    _one_line_error(code, err, "--backup-dir 'gpt_nano_backup'", "another shape", "--backup-dir")
