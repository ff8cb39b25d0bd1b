"""Tokenizers in and out of Hugging Face model directories: `from_pretrained`, `save_pretrained`.

A Hugging Face directory says which tokenizer it holds in `tokenizer_config.json`
(`tokenizer_class`), in `config.json` (`model_type`), or only by its files. The
BERT family's WordPiece comes from `vocab.txt` or `tokenizer.json`, GPT-2's
byte-level BPE from `vocab.json` and `merges.txt` or `tokenizer.json`; each
loads into the core-ops tokenizer of keras_llm that gives transformers' ids.
"""

import json
import os

from keras_llm._atomic import write_text
from keras_llm._json import read_json_object
from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import CoreOpsBytePairTokenizer
from keras_llm.tokenizers.core_ops_word_piece_tokenizer import (
    CoreOpsWordPieceTokenizer,
    _read_vocabulary,
)

# transformers' tokenizer classes (without "Fast") and config.json model types
# whose AutoTokenizer is BERT's WordPiece or GPT-2's byte-level BPE.
_WORD_PIECE_CLASSES = (
    "BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "MobileBertTokenizer",
    "SqueezeBertTokenizer",
)
_BYTE_PAIR_CLASSES = ("GPT2Tokenizer",)
_WORD_PIECE_MODELS = ("bert", "distilbert", "electra", "mobilebert", "squeezebert")
_BYTE_PAIR_MODELS = ("gpt2",)
_EXPECTED = (
    "vocab.txt (or tokenizer.json with a WordPiece model) for the BERT family, or vocab.json "
    "and merges.txt (or tokenizer.json with a BPE model) for GPT-2"
)
# Files transformers reads before, or on top of, the ones save_pretrained writes.
_SHADOWING = ("tokenizer.json", "added_tokens.json")
_GPT2_END = "<|endoftext|>"


class _Directory:
    """A model directory's file names and its JSON files, each read once."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(
                "`path` must be a Hugging Face model directory (the tokenizer files: "
                f"{_EXPECTED}). Received: path={self.path!r}"
                + (" (a file; pass its directory)" if os.path.exists(self.path) else " (does not exist)")
            )
        self.files = sorted(os.listdir(self.path))
        self._json = {}

    def file(self, name):
        return os.path.join(self.path, name)

    def has(self, name):
        return os.path.isfile(self.file(name))

    def json(self, name):
        """The JSON object in `name`, or {} when the directory has no such file."""
        if name not in self._json:
            self._json[name] = read_json_object(self.file(name)) if self.has(name) else {}
        return self._json[name]


def _setting(directory, name, key, value, kind):
    """`value` checked to be of `kind` (bool, str, int), named by file and key when it is not."""
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ValueError(
            f"{directory.file(name)}: `{key}` must be a {kind.__name__}. Received: {key}={value!r}"
        )
    return value


def _token_name(directory, name, key, value):
    """A special token as transformers writes it: a string, or an AddedToken's dict."""
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return _setting(directory, name, key, value, str)


def _kind(directory):
    """"word_piece" or "byte_pair": from tokenizer_class, else model_type, else the files."""
    named = directory.json("tokenizer_config.json").get("tokenizer_class")
    if named is not None:
        name = str(named).removesuffix("Fast")
        if name in _WORD_PIECE_CLASSES:
            return "word_piece"
        if name in _BYTE_PAIR_CLASSES:
            return "byte_pair"
        raise ValueError(
            f"{directory.file('tokenizer_config.json')}: keras_llm reads the tokenizers of the "
            f"BERT family ({', '.join(_WORD_PIECE_CLASSES)}) and GPT-2 "
            f"({', '.join(_BYTE_PAIR_CLASSES)}). Received: tokenizer_class={named!r}"
        )
    model_type = directory.json("config.json").get("model_type")
    if model_type is not None:
        if model_type in _WORD_PIECE_MODELS:
            return "word_piece"
        if model_type in _BYTE_PAIR_MODELS:
            return "byte_pair"
        raise ValueError(
            f"{directory.file('config.json')}: keras_llm reads the tokenizers of model types "
            f"{', '.join(_WORD_PIECE_MODELS + _BYTE_PAIR_MODELS)}. Received: model_type={model_type!r}"
        )
    if directory.has("vocab.txt"):
        return "word_piece"
    if directory.has("vocab.json") and directory.has("merges.txt"):
        return "byte_pair"
    if directory.has("tokenizer.json"):
        model = directory.json("tokenizer.json").get("model")
        kind = {"WordPiece": "word_piece", "BPE": "byte_pair"}.get(
            model.get("type") if isinstance(model, dict) else None
        )
        if kind:
            return kind
    raise FileNotFoundError(
        f"{directory.path} holds no tokenizer keras_llm reads. Found: "
        f"{', '.join(directory.files) or 'nothing'}. Expected: {_EXPECTED}."
    )


