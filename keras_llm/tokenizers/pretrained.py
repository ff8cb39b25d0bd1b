"""Tokenizers in and out of Hugging Face model directories: `from_pretrained`, `save_pretrained`.

A Hugging Face directory says which tokenizer it holds in `tokenizer_config.json`
(`tokenizer_class`), in `config.json` (`model_type`), in `tokenizer.json`'s
model, or only by its files. The BERT family's WordPiece comes from `vocab.txt`
or `tokenizer.json` (read here); the byte-level BPE of GPT-2, Llama 3, Qwen2
and SmolLM2 from `vocab.json` and `merges.txt` or `tokenizer.json`
(`_hf_byte_pair.py`); each loads into the core-ops tokenizer of keras_llm
that gives transformers' ids.
"""

import os

from keras_llm._atomic import write_text
from keras_llm.tokenizers._hf_byte_pair import byte_pair_files, read_byte_pair
from keras_llm.tokenizers._hf_directory import (
    EXPECTED,
    Directory,
    check_added_tokens,
    json_text,
    token_name,
    tokenizer_json_model,
    vocabulary_list,
)
from keras_llm.tokenizers._hf_directory import setting as _setting
from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import CoreOpsBytePairTokenizer
from keras_llm.tokenizers.core_ops_word_piece_tokenizer import (
    CoreOpsWordPieceTokenizer,
    _read_vocabulary,
)

# transformers' tokenizer classes (without "Fast") and config.json model types
# whose AutoTokenizer is BERT's WordPiece or a byte-level BPE; the generic
# classes hold whatever tokenizer.json describes.
_WORD_PIECE_CLASSES = (
    "BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "MobileBertTokenizer",
    "SqueezeBertTokenizer",
)
_BYTE_PAIR_CLASSES = ("GPT2Tokenizer", "Qwen2Tokenizer")
_GENERIC_CLASSES = ("PreTrainedTokenizer", "TokenizersBackend")
_WORD_PIECE_MODELS = ("bert", "distilbert", "electra", "mobilebert", "squeezebert")
_BYTE_PAIR_MODELS = ("gpt2",)
_TOKENIZER_JSON_MODELS = ("llama", "mistral", "qwen2")  # whichever tokenizer.json holds


def _json_kind(directory):
    """"word_piece" or "byte_pair" from tokenizer.json's model, or None."""
    model = directory.json("tokenizer.json").get("model")
    return {"WordPiece": "word_piece", "BPE": "byte_pair"}.get(
        model.get("type") if isinstance(model, dict) else None
    )


def _kind(directory):
    """"word_piece" or "byte_pair": from tokenizer_class, else model_type, else the files."""
    named = directory.json("tokenizer_config.json").get("tokenizer_class")
    if named is not None:
        name = str(named).removesuffix("Fast")
        if name in _WORD_PIECE_CLASSES:
            return "word_piece"
        if name in _BYTE_PAIR_CLASSES:
            return "byte_pair"
        if name in _GENERIC_CLASSES and _json_kind(directory):
            return _json_kind(directory)
        raise ValueError(
            f"{directory.file('tokenizer_config.json')}: keras_llm reads the tokenizers of the "
            f"BERT family ({', '.join(_WORD_PIECE_CLASSES)}), the byte-level BPE of GPT-2, "
            f"Llama 3, Qwen2 and SmolLM2 ({', '.join(_BYTE_PAIR_CLASSES)}), and "
            "PreTrainedTokenizerFast with a tokenizer.json of either. "
            f"Received: tokenizer_class={named!r}"
        )
    model_type = directory.json("config.json").get("model_type")
    if model_type is not None:
        if model_type in _WORD_PIECE_MODELS:
            return "word_piece"
        if model_type in _BYTE_PAIR_MODELS:
            return "byte_pair"
        if model_type in _TOKENIZER_JSON_MODELS and _json_kind(directory):
            return _json_kind(directory)
        raise ValueError(
            f"{directory.file('config.json')}: keras_llm reads the tokenizers of model types "
            f"{', '.join(_WORD_PIECE_MODELS + _BYTE_PAIR_MODELS)}, and of "
            f"{', '.join(_TOKENIZER_JSON_MODELS)} from a tokenizer.json. "
            f"Received: model_type={model_type!r}"
        )
    if directory.has("vocab.txt"):
        return "word_piece"
    if directory.has("vocab.json") and directory.has("merges.txt"):
        return "byte_pair"
    if _json_kind(directory):
        return _json_kind(directory)
    raise FileNotFoundError(
        f"{directory.path} holds no tokenizer keras_llm reads. Found: "
        f"{', '.join(directory.files) or 'nothing'}. Expected: {EXPECTED}."
    )


