"""`read_qa_examples`: SQuAD-style examples from .jsonl/.tsv/.csv files (what `keras-llm finetune --task qa` reads)."""

import json

import pytest
import tensorflow_datasets as tfds

from keras_llm.data import question_answering_dataset
from keras_llm.data import read_qa_examples
from keras_llm.tokenizers import WordPieceTokenizer

SQUAD = {"question": "where does john live?", "context": "john lives in paris",
         "answers": {"text": ["paris"], "answer_start": [14]}}
FLAT = {"question": "who lives in paris?", "context": "john lives in paris",
        "answer_text": "john", "answer_start": 0}


def test_jsonl_tsv_and_csv_files_in_glob_order(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(SQUAD) + "\n\n" + json.dumps(FLAT) + "\n",
                                      encoding="utf-8")
    header = "question{0}context{0}answer_text{0}answer_start\n"
    (tmp_path / "b.tsv").write_text(
        header.format("\t") + 'who said "hi"?\tjohn said "hi"\tjohn\t0\n', encoding="utf-8"
    )
    (tmp_path / "c.csv").write_text(  # a quoted field holding the separator; no answer (-1)
        "\ufeff" + header.format(",") + 'why?,"john, who lives in paris",,-1\n', encoding="utf-8"
    )
    examples = read_qa_examples(str(tmp_path / "*"))
    assert examples == [
        SQUAD, FLAT,
        {"question": 'who said "hi"?', "context": 'john said "hi"', "answer_text": "john",
         "answer_start": 0},
        {"question": "why?", "context": "john, who lives in paris", "answer_text": "",
         "answer_start": -1},
    ]
    # What it returns is what question_answering_dataset reads.
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "john", "lives", "in",
                                    "paris", "where", "does", "live", "?"])
    batches = question_answering_dataset(examples[:2], tokenizer, 2, sequence_length=16,
                                         doc_stride=2, max_question_length=6, shuffle=False)
    x, labels = next(iter(batches))
    ids = x["token_ids"].numpy()
    starts = labels["start_logits"].numpy()
    assert [tokenizer.vocabulary[ids[row, starts[row]]] for row in range(2)] == ["paris", "john"]


@pytest.mark.parametrize("name, text, error, message", [
    ("bad.jsonl", json.dumps(SQUAD) + "\n{oops\n", ValueError, r"bad.jsonl:2: not a JSON object"),
    ("bad.tsv", "question\tcontext\tanswer_text\tanswer_start\nq\tc\ta\tfirst\n", ValueError,
     r"bad.tsv:2: answer_start must be an int .* received 'first'"),
    ("header.csv", "question,context,answer_text,answer_start\n", ValueError, r"no examples"),
    ("empty.jsonl", "\n", ValueError, r"empty.jsonl: the file is empty"),
    ("data.parquet", "x", ValueError, r"data.parquet: unsupported file type; expected .jsonl"),
])
def test_malformed_files_are_named_with_their_line(tmp_path, name, text, error, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(error, match=message):
        read_qa_examples(str(tmp_path / name))


def test_missing_files_and_tfds_sets(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file: .*nope.jsonl"):
        read_qa_examples(str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match="No file matches"):
        read_qa_examples(str(tmp_path / "*.jsonl"))
    with tfds.testing.mock_data(num_examples=3):
        examples = read_qa_examples("tfds:squad", "train")
        assert {"question", "context", "answers"} <= set(next(iter(examples)))