def _tokenizer_json_model(directory, model_type):
    """tokenizer.json's `model` object, checked to be a `model_type` model with a vocabulary."""
    name = "tokenizer.json"
    model = directory.json(name).get("model")
    if not isinstance(model, dict) or model.get("type", model_type) != model_type:
        found = model.get("type") if isinstance(model, dict) else model
        raise ValueError(
            f"{directory.file(name)}: expected a {model_type} model. Received: model.type={found!r}"
        )
    vocabulary = model.get("vocab")
    if not isinstance(vocabulary, dict) or not all(
        isinstance(t, str) and isinstance(i, int) and not isinstance(i, bool)
        for t, i in vocabulary.items()
    ):
        raise ValueError(
            f"{directory.file(name)}: `model.vocab` must map token strings to int ids."
        )
    return model


def _vocabulary_list(directory, name, vocabulary):
    """A {token: id} vocabulary as a list in id order, checked to hold ids 0 to N - 1 once each."""
    tokens = [None] * len(vocabulary)
    for token, token_id in vocabulary.items():
        if not 0 <= token_id < len(tokens) or tokens[token_id] is not None:
            raise ValueError(
                f"{directory.file(name)}: token {token!r} has the id {token_id}; the ids of its "
                f"{len(tokens)} tokens must be 0 to {len(tokens) - 1}, each used once."
            )
        tokens[token_id] = token
    return tokens


def _check_added_tokens(directory, vocabulary):
    """Tokens the directory adds must already be in `vocabulary` ({token: id}) with the same id.

    transformers gives added tokens new ids and matches them in text before
    splitting it; keras_llm's tokenizers hold one vocabulary, so a token
    outside it would give different ids.
    """
    found = []
    for item in directory.json("tokenizer.json").get("added_tokens") or []:
        if isinstance(item, dict):
            found.append(("tokenizer.json", item.get("content"), item.get("id")))
    decoder = directory.json("tokenizer_config.json").get("added_tokens_decoder") or {}
    for token_id, item in decoder.items() if isinstance(decoder, dict) else []:
        content = item.get("content") if isinstance(item, dict) else None
        token_id = int(token_id) if str(token_id).isdigit() else token_id  # JSON keys are strings
        found.append(("tokenizer_config.json", content, token_id))
    for content, token_id in directory.json("added_tokens.json").items():
        found.append(("added_tokens.json", content, token_id))
    for name, content, token_id in found:
        if vocabulary.get(content) != token_id:
            raise ValueError(
                f"{directory.file(name)}: adds the token {content!r} with the id {token_id}, which "
                "its vocabulary does not hold; keras_llm's tokenizers cannot give the ids "
                "transformers gives it."
            )


