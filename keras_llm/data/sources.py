"""Where text comes from: TFDS, local files, Python lists, the default corpus."""

import contextlib
import csv
import glob
import io
import json
import os
import shutil

import tensorflow as tf

from keras_llm.data.default_corpus import stdlib_docstrings

_FILE_TYPES = (".txt", ".csv", ".tsv", ".jsonl")
_DEFAULT_TEXT_FIELDS = ("text", "sentence", "content")


def load_texts(
    source=None,
    *,
    text_field=None,
    label_field=None,
    split="train",
    data_dir=None,
    download=True,
    sample_by="line",
):
    """A `tf.data.Dataset` of texts, or of `(text, label)` pairs, from a source.

    Sources:

    - `None`: the embedded default corpus (`stdlib_docstrings()`), one
      docstring per element.
    - `"tfds:NAME"` (`NAME` may carry a config and version,
      `"glue/sst2:2.0.0"`): `tfds.load(NAME, split=split, data_dir=data_dir,
      download=download)`. `split` takes TFDS slicing (`"train[:10%]"`,
      `"train[:1000]+test"`). A data set already prepared in `data_dir` is
      read without the network, whatever `download` says. One that is not
      is downloaded and prepared there when `download=True` (the default,
      as in `tfds.load`), after a quick check that the network reaches its
      download hosts: offline, a `ConnectionError` says so within seconds
      (TFDS itself would retry each download for minutes). With
      `download=False`, a `FileNotFoundError` names the directory that is
      missing. A download or preparation that fails leaves nothing in
      `data_dir`. To work offline, prepare the data set on a machine with
      network (`tfds build NAME --data_dir=DIR`, or this function), copy
      `DIR` over and pass `data_dir=DIR`.
    - A path or glob of `.txt`, `.csv`, `.tsv` or `.jsonl` files, read in
      sorted order. `.txt`: one element per line (`sample_by="line"`, empty
      lines skipped, as Hugging Face `datasets`' text loader does), per
      blank-line-separated paragraph (`"paragraph"`) or per file
      (`"document"`). `.csv`/`.tsv`: a header row names the columns (`.tsv`
      is read without quoting, as GLUE ships it). `.jsonl`: one JSON object
      per line.
    - A Python list of strings, or of dicts (records, as in `.jsonl`).

    Files are read into memory and checked line by line (UTF-8, columns,
    JSON), so errors name the file and line; for corpora larger than memory,
    prepare a TFDS data set.

    Args:
        source: One of the above.
        text_field: The field (column, JSON key, TFDS feature) holding the
            text; defaults to the first of "text", "sentence", "content" that
            exists. Ignored for `.txt` files and lists of strings.
        label_field: The field holding the label; None for texts only. A
            column whose values are all integers gives int64 labels, any other
            gives strings; a JSON list gives a 1-D tensor (token tags).
        split: The TFDS split (with slicing); ignored for other sources.
        data_dir: The TFDS data directory (default: TFDS's, `$TFDS_DATA_DIR`
            or `~/tensorflow_datasets`).
        download: For TFDS: True (default) downloads and prepares the data set
            if `data_dir` does not hold it yet; False only reads a prepared
            one.
        sample_by: For `.txt` files: `"line"`, `"paragraph"` or `"document"`.

    Returns:
        A dataset of scalar strings, or of `(text, label)` when `label_field`
        is given.

    Example:

    ```python
    import keras_llm

    ds = keras_llm.data.load_texts(
        [{"review": "great fun", "stars": 5}, {"review": "dull", "stars": 1}],
        text_field="review", label_field="stars",
    )
    assert [(t.numpy(), int(y)) for t, y in ds] == [(b"great fun", 5), (b"dull", 1)]
    ```
    """
    if source is None:
        return tf.data.Dataset.from_tensor_slices(stdlib_docstrings())
    if isinstance(source, (list, tuple)):
        return _from_records(list(source), "source", text_field, label_field)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "`source` must be None, 'tfds:NAME', a file path or glob, or a list. "
            f"Received: source={source!r}"
        )
    source = os.fspath(source)
    if source.startswith("tfds:"):
        return _from_tfds(source[len("tfds:"):], text_field, label_field, split, data_dir, download)
    return _from_files(source, text_field, label_field, sample_by)


def _from_records(records, where, text_field, label_field, lines=None):
    """Records (strings or dicts) -> a dataset. `lines[i]` is record i's line."""
    if not records:
        raise ValueError(f"{where}: no texts; expected at least one.")
    if all(isinstance(r, str) for r in records):
        if label_field is not None:
            raise ValueError(
                f"{where}: holds plain strings, which have no field "
                f"label_field={label_field!r}; use records (dicts) for labelled data."
            )
        return tf.data.Dataset.from_tensor_slices(records)
    texts, labels = [], []
    fields = None
    for i, record in enumerate(records):
        at = f"{where}:{lines[i]}" if lines else f"{where}[{i}]"
        if not isinstance(record, dict):
            raise ValueError(f"{at}: expected a string or a dict. Received: {record!r:.80}")
        if fields is None:
            text_field = _pick_text_field(text_field, list(record), at)
            fields = [text_field] + ([label_field] if label_field is not None else [])
        for field in fields:
            if field not in record:
                name = "text_field" if field == text_field else "label_field"
                raise ValueError(
                    f"{at}: no field {name}={field!r}; the record has {sorted(record)}."
                )
        if not isinstance(record[text_field], (str, list)):
            raise ValueError(
                f"{at}: field {text_field!r} must hold text. Received: {record[text_field]!r:.80}"
            )
        texts.append(record[text_field])
        if label_field is not None:
            labels.append(record[label_field])
    texts = _to_tensor(texts)
    if label_field is None:
        return tf.data.Dataset.from_tensor_slices(texts)
    return tf.data.Dataset.from_tensor_slices((texts, _to_tensor(_maybe_ints(labels))))


