"""keras_llm.data.load_texts: every kind of source, and bad input named precisely."""

import json

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_llm
from keras_llm.data import load_texts


def rows(dataset):
    def py(value):
        value = value.numpy()
        value = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(value, list):
            return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
        return value.decode("utf-8") if isinstance(value, bytes) else value

    return [tuple(py(v) for v in e) if isinstance(e, tuple) else py(e) for e in dataset]


def test_python_lists_of_strings_and_records():
    assert rows(load_texts(["a", "b"])) == ["a", "b"]
    records = [{"body": "x", "y": "pos"}, {"body": "z", "y": "neg"}]
    assert rows(load_texts(records, text_field="body", label_field="y")) == [
        ("x", "pos"), ("z", "neg")
    ]
    with pytest.raises(ValueError, match=r"source\[1\]: no field label_field='y'"):
        load_texts([{"text": "a", "y": 1}, {"text": "b"}], label_field="y")
    with pytest.raises(ValueError, match="source: no texts"):
        load_texts([])


@pytest.mark.slow
def test_default_corpus_is_the_stdlib_docstrings():
    first = rows(load_texts(None).take(3))
    assert first == keras_llm.data.stdlib_docstrings()[:3]


def test_text_files_by_line_paragraph_document_and_glob(tmp_path):
    (tmp_path / "b.txt").write_text("one\ntwo\n\nthree\r\nfour\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first\n", encoding="utf-8")
    assert rows(load_texts(str(tmp_path / "b.txt"))) == ["one", "two", "three", "four"]
    assert rows(load_texts(str(tmp_path / "b.txt"), sample_by="paragraph")) == ["one\ntwo", "three\nfour"]
    assert rows(load_texts(str(tmp_path / "b.txt"), sample_by="document")) == [
        "one\ntwo\n\nthree\r\nfour\n"
    ]
    assert rows(load_texts(str(tmp_path / "*.txt"))) == ["first", "one", "two", "three", "four"]


def test_csv_tsv_and_jsonl_fields(tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('label,text\n1,"a, quoted ""text"""\n0,plain\n', encoding="utf-8")
    assert rows(load_texts(str(csv_file), label_field="label")) == [
        ("a, quoted \"text\"", 1), ("plain", 0)
    ]
    tsv_file = tmp_path / "d.tsv"  # GLUE style: quotes are text, not quoting
    tsv_file.write_text('label\tsentence\npos\t" quoted\nneg\tit \'s\n', encoding="utf-8")
    assert rows(load_texts(str(tsv_file), label_field="label")) == [
        ('" quoted', "pos"), ("it 's", "neg")
    ]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps(r) for r in [
            {"tokens": ["New", "York"], "tags": [1, 2]}, {"tokens": ["hi"], "tags": [0]}
        ]) + "\n",
        encoding="utf-8",
    )
    assert rows(load_texts(str(jsonl), text_field="tokens", label_field="tags")) == [
        (["New", "York"], [1, 2]), (["hi"], [0])
    ]


