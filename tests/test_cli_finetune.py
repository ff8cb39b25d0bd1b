"""`keras-llm finetune` on tiny checkpoints the tests write: each task trains, scores, saves and serves."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
import keras_llm_cli
from keras_llm import evaluation

WORDS = ["good", "bad", "film", "plot", "fun", "dull", "paris", "john", "lives", "in", "who",
         "where", "does", "?", "the", "is", "a", "city"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
TINY = dict(vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=64)


def _checkpoint(tmp_path):
    """A BertModel directory (no head: every task gets a fresh one), with its tokenizer files."""
    path = tmp_path / "tiny-bert"
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(VOCAB)
    keras_llm.save_pretrained(keras_llm.build_bert(**TINY), path, tokenizer=tokenizer)
    return str(path)


def _run(capsys, tmp_path, *flags):
    code = keras_llm_cli.main(
        ["finetune", "--checkpoint", _checkpoint(tmp_path), *flags, "--batch-size", "8",
         "--learning-rate", "1e-2", "--output", str(tmp_path / "out.keras"),
         "--export", str(tmp_path / "served")]
    )
    assert code == 0
    return capsys.readouterr().out


def _untrained(tmp_path, task, **head):
    """The checkpoint `_run` wrote with a fresh, untrained `task` head, and its tokenizer:
    the reference that fine-tuning must beat on the same data."""
    keras.utils.set_random_seed(0)
    model = keras_llm.from_pretrained(str(tmp_path / "tiny-bert"), task=task, **head)
    return model, keras_llm.tokenizers.from_pretrained(str(tmp_path / "tiny-bert"))


def _printed_scores(out):
    line = next(line for line in out.splitlines() if line.startswith("eval: "))
    pairs = (part.rsplit(" ", 1) for part in line[len("eval: "):].split(", "))
    return {name: float(value) for name, value in pairs}


def _sentiment_rows(path):
    """96 labelled sentences a tiny classifier learns ("the film is good"), written as TSV; the lines."""
    rng = np.random.default_rng(0)
    rows = ["label\tsentence"]
    for _ in range(96):
        label = int(rng.integers(2))
        words = [["bad", "dull"], ["good", "fun"]][label][rng.integers(2)]
        rows.append(f"{label}\tthe {rng.choice(['film', 'plot'])} is {words}")
    path.write_text("\n".join(rows) + "\n")
    return rows


@pytest.mark.slow
def test_classify_trains_scores_and_serves(capsys, tmp_path):
    rows = _sentiment_rows(tmp_path / "train.tsv")
    (tmp_path / "dev.tsv").write_text("\n".join(rows[:1] + rows[1:33]) + "\n")
    out = _run(capsys, tmp_path, "--task", "classify", "--train", str(tmp_path / "train.tsv"),
               "--eval", str(tmp_path / "dev.tsv"), "--epochs", "8")
    # The printed accuracy is the saved model's, recomputed here from its logits.
    model = keras.saving.load_model(tmp_path / "out.keras")
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(VOCAB)
    labels, texts = zip(*(row.split("\t") for row in rows[1:33]))
    ids = [[2] + tokenizer.tokenize(t).numpy().tolist() + [3] for t in texts]
    width = max(map(len, ids))
    x = {"token_ids": np.array([i + [0] * (width - len(i)) for i in ids], "int32"),
         "segment_ids": np.zeros((len(ids), width), "int32"),
         "padding_mask": np.array([[1] * len(i) + [0] * (width - len(i)) for i in ids], "int32")}
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    expected = np.mean(predicted == np.array(labels, int))
    assert _printed_scores(out)["accuracy"] == pytest.approx(expected, abs=1e-4)
    assert expected >= 0.9  # the task is learnable in 8 epochs
    # The export serves raw text with the numbered classes as names.
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"]
    answer = served(text=tf.constant(list(texts[:4])))
    assert [n.decode() for n in answer["label"].numpy()] == [str(p) for p in predicted[:4]]
    assert "the export answers:" in out and not os.path.exists(tmp_path / "out_backup")


@pytest.mark.slow
def test_tag_scores_entities_at_the_word_level(capsys, tmp_path):
    rng = np.random.default_rng(1)
    with open(tmp_path / "train.jsonl", "w") as f:
        for _ in range(64):
            name, place = rng.choice(["john", "paris"], 2)
            f.write(json.dumps({"tokens": ["the", name, "lives", "in", place],
                                "tags": ["O", "B-PER", "O", "O", "B-LOC"]}) + "\n")
    out = _run(capsys, tmp_path, "--task", "tag", "--train", str(tmp_path / "train.jsonl"),
               "--eval", str(tmp_path / "train.jsonl"), "--epochs", "8")
    assert "labels O, B-LOC, B-PER" in out  # names found in --train, O first
    # The printed F1 is seqeval-style entity F1 of the export's word-level tags.
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"]
    records = [json.loads(line) for line in open(tmp_path / "train.jsonl")]
    answer = served(text=tf.constant([" ".join(r["tokens"]) for r in records]))
    predicted = [[t.decode() for t in row[:5]] for row in answer["tags"].numpy()]
    want = evaluation.entity_f1([r["tags"] for r in records], predicted)
    assert _printed_scores(out)["f1"] == pytest.approx(want["f1"], abs=1e-4)
    # Training beats the untrained head, scored the same way on the same data.
    model, tokenizer = _untrained(tmp_path, "tag", label_names=["O", "B-LOC", "B-PER"])
    version = keras_llm.export(model, str(tmp_path / "untrained"), tokenizer,
                               label_names=["O", "B-LOC", "B-PER"])
    untrained = tf.saved_model.load(version).signatures["serving_default"]
    answer = untrained(text=tf.constant([" ".join(r["tokens"]) for r in records]))
    guessed = [[t.decode() for t in row[:5]] for row in answer["tags"].numpy()]
    before = evaluation.entity_f1([r["tags"] for r in records], guessed)
    assert want["f1"] > before["f1"] + 0.25, (want, before)


@pytest.mark.slow
def test_qa_reports_exact_match_and_f1(capsys, tmp_path):
    context = "john lives in paris , a city"
    records = [{"question": "where does john live ?", "context": context,
                "answers": {"text": ["paris"], "answer_start": [14]}},
               {"question": "who lives in paris ?", "context": context,
                "answers": {"text": ["john"], "answer_start": [0]}}] * 16
    with open(tmp_path / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    out = _run(capsys, tmp_path, "--task", "qa", "--train", str(tmp_path / "train.jsonl"),
               "--eval", str(tmp_path / "train.jsonl"), "--epochs", "16", "--sequence-length", "32",
               "--doc-stride", "4", "--max-question-length", "8")
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"]
    answer = served(question=tf.constant([r["question"] for r in records]),
                    context=tf.constant([r["context"] for r in records]))
    answers = [a.decode() for a in answer["answer"].numpy()]
    want = evaluation.squad_scores(answers, [r["answers"]["text"] for r in records])
    scores = _printed_scores(out)
    assert scores["exact_match"] == pytest.approx(want["exact_match"], abs=1e-3)
    assert scores["f1"] == pytest.approx(want["f1"], abs=1e-3)
    # Training beats the untrained head, answering with the export's windows.
    model, tokenizer = _untrained(tmp_path, "qa")
    out = evaluation.answer_questions(model, tokenizer, [r["question"] for r in records],
                                      [r["context"] for r in records], doc_stride=4,
                                      max_question_length=8)
    guessed = [a.decode() for a in out["answer"].numpy()]
    before = evaluation.squad_scores(guessed, [r["answers"]["text"] for r in records])
    # (The tiny model learns one of the two answers: exact match 50 against the untrained 0.)
    assert want["exact_match"] > before["exact_match"] and want["f1"] > before["f1"], (want, before)


def test_bad_checkpoint_is_a_one_line_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as raised:
        keras_llm_cli.main(["finetune", "--checkpoint", str(tmp_path / "nothing"), "--task",
                            "classify", "--train", "x.tsv"])
    assert raised.value.code == 2
    assert "--checkpoint: no such directory" in capsys.readouterr().err


def _one_line_error(capsys, *flags):
    with pytest.raises(SystemExit) as raised:
        keras_llm_cli.main(["finetune", *flags])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_a_label_missing_from_label_names_is_reported_whole(capsys, tmp_path):
    # The pipeline's check fails in a graph; its message came back cut at the
    # first of its pieces: "--train: classification_dataset: example".
    (tmp_path / "train.tsv").write_text("label\tsentence\npos\tgood film\nneg\tbad film\n"
                                        "meh\tdull plot\n")
    message = _one_line_error(
        capsys, "--checkpoint", _checkpoint(tmp_path), "--task", "classify", "--train",
        str(tmp_path / "train.tsv"), "--label-names", "neg,pos", "--output", str(tmp_path / "o.keras"),
    )
    assert message.startswith("keras-llm finetune: error: --train: classification_dataset: example")
    for part in ("example 2 ", "has label meh", "expected one of label_names=[neg, pos]"):
        assert part in message, message


def test_a_sequence_length_past_the_checkpoints_context_names_both(capsys, tmp_path):
    (tmp_path / "train.tsv").write_text("label\tsentence\n1\tgood film\n0\tbad film\n")
    message = _one_line_error(
        capsys, "--checkpoint", _checkpoint(tmp_path), "--task", "classify", "--train",
        str(tmp_path / "train.tsv"), "--sequence-length", "65", "--output", str(tmp_path / "o.keras"),
    )
    assert "--sequence-length 65" in message and "64 positions" in message, message
    assert not (tmp_path / "o.keras").exists()