def _word_piece(directory):
    config_name, json_name = "tokenizer_config.json", "tokenizer.json"
    config = directory.json(config_name)
    tokenizer_json = directory.json(json_name)
    model = _tokenizer_json_model(directory, "WordPiece") if tokenizer_json else {}
    if directory.has("vocab.txt"):
        tokens = _read_vocabulary(directory.file("vocab.txt"))
        if model and _vocabulary_list(directory, json_name, model["vocab"]) != tokens:
            raise ValueError(
                f"{directory.file('vocab.txt')} and {directory.file(json_name)} hold different "
                "vocabularies; transformers reads tokenizer.json's. Remove the stale one."
            )
    elif model:
        tokens = _vocabulary_list(directory, json_name, model["vocab"])
    else:
        raise FileNotFoundError(
            f"{directory.path} has neither vocab.txt nor tokenizer.json; a BERT-family tokenizer "
            f"needs one of them. Found: {', '.join(directory.files) or 'nothing'}."
        )
    _check_added_tokens(directory, {t: i for i, t in enumerate(tokens)})

    # BERT's settings: tokenizer_config.json's keys, then tokenizer.json's
    # normalizer and model, then BertTokenizer's defaults.
    for key, expected, what in (("normalizer", "BertNormalizer", "normalizes text"),
                                ("pre_tokenizer", "BertPreTokenizer", "splits words")):
        part = tokenizer_json.get(key)
        if part is not None and (not isinstance(part, dict) or part.get("type") != expected):
            raise ValueError(
                f"{directory.file(json_name)}: keras_llm's WordPiece {what} as BERT does "
                f"({expected}). Received: {key} of type "
                f"{part.get('type') if isinstance(part, dict) else part!r}"
            )
    normalizer = tokenizer_json.get("normalizer") or {}

    def setting(key, json_source, json_key, default, kind):
        if key in config and config[key] is not None:
            return _setting(directory, config_name, key, config[key], kind)
        if json_key in json_source and json_source[json_key] is not None:
            return _setting(directory, json_name, json_key, json_source[json_key], kind)
        return default

    lowercase = setting("do_lower_case", normalizer, "lowercase", True, bool)
    strip_accents = setting("strip_accents", normalizer, "strip_accents", lowercase, bool)
    for name, source, key in [
        (config_name, config, "tokenize_chinese_chars"), (config_name, config, "do_basic_tokenize"),
        (json_name, normalizer, "handle_chinese_chars"), (json_name, normalizer, "clean_text"),
    ]:
        if source.get(key) not in (None, True):
            raise ValueError(
                f"{directory.file(name)}: keras_llm's WordPiece always splits and cleans text "
                f"as BERT does. Received: {key}={source[key]!r}"
            )
    special_tokens_map = directory.json("special_tokens_map.json")

    def token(key, default):
        for name, source in [(config_name, config), ("special_tokens_map.json", special_tokens_map)]:
            if source.get(key) is not None:
                return _token_name(directory, name, key, source[key])
        return default

    unknown_token = token("unk_token", model.get("unk_token") or "[UNK]")
    if unknown_token not in tokens:
        raise ValueError(
            f"{directory.path}: the unknown token {unknown_token!r} is not in the vocabulary."
        )
    return CoreOpsWordPieceTokenizer(
        tokens,
        lowercase=lowercase,
        strip_accents=strip_accents,
        unknown_token=unknown_token,
        suffix_indicator=_setting(
            directory, json_name, "continuing_subword_prefix",
            model.get("continuing_subword_prefix") or "##", str,
        ),
        max_input_chars_per_word=_setting(
            directory, json_name, "max_input_chars_per_word",
            model.get("max_input_chars_per_word") or 100, int,
        ),
        pad_token=token("pad_token", "[PAD]"),
        cls_token=token("cls_token", "[CLS]"),
        sep_token=token("sep_token", "[SEP]"),
        mask_token=token("mask_token", "[MASK]"),
    )


def _byte_pair(directory):
    config_name, json_name = "tokenizer_config.json", "tokenizer.json"
    if directory.json(config_name).get("add_prefix_space"):
        raise ValueError(
            f"{directory.file(config_name)}: keras_llm's byte-level BPE adds no space before "
            "the text, as GPT-2 does not. Received: add_prefix_space=True"
        )
    model = None
    if directory.has(json_name):
        tokenizer_json = directory.json(json_name)
        model = _tokenizer_json_model(directory, "BPE")
        pre_tokenizer = tokenizer_json.get("pre_tokenizer") or {}
        expected = {
            ("normalizer", None): tokenizer_json.get("normalizer"),
            ("pre_tokenizer.type", "ByteLevel"): pre_tokenizer.get("type"),
            ("pre_tokenizer.add_prefix_space", False): pre_tokenizer.get("add_prefix_space", False),
            ("pre_tokenizer.use_regex", True): pre_tokenizer.get("use_regex", True),
            ("model.dropout", None): model.get("dropout"),
            ("model.continuing_subword_prefix", ""): model.get("continuing_subword_prefix") or "",
            ("model.end_of_word_suffix", ""): model.get("end_of_word_suffix") or "",
            ("model.byte_fallback", False): model.get("byte_fallback", False),
            ("model.ignore_merges", False): model.get("ignore_merges", False),
        }
        for (key, wanted), value in expected.items():
            if value != wanted:
                raise ValueError(
                    f"{directory.file(json_name)}: not GPT-2's byte-level BPE, which keras_llm "
                    f"reads: expected {key}={wanted!r}. Received: {key}={value!r}"
                )
        # Merges are "a b" strings or, in newer files, ["a", "b"] pairs.
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    if directory.has("vocab.json") and directory.has("merges.txt"):
        tokenizer = CoreOpsBytePairTokenizer(directory.file("vocab.json"), directory.file("merges.txt"))
        if model is not None and (model["vocab"], merges) != (tokenizer.vocabulary, tokenizer.merges):
            raise ValueError(
                f"{directory.file('vocab.json')} and merges.txt differ from "
                f"{directory.file(json_name)}; transformers reads tokenizer.json's. Remove the "
                "stale one."
            )
    elif model is not None:
        try:
            tokenizer = CoreOpsBytePairTokenizer(model["vocab"], merges)
        except ValueError as error:
            raise ValueError(f"{directory.file(json_name)}: {error}") from None
    else:
        raise FileNotFoundError(
            f"{directory.path} has neither vocab.json and merges.txt nor tokenizer.json; a GPT-2 "
            f"tokenizer needs them. Found: {', '.join(directory.files) or 'nothing'}."
        )
    _check_added_tokens(directory, tokenizer.vocabulary)
    return tokenizer


