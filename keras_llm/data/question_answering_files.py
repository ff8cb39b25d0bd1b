"""Question-answering examples read from SQuAD-style files (`.jsonl`, `.tsv`, `.csv`) or TFDS."""

import csv
import glob
import io
import json
import os

from keras_llm.data import sources


def read_qa_examples(source, split="train", *, data_dir=None, download=True):
    r"""SQuAD-style examples for `question_answering_dataset`, read from files or TFDS.

    A `.jsonl` file holds one record per line: `question`, `context` and
    `answers` (`{"text": [...], "answer_start": [...]}`, SQuAD's format) or
    `answer_text` and `answer_start`. A `.tsv` or `.csv` file has those
    fields as columns, `answer_start` an int (characters into the context,
    -1 for no answer). `source` may be a glob of such files, or `tfds:NAME`
    (`tfds:squad`). The records are checked by `question_answering_dataset`.

    Args:
        source: A file, a glob of files, or `tfds:NAME`.
        split: The TFDS split of `tfds:NAME`.
        data_dir: The TFDS data directory.
        download: Whether `tfds:NAME` may be downloaded and prepared.

    Returns:
        A list of dicts, in file and line order; for `tfds:NAME`, the split as
        a `tf.data.Dataset` of dicts.

    Raises:
        FileNotFoundError: a file is missing (or the TFDS set is not prepared).
        ValueError: naming the file and line of a malformed record, an
            unsupported file type, or a source without examples.

    Example:

    ```python
    import tempfile
    from keras_llm.data import read_qa_examples

    path = tempfile.mkdtemp() + "/dev.tsv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("question\tcontext\tanswer_text\tanswer_start\n")
        f.write("who lives in paris?\tjohn lives in paris\tjohn\t0\n")
    assert read_qa_examples(path) == [{
        "question": "who lives in paris?", "context": "john lives in paris",
        "answer_text": "john", "answer_start": 0,
    }]
    ```
    """
    if source.startswith("tfds:"):
        import tensorflow_datasets as tfds

        # load_texts's checks first: an unknown name, offline, not prepared.
        sources.load_texts(source, text_field="context", split=split, data_dir=data_dir,
                           download=download)
        return tfds.load(source[len("tfds:"):], split=split, data_dir=data_dir, download=False)
    paths = sorted(glob.glob(source)) if glob.has_magic(source) else [source]
    if not paths:
        raise FileNotFoundError(f"No file matches the pattern {source!r}.")
    records = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such file: {path!r}.")
        if not path.endswith((".jsonl", ".tsv", ".csv")):
            raise ValueError(f"{path}: unsupported file type; expected .jsonl, .tsv or .csv.")
        text = sources._read_text(path)  # names a line of invalid UTF-8, rejects empty files
        if path.endswith(".jsonl"):
            for line, row in enumerate(text.split("\n"), start=1):
                if row.strip():
                    try:
                        records.append(json.loads(row))
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{path}:{line}: not a JSON object ({error.msg})") from None
            continue
        tsv = path.endswith(".tsv")
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if tsv else ",",
                                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        for row in reader:
            if "answer_start" in row:
                try:
                    row["answer_start"] = int(row["answer_start"])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{path}:{reader.line_num}: answer_start must be an int (characters into "
                        f"the context, -1 for none); received {row['answer_start']!r}"
                    ) from None
            records.append(row)
    if not records:
        raise ValueError(f"{source!r}: no examples")
    return records