def _word_piece(directory):
    config_name, json_name = "tokenizer_config.json", "tokenizer.json"
    config = directory.json(config_name)
    tokenizer_json = directory.json(json_name)
    model = tokenizer_json_model(directory, "WordPiece") if tokenizer_json else {}
    if directory.has("vocab.txt"):
        tokens = _read_vocabulary(directory.file("vocab.txt"))
        if model and vocabulary_list(directory, json_name, model["vocab"]) != tokens:
            raise ValueError(
                f"{directory.file('vocab.txt')} and {directory.file(json_name)} hold different "
                "vocabularies; transformers reads tokenizer.json's. Remove the stale one."
            )
    elif model:
        tokens = vocabulary_list(directory, json_name, model["vocab"])
    else:
        raise FileNotFoundError(
            f"{directory.path} has neither vocab.txt nor tokenizer.json; a BERT-family tokenizer "
            f"needs one of them. Found: {', '.join(directory.files) or 'nothing'}."
        )
    check_added_tokens(directory, {t: i for i, t in enumerate(tokens)})

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
                return token_name(directory, name, key, source[key])
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


# Files transformers reads before, or on top of, the ones save_pretrained writes for WordPiece.
_WORD_PIECE_SHADOWING = ("tokenizer.json", "added_tokens.json")
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
    it) and its special tokens' names. Byte-level BPE directories give a
    `CoreOpsBytePairTokenizer`: GPT-2's from `vocab.json` and `merges.txt`,
    or any from `tokenizer.json`'s BPE model with the pre-tokenizer of GPT-2,
    Llama 3, Qwen2 (and its NFC normalizer) or SmolLM2, its added tokens
    (matched whole in text), and `tokenizer_config.json`'s `bos_token`,
    `eos_token`, `add_bos_token` and `chat_template` (or
    `chat_template.jinja`). Other pre-tokenizers and normalizers are refused
    by name. The kind comes from `tokenizer_config.json`'s `tokenizer_class`,
    else `config.json`'s `model_type`, else the files.

    The ids are those of `transformers.AutoTokenizer.from_pretrained(path)`
    with `add_special_tokens=False`: keras_llm's data pipelines and exports
    add `[CLS]`/`[SEP]` or the end token by id. Like the original BERT and
    GPT-2, a directory without added tokens (BERT's `vocab.txt`, GPT-2's
    `vocab.json`) splits special tokens written in the text as text
    (transformers matches them). (transformers 5 reads a `GPT2Tokenizer`
    directory with GPT-2's pre-tokenizer whatever `tokenizer.json` says;
    keras_llm follows `tokenizer.json`, as `tokenizers` and
    `PreTrainedTokenizerFast` do: SmolLM2's digits split apart.) Only files
    are read, nothing is written.

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
    directory = Directory(path)
    return _word_piece(directory) if _kind(directory) == "word_piece" else read_byte_pair(directory)


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
        "tokenizer_config.json": json_text(config),
        "special_tokens_map.json": json_text({k: v for k, v in specials.items() if v is not None}),
    }


def save_pretrained(tokenizer, path):
    """Writes `tokenizer`'s files into the Hugging Face model directory `path`.

    The inverse of `from_pretrained`: a WordPiece tokenizer writes `vocab.txt`,
    `tokenizer_config.json` (`BertTokenizer`, its `do_lower_case` and
    `strip_accents`, its special tokens) and `special_tokens_map.json`; a
    plain GPT-2 byte-level BPE tokenizer writes `vocab.json`, `merges.txt`,
    `tokenizer_config.json` (`GPT2Tokenizer`) and `special_tokens_map.json`;
    any other byte-level BPE (Llama 3, Qwen2, SmolLM2; added tokens, a chat
    template) writes `tokenizer.json` and `tokenizer_config.json`
    (`PreTrainedTokenizerFast`, its `bos_token`, `eos_token`,
    `add_bos_token` and `chat_template`).
    `transformers.AutoTokenizer.from_pretrained(path)` then gives the same ids
    (with `add_special_tokens=False`). Each file is written whole or not at
    all (`keras_llm._atomic`); a tokenizer or directory that cannot be
    written is refused before anything is.

    Args:
        tokenizer: A `CoreOpsWordPieceTokenizer` or `WordPieceTokenizer`, or a
            `CoreOpsBytePairTokenizer` or `BytePairTokenizer`.
        path: An existing directory. It must not hold files transformers
            would read instead of, or on top of, the files written
            (`added_tokens.json`, `chat_template.jinja`; `tokenizer.json`
            beside GPT-2's files, `vocab.json` and `merges.txt` beside
            `tokenizer.json`).

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
    if isinstance(tokenizer, CoreOpsWordPieceTokenizer):
        files, others = _word_piece_files(tokenizer), _WORD_PIECE_SHADOWING
    else:
        files, others = byte_pair_files(tokenizer)
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"`path` must be an existing directory. Received: path={directory!r}"
            + (" (a file)" if os.path.exists(directory) else " (does not exist)")
        )
    shadowing = [name for name in others if os.path.exists(os.path.join(directory, name))]
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