# The files that make a directory hold a tokenizer (read, or naming one).
_TOKENIZER_FILES = (
    "vocab.txt", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json",
)


def has_tokenizer_files(path):
    """Whether the model directory `path` holds tokenizer files (`keras_llm.from_pretrained` then attaches them).

    Example:

    ```python
    import os, tempfile
    from keras_llm.tokenizers.pretrained import has_tokenizer_files

    path = tempfile.mkdtemp()
    assert not has_tokenizer_files(path)
    open(os.path.join(path, "vocab.txt"), "w").write("[PAD]\\n")
    assert has_tokenizer_files(path)
    ```
    """
    path = os.fspath(path)
    return any(os.path.isfile(os.path.join(path, name)) for name in _TOKENIZER_FILES)


def can_save(tokenizer):
    """Whether `save_pretrained` writes `tokenizer` (a WordPiece or a byte-level BPE tokenizer)."""
    return isinstance(tokenizer, (CoreOpsWordPieceTokenizer, CoreOpsBytePairTokenizer))


def from_pretrained(path):
    """The keras_llm tokenizer of a Hugging Face model directory.

    BERT-family directories (`tokenizer_class` `BertTokenizer`, model types
    `bert`, `distilbert`, `electra`, ...) give a `CoreOpsWordPieceTokenizer`
    from `vocab.txt` (or `tokenizer.json`'s WordPiece vocabulary), with the
    lower-casing and accent stripping of `tokenizer_config.json`
    (`do_lower_case`, `strip_accents`; for a key it lacks, `tokenizer.json`'s
    `BertNormalizer`; then BERT's defaults: lower-cased, accents stripped with
    it) and its special tokens' names. GPT-2 directories give a
    `CoreOpsBytePairTokenizer` from `vocab.json` and `merges.txt` (or
    `tokenizer.json`'s BPE model). The kind comes from `tokenizer_config.json`'s
    `tokenizer_class`, else `config.json`'s `model_type`, else the files.

    The ids are those of `transformers.AutoTokenizer.from_pretrained(path)`
    with `add_special_tokens=False`: keras_llm's data pipelines and exports
    add `[CLS]`/`[SEP]` or `<|endoftext|>` by id, and, like the original
    BERT and GPT-2, special tokens written in the text are split as text
    (transformers matches them). Only files are read, nothing is written.

    Args:
        path: A local directory, e.g. one `huggingface-cli download` or
            transformers' `save_pretrained` wrote.

    Returns:
        A `CoreOpsWordPieceTokenizer` or a `CoreOpsBytePairTokenizer`.

    Raises:
        FileNotFoundError: `path` is not a directory or lacks the files its
            tokenizer needs (the message lists the files found).
        ValueError: A file is malformed (named, with its line where it has
            one) or asks for a tokenization these tokenizers do not do.

    Example:

    ```python
    import json, os, tempfile
    import keras_llm

    path = tempfile.mkdtemp()
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "Cat", "##s"]) + "\\n")
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": False}, f)
    tokenizer = keras_llm.tokenizers.from_pretrained(path)
    assert tokenizer("the Cats").numpy().tolist() == [4, 5, 6]
    assert (tokenizer.cls_token_id, tokenizer.mask_token_id) == (2, None)
    ```
    """
    directory = _Directory(path)
    return _word_piece(directory) if _kind(directory) == "word_piece" else _byte_pair(directory)