@pytest.mark.parametrize(
    "name, content, kwargs, error, message",
    [
        ("missing.txt", None, {}, FileNotFoundError, r"No such file: '.*missing.txt'"),
        ("empty.txt", "\n  \n", {}, ValueError, r"empty.txt: the file is empty"),
        ("bad.txt", b"ok\nfine\nbad \xff byte\n", {}, ValueError,
         r"bad.txt:3: invalid UTF-8 \(byte 0xff at column 5\)"),
        ("d.csv", "label,text\n1,a\n", {"label_field": "stars"}, ValueError,
         r"d.csv:1 \(header\): no column label_field='stars'; it has \['label', 'text'\]"),
        ("d.csv", "label,body\n1,a\n", {}, ValueError,
         r"d.csv:1 \(header\): none of the default text fields"),
        ("d.csv", "label,text\n1,a\n2,b,c\n", {"label_field": "label"}, ValueError,
         r"d.csv:3: expected 2 fields as in the header, found 3"),
        ("d.csv", "label,text\n", {}, ValueError, r"d.csv: the file has a header but no rows"),
        ("d.jsonl", '{"text": "a"}\n{oops\n', {}, ValueError, r"d.jsonl:2: not a JSON object"),
        ("d.jsonl", '{"text": "a"}\n\n{"txt": "b"}\n', {}, ValueError,
         r"d.jsonl:3: no field text_field='text'"),
        ("d.parquet", "x", {}, ValueError, r"d.parquet: unsupported file type"),
    ],
)
def test_bad_files_name_file_line_and_expectation(tmp_path, name, content, kwargs, error, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(error, match=message):
        load_texts(str(path), **kwargs)


def test_glob_without_matches_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No file matches the pattern '.*\*.jsonl'"):
        load_texts(str(tmp_path / "*.jsonl"))


class TinyReviews(tfds.core.GeneratorBasedBuilder):
    """A small TFDS data set the test prepares offline."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(10):
            yield i, {"text": f"review number {i}", "label": i % 2}


def test_tfds_offline_from_a_prepared_data_dir_with_split_slicing(tmp_path):
    TinyReviews(data_dir=str(tmp_path)).download_and_prepare()
    name = "tfds:tiny_reviews"
    everything = rows(load_texts(name, label_field="label", data_dir=str(tmp_path), download=False))
    assert sorted(everything) == sorted((f"review number {i}", i % 2) for i in range(10))
    head = rows(load_texts(name, split="train[:30%]", data_dir=str(tmp_path), download=False))
    tail = rows(load_texts(name, split="train[30%:]", data_dir=str(tmp_path), download=False))
    assert len(head) == 3 and sorted(head + tail) == sorted(t for t, _ in everything)
    with pytest.raises(FileNotFoundError, match=r"tfds:tiny_reviews: not prepared in data_dir="):
        load_texts(name, data_dir=str(tmp_path / "elsewhere"), download=False)
    with pytest.raises(ValueError, match=r"tfds:tiny_reviews: no feature label_field='stars'"):
        load_texts(name, label_field="stars", data_dir=str(tmp_path), download=False)


def test_tfds_public_name_with_mock_data_and_unknown_name():
    with tfds.testing.mock_data(num_examples=4):
        pairs = rows(load_texts("tfds:imdb_reviews", split="test", label_field="label"))
    assert len(pairs) == 4 and all(isinstance(t, str) and y in (0, 1) for t, y in pairs)
    with pytest.raises(ValueError, match=r"tfds:no_such_dataset: TensorFlow Datasets has no data set"):
        load_texts("tfds:no_such_dataset")


def test_sources_feed_tf_data():
    ds = load_texts(["a", "bb", "ccc"]).map(tf.strings.length)
    assert [int(n) for n in ds] == [1, 2, 3]


class _StillRetrying(RuntimeError):
    """Raised from the network once a test has waited too long (not an OSError: not retried)."""


def _offline(monkeypatch, deadline_s=20):
    """No name resolves, as on a machine without network; past `deadline_s`, the test fails."""
    import socket
    import time

    start = time.monotonic()

    def getaddrinfo(host, *args, **kwargs):
        if time.monotonic() - start > deadline_s:
            raise _StillRetrying(f"still trying to reach {host} after {deadline_s} s")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _files(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) if directory.exists() else []


def test_tfds_download_offline_fails_fast_and_leaves_nothing(tmp_path, monkeypatch):
    """A real data set that is not prepared, with no network: a clear error within seconds.

    TFDS alone retries the download for about 3.5 minutes and leaves
    `downloads/**/*.tmp.*` behind.
    """
    _offline(monkeypatch)
    data_dir = tmp_path / "tfds"
    with pytest.raises(ConnectionError) as error:
        load_texts("tfds:tiny_shakespeare", data_dir=str(data_dir))  # download=True by default
    message = str(error.value)
    assert "tfds:tiny_shakespeare: not prepared in data_dir=" in message
    assert str(data_dir) in message and "network is unreachable" in message
    assert "raw.githubusercontent.com" in message  # where TFDS would download it from
    assert "tfds build tiny_shakespeare --data_dir=DIR" in message and "download=False" in message
    assert _files(data_dir) == []
    with pytest.raises(FileNotFoundError) as error:
        load_texts("tfds:tiny_shakespeare", data_dir=str(data_dir), download=False)
    assert f"{data_dir / 'tiny_shakespeare' / '1.0.0'} has no dataset_info.json" in str(error.value)
    assert _files(data_dir) == []
    with pytest.raises(TypeError, match=r"`download` must be True or False. Received: download='no'"):
        load_texts("tfds:tiny_shakespeare", data_dir=str(data_dir), download="no")


class NotFoundDownload(tfds.core.GeneratorBasedBuilder):
    """A data set whose download the server answers with 404 (no checksums: no network check)."""

    VERSION = tfds.core.Version("1.0.0")
    URL = None  # set by the test

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()})
        )

    def _split_generators(self, dl_manager):
        dl_manager.download(self.URL)
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {"text": "never"}


@pytest.fixture
def not_found_url():
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/corpus.txt"
    server.shutdown()
    server.server_close()


def test_tfds_failed_download_leaves_the_data_dir_as_it_was(tmp_path, not_found_url, monkeypatch):
    TinyReviews(data_dir=str(tmp_path)).download_and_prepare()  # another data set, kept
    before = _files(tmp_path)
    monkeypatch.setattr(NotFoundDownload, "URL", not_found_url)
    with pytest.raises(Exception, match="404"):
        load_texts("tfds:not_found_download", data_dir=str(tmp_path))
    assert _files(tmp_path) == before
    with pytest.raises(Exception, match="404"):  # into a data_dir that did not exist
        load_texts("tfds:not_found_download", data_dir=str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