def _pick_text_field(text_field, fields, where):
    if text_field is not None:
        if text_field not in fields:
            raise ValueError(f"{where}: no field text_field={text_field!r}; it has {fields}.")
        return text_field
    for name in _DEFAULT_TEXT_FIELDS:
        if name in fields:
            return name
    raise ValueError(
        f"{where}: none of the default text fields {list(_DEFAULT_TEXT_FIELDS)} exists; "
        f"name one with text_field=. It has {fields}."
    )


def _maybe_ints(values):
    """Strings that all spell integers become ints (CSV labels)."""
    if values and all(isinstance(v, str) for v in values):
        try:
            return [int(v) for v in values]
        except ValueError:
            return values
    return values


def _to_tensor(values):
    if values and isinstance(values[0], list):
        return tf.ragged.constant(values)
    return tf.constant(values)


def _read_text(path):
    """The file's text; names the line of invalid UTF-8 and rejects empty files."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ValueError(
            f"{path}:{line}: invalid UTF-8 (byte {data[error.start]:#04x} at column "
            f"{column}); expected a UTF-8 text file."
        ) from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty; expected text.")
    return text.removeprefix("\ufeff")


def _from_files(pattern, text_field, label_field, sample_by):
    if sample_by not in ("line", "paragraph", "document"):
        raise ValueError(
            "`sample_by` must be 'line', 'paragraph' or 'document'. "
            f"Received: sample_by={sample_by!r}"
        )
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths:
        raise FileNotFoundError(f"No file matches the pattern {pattern!r}.")
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such file: {path!r}.")
        if not path.endswith(_FILE_TYPES):
            raise ValueError(
                f"{path}: unsupported file type; expected one of {', '.join(_FILE_TYPES)}."
            )
    datasets = [_read_file(p, text_field, label_field, sample_by) for p in paths]
    dataset = datasets[0]
    for other in datasets[1:]:
        dataset = dataset.concatenate(other)
    return dataset


def _read_file(path, text_field, label_field, sample_by):
    text = _read_text(path)
    if path.endswith(".txt"):
        if label_field is not None:
            raise ValueError(f"{path}: a .txt file has no fields; label_field={label_field!r}.")
        if sample_by == "document":
            return tf.data.Dataset.from_tensor_slices([text])
        separator = "\n\n" if sample_by == "paragraph" else "\n"
        parts = [p.strip("\n") for p in text.replace("\r\n", "\n").split(separator)]
        return tf.data.Dataset.from_tensor_slices([p for p in parts if p.strip()])
    if path.endswith(".jsonl"):
        records, lines = [], []
        for line, row in enumerate(text.splitlines(), start=1):
            if not row.strip():
                continue
            try:
                records.append(json.loads(row))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}:{line}: not a JSON object ({error.msg}); expected one per line."
                ) from None
            lines.append(line)
        return _from_records(records, path, text_field, label_field, lines)
    # .csv / .tsv
    if path.endswith(".tsv"):
        reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text))
    header = next(reader)
    text_field = _pick_text_field(text_field, header, f"{path}:1 (header)")
    columns = [header.index(text_field)]
    if label_field is not None:
        if label_field not in header:
            raise ValueError(
                f"{path}:1 (header): no column label_field={label_field!r}; it has {header}."
            )
        columns.append(header.index(label_field))
    values = [[] for _ in columns]
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path}:{reader.line_num}: expected {len(header)} fields as in the header, "
                f"found {len(row)}."
            )
        for column, kept in zip(columns, values):
            kept.append(row[column])
    if not values[0]:
        raise ValueError(f"{path}: the file has a header but no rows; expected data.")
    if label_field is None:
        return tf.data.Dataset.from_tensor_slices(values[0])
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant(values[0]), tf.constant(_maybe_ints(values[1])))
    )


def _from_tfds(name, text_field, label_field, split, data_dir, download):
    import tensorflow_datasets as tfds

    if not isinstance(download, bool):
        raise TypeError(f"`download` must be True or False. Received: download={download!r}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"tfds:{name}: TensorFlow Datasets has no data set of that name; expected "
            "one of `tfds.list_builders()`, optionally with '/config' and ':version'."
        ) from None
    root = os.fspath(builder.data_dir_root)
    if not download and not builder.is_prepared():
        raise FileNotFoundError(
            f"tfds:{name}: not prepared in data_dir={root!r}: "
            f"{_missing_version(builder)} download=False only reads prepared data sets; "
            f"prepare it with `tfds build {name} --data_dir={root}` (offline: on a machine "
            "with network, then copy the directory here), or pass download=True."
        )
    features = list(builder.info.features.keys())
    text_field = _pick_text_field(text_field, features, f"tfds:{name} features")
    if label_field is not None and label_field not in features:
        raise ValueError(f"tfds:{name}: no feature label_field={label_field!r}; it has {features}.")
    if download and not builder.is_prepared():
        _prepare(builder, name, root)
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    if label_field is None:
        return dataset.map(lambda x: x[text_field])
    return dataset.map(lambda x: (x[text_field], x[label_field]))


def _missing_version(builder):
    """What is missing of a data set that is not prepared, and which versions are there."""
    version_dir = os.fspath(builder.data_dir)
    parent = os.path.dirname(version_dir)
    there = sorted(
        v for v in (os.listdir(parent) if os.path.isdir(parent) else [])
        if os.path.isfile(os.path.join(parent, v, "dataset_info.json"))
    )
    found = f" (prepared there: version {', '.join(there)})" if there else ""
    return f"{version_dir} has no dataset_info.json{found}."


# Seconds to wait for a TCP connection to a download host before calling the
# network unreachable. TFDS's own downloader retries 10 times with a backoff
# that adds up to about 3.5 minutes, with no message, before it gives up.
_PROBE_TIMEOUT = 5
_PROBE_HOSTS = 3


def _unreachable(builder):
    """Why the data set's download hosts cannot be reached, or None if one can be.

    The hosts are those of the builder's registered download URLs plus TFDS's
    own mirror on Cloud Storage (tried first when it holds the data set). A
    proxy from the environment (`https_proxy`, ...), which TFDS's `requests`
    uses too, is probed instead of the host it serves. Nothing is checked
    (None) when the URLs are unknown (a builder without registered checksums)
    or not HTTP(S)/FTP, or under `tfds.testing.mock_data`, which replaces the
    download by a no-op.
    """
    import socket
    import urllib.parse
    import urllib.request

    import tensorflow_datasets as tfds

    method = type(builder).download_and_prepare
    if getattr(method, "__module__", None) != tfds.core.DatasetBuilder.__module__:
        return None  # mock_data's no-op, or a builder's own: nothing to predict
    urls = list(builder.url_infos or ())
    schemes = {urllib.parse.urlsplit(u).scheme for u in urls}
    if not urls or not schemes <= {"http", "https", "ftp"}:
        return None
    proxies = urllib.request.getproxies()
    addresses = []
    for url in ["https://storage.googleapis.com/"] + urls:
        parts = urllib.parse.urlsplit(url)
        proxy = proxies.get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname):
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        default_port = {"https": 443, "ftp": 21}.get(parts.scheme, 80)
        address = (parts.hostname, parts.port or default_port)
        if address not in addresses:
            addresses.append(address)
    errors = []
    for host, port in addresses[:_PROBE_HOSTS]:
        try:
            socket.create_connection((host, port), timeout=_PROBE_TIMEOUT).close()
            return None
        except OSError as error:
            errors.append(f"{host}:{port} ({error})")
    return "; ".join(errors)


def _prepare(builder, name, root):
    """`builder.download_and_prepare()`, failing fast offline and leaving nothing on failure."""
    why = _unreachable(builder)
    if why is not None:
        raise ConnectionError(
            f"tfds:{name}: not prepared in data_dir={root!r}, and the network is unreachable: "
            f"could not connect to {why}. To prepare it offline, run `tfds build {name} "
            "--data_dir=DIR` on a machine with network, copy DIR here and pass "
            "data_dir=DIR (with download=False, nothing is downloaded)."
        )
    top = os.fspath(builder.data_dir).removeprefix(root).strip(os.sep).split(os.sep)[0]
    before = _tfds_entries(root, top)
    try:
        builder.download_and_prepare()
    except BaseException:
        # TFDS leaves `downloads/**/*.tmp.*` (and `incomplete.*` directories
        # when killed): remove what this call added, deepest first.
        for path in sorted(_tfds_entries(root, top) - before, key=len, reverse=True):
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
        if root not in before:
            with contextlib.suppress(OSError):
                os.rmdir(root)  # only if empty
        raise


def _tfds_entries(root, top, depth=4):
    """Paths (to `depth` levels) under `root/downloads` and `root/top`, and `root` if it exists.

    Where TFDS writes while preparing a data set whose directory is under
    `root/top`; bounded in depth so that a large shared data directory is
    listed quickly.
    """
    if not os.path.isdir(root):
        return set()
    found = {root}
    stack = [(os.path.join(root, t), 1) for t in ("downloads", top)]
    while stack:
        path, level = stack.pop()
        if not os.path.lexists(path):
            continue
        found.add(path)
        if level < depth and os.path.isdir(path) and not os.path.islink(path):
            stack.extend((os.path.join(path, n), level + 1) for n in os.listdir(path))
    return found