def _json_text(value):
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _word_piece_files(tokenizer):
    for key, value, default in [("suffix_indicator", tokenizer.suffix_indicator, "##"),
                                ("max_input_chars_per_word", tokenizer.max_input_chars_per_word, 100)]:
        if value != default:
            raise ValueError(
                f"transformers' BertTokenizer always uses {key}={default!r}; this tokenizer's "
                f"ids would differ from it. Received: {key}={value!r}"
            )
    present = tokenizer.special_tokens
    names = {
        "unk_token": tokenizer.unknown_token,
        "sep_token": tokenizer.sep_token,
        "pad_token": tokenizer.pad_token,
        "cls_token": tokenizer.cls_token,
        "mask_token": tokenizer.mask_token,
    }
    # A name the vocabulary lacks is written as null: transformers would
    # otherwise add its default ("[PAD]", ...) as a new token.
    specials = {key: name if name in present else None for key, name in names.items()}
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": tokenizer.lowercase,
        "strip_accents": tokenizer.strip_accents,
        "tokenize_chinese_chars": True,
        "do_basic_tokenize": True,
        **specials,
    }
    return {
        "vocab.txt": "".join(token + "\n" for token in tokenizer.vocabulary),
        "tokenizer_config.json": _json_text(config),
        "special_tokens_map.json": _json_text({k: v for k, v in specials.items() if v is not None}),
    }


def _byte_pair_files(tokenizer):
    end = _GPT2_END if _GPT2_END in tokenizer.vocabulary else None
    specials = {"unk_token": end, "bos_token": end, "eos_token": end}
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "add_bos_token": False,
        **specials,
    }
    by_id = dict(sorted(tokenizer.vocabulary.items(), key=lambda item: item[1]))
    return {
        "vocab.json": _json_text(by_id),
        "merges.txt": "#version: 0.2\n" + "".join(merge + "\n" for merge in tokenizer.merges),
        "tokenizer_config.json": _json_text(config),
        "special_tokens_map.json": _json_text({k: v for k, v in specials.items() if v is not None}),
    }


def save_pretrained(tokenizer, path):
    """Writes `tokenizer`'s files into the Hugging Face model directory `path`.

    The inverse of `from_pretrained`: a WordPiece tokenizer writes `vocab.txt`,
    `tokenizer_config.json` (`BertTokenizer`, its `do_lower_case` and
    `strip_accents`, its special tokens) and `special_tokens_map.json`; a
    byte-level BPE tokenizer writes `vocab.json`, `merges.txt`,
    `tokenizer_config.json` (`GPT2Tokenizer`) and `special_tokens_map.json`.
    `transformers.AutoTokenizer.from_pretrained(path)` then gives the same ids
    (with `add_special_tokens=False`). Each file is written whole or not at
    all (`keras_llm._atomic`); a tokenizer or directory that cannot be
    written is refused before anything is.

    Args:
        tokenizer: A `CoreOpsWordPieceTokenizer` or `WordPieceTokenizer`, or a
            `CoreOpsBytePairTokenizer` or `BytePairTokenizer`.
        path: An existing directory. It must not hold `tokenizer.json` or
            `added_tokens.json`, which transformers would read instead of,
            or on top of, the files written.

    Returns:
        The paths written.

    Example:

    ```python
    import tempfile
    import keras_llm

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s"]
    tokenizer = keras_llm.tokenizers.CoreOpsWordPieceTokenizer(vocab)
    path = tempfile.mkdtemp()
    keras_llm.tokenizers.save_pretrained(tokenizer, path)
    loaded = keras_llm.tokenizers.from_pretrained(path)
    assert loaded("The cats").numpy().tolist() == tokenizer("The cats").numpy().tolist() == [5, 6, 7]
    ```
    """
    if not can_save(tokenizer):
        raise TypeError(
            "`tokenizer` must be a WordPiece tokenizer (CoreOpsWordPieceTokenizer, "
            "WordPieceTokenizer) or a byte-level BPE one (CoreOpsBytePairTokenizer, "
            f"BytePairTokenizer). Received: tokenizer of type {type(tokenizer).__name__}"
        )
    word_piece = isinstance(tokenizer, CoreOpsWordPieceTokenizer)
    files = _word_piece_files(tokenizer) if word_piece else _byte_pair_files(tokenizer)
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"`path` must be an existing directory. Received: path={directory!r}"
            + (" (a file)" if os.path.exists(directory) else " (does not exist)")
        )
    shadowing = [name for name in _SHADOWING if os.path.exists(os.path.join(directory, name))]
    if shadowing:
        raise FileExistsError(
            f"{directory} holds {' and '.join(shadowing)}, which transformers would read "
            "instead of, or on top of, the files written here; remove it or choose another "
            "directory."
        )
    written = []
    for name, text in files.items():
        write_text(os.path.join(directory, name), text)
        written.append(os.path.join(directory, name))
    return written
