"""Byte-level BPE tokenizers in and out of Hugging Face directories: GPT-2, Llama 3, Qwen2, SmolLM2.

`read_byte_pair` reads `tokenizer.json` (its BPE model, added tokens,
normalizer and pre-tokenizer: each kind `PRE_TOKENIZER_JSON` lists, others
refused by name) or GPT-2's `vocab.json` and `merges.txt`, with
`tokenizer_config.json`'s begin/end tokens, `add_bos_token` and chat template
(or `chat_template.jinja`). `byte_pair_files` writes them back: GPT-2's two
files for a plain GPT-2 tokenizer, `tokenizer.json` for the others.
"""

from keras_llm.tokenizers._hf_directory import (
    declared_added_tokens,
    json_text,
    setting,
    token_name,
    tokenizer_json_model,
)
from keras_llm.tokenizers._pre_tokenizers import LLAMA3_SPLIT, QWEN2_SPLIT
from keras_llm.tokenizers.core_ops_byte_pair_tokenizer import (
    CoreOpsBytePairTokenizer,
    _load_files,
)

_CONFIG, _JSON, _TEMPLATE = "tokenizer_config.json", "tokenizer.json", "chat_template.jinja"
_GPT2_END = "<|endoftext|>"
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def _split(pattern):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


# tokenizer.json's `pre_tokenizer` of each kind keras_llm reads, as Hugging Face writes it.
PRE_TOKENIZER_JSON = {
    "gpt2": _BYTE_LEVEL,
    "llama3": {"type": "Sequence",
               "pretokenizers": [_split(LLAMA3_SPLIT), {**_BYTE_LEVEL, "use_regex": False}]},
    "qwen2": {"type": "Sequence",
              "pretokenizers": [_split(QWEN2_SPLIT), {**_BYTE_LEVEL, "use_regex": False}]},
    "smollm": {"type": "Sequence",
               "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
}


def _shape(part):
    """What a pre-tokenizer computes, without the settings that change only offsets."""
    if not isinstance(part, dict):
        return (repr(part),)
    kind = part.get("type")
    if kind == "Sequence":
        return tuple(_shape(p) for p in part.get("pretokenizers") or [])
    if kind == "ByteLevel":  # tokenizers' defaults where a key is missing
        return (kind, part.get("add_prefix_space", True), part.get("use_regex", True))
    if kind == "Split":
        return (kind, part.get("pattern"), part.get("behavior"), part.get("invert", False))
    if kind == "Digits":
        return (kind, part.get("individual_digits", False))
    return (kind,)


def _describe(part):
    if isinstance(part, dict) and part.get("type") == "Sequence":
        return "Sequence[" + ", ".join(_describe(p) for p in part.get("pretokenizers") or []) + "]"
    if isinstance(part, dict):
        settings = ", ".join(f"{k}={v!r}" for k, v in part.items() if k != "type")
        return f"{part.get('type')}({settings})"
    return repr(part)


def _pre_tokenizer(directory, tokenizer_json):
    value = tokenizer_json.get("pre_tokenizer")
    shape = _shape(value)
    for name, expected in PRE_TOKENIZER_JSON.items():
        if shape in (_shape(expected), (_shape(expected),)):
            return name
    raise ValueError(
        f"{directory.file(_JSON)}: keras_llm's byte-level BPE splits text as GPT-2 (ByteLevel), "
        "Llama 3 or Qwen2 (their Split expression, then ByteLevel without its own) or SmolLM2 "
        f"(Digits, then ByteLevel) do. Received: pre_tokenizer={_describe(value)}"
    )


def _normalization(directory, tokenizer_json):
    value = tokenizer_json.get("normalizer")
    parts = value.get("normalizers") if isinstance(value, dict) and value.get("type") == "Sequence" else [value]
    parts = [p for p in parts or [] if p is not None]
    if not parts:
        return None
    if len(parts) == 1 and isinstance(parts[0], dict) and parts[0].get("type") == "NFC":
        return "NFC"
    kinds = [p.get("type") if isinstance(p, dict) else p for p in parts]
    raise ValueError(
        f"{directory.file(_JSON)}: keras_llm's byte-level BPE normalizes text with NFC (Qwen2) or "
        f"not at all. Received: normalizer of types {kinds!r}"
    )


def _tokenizer_json(directory):
    """(vocabulary, merges, settings) of tokenizer.json's byte-level BPE."""
    tokenizer_json = directory.json(_JSON)
    model = tokenizer_json_model(directory, "BPE")
    expected = {
        ("model.dropout", None): model.get("dropout"),
        ("model.continuing_subword_prefix", ""): model.get("continuing_subword_prefix") or "",
        ("model.end_of_word_suffix", ""): model.get("end_of_word_suffix") or "",
        ("model.byte_fallback", False): model.get("byte_fallback", False),
    }
    for (key, wanted), value in expected.items():
        if value != wanted:
            raise ValueError(
                f"{directory.file(_JSON)}: not a byte-level BPE keras_llm reads: expected "
                f"{key}={wanted!r}. Received: {key}={value!r}"
            )
    settings = {
        "pre_tokenizer": _pre_tokenizer(directory, tokenizer_json),
        "normalization": _normalization(directory, tokenizer_json),
        "ignore_merges": setting(directory, _JSON, "model.ignore_merges",
                                 model.get("ignore_merges", False), bool),
    }
    # Merges are "a b" strings or, in newer files, ["a", "b"] pairs.
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    return model["vocab"], merges, settings


def _added_tokens(directory, vocabulary):
    """{content: special} of the declared added tokens, each put in `vocabulary` at its id."""
    owners = {token_id: token for token, token_id in vocabulary.items()}
    added = {}
    for name, content, token_id, entry in declared_added_tokens(directory):
        where = directory.file(name)
        if not isinstance(content, str) or not content or not isinstance(token_id, int):
            raise ValueError(f"{where}: an added token needs a `content` string and an int `id`. "
                             f"Received: content={content!r}, id={token_id!r}")
        for flag in ("lstrip", "rstrip", "single_word"):
            if entry.get(flag):
                raise ValueError(f"{where}: keras_llm matches added tokens as written, without "
                                 f"{flag}. Received: {content!r} with {flag}=True")
        if vocabulary.get(content, token_id) != token_id or owners.get(token_id, content) != content:
            raise ValueError(
                f"{where}: adds the token {content!r} with the id {token_id}, which the "
                f"vocabulary gives to {owners.get(token_id, content)!r} (or gives {content!r} "
                f"the id {vocabulary.get(content)}); keras_llm cannot give transformers' ids."
            )
        vocabulary[content], owners[token_id] = token_id, content
        added[content] = added.get(content, False) or bool(entry.get("special", False))
    return added


def _chat_template(directory):
    if directory.has(_TEMPLATE):
        with open(directory.file(_TEMPLATE), encoding="utf-8") as f:
            return f.read()
    template = directory.json(_CONFIG).get("chat_template")
    if isinstance(template, list):  # named templates: transformers' default is "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"{directory.file(_CONFIG)}: `chat_template` must be a Jinja string. "
                         f"Received: chat_template={template!r}")
    return template


def _special_token(directory, key, vocabulary):
    for name in (_CONFIG, "special_tokens_map.json"):
        value = directory.json(name).get(key)
        if value is not None:
            token = token_name(directory, name, key, value)
            if token not in vocabulary:
                raise ValueError(f"{directory.file(name)}: `{key}` is not a token of the "
                                 f"vocabulary. Received: {key}={token!r}")
            return token
    return None


def _adds_bos(directory, bos_token):
    """tokenizer_config.json's `add_bos_token`, else whether tokenizer.json's template puts it first."""
    config = directory.json(_CONFIG)
    if config.get("add_bos_token") is not None:
        return setting(directory, _CONFIG, "add_bos_token", config["add_bos_token"], bool)
    processor = directory.json(_JSON).get("post_processor") or {}
    processors = processor.get("processors") or [processor]
    for part in processors:
        single = part.get("single") if isinstance(part, dict) else None
        if part.get("type") == "TemplateProcessing" and single:
            first = single[0].get("SpecialToken", {}) if isinstance(single[0], dict) else {}
            return bos_token is not None and first.get("id") == bos_token
    return False


def read_byte_pair(directory):
    """The `CoreOpsBytePairTokenizer` of a `Directory`."""
    if directory.json(_CONFIG).get("add_prefix_space"):
        raise ValueError(
            f"{directory.file(_CONFIG)}: keras_llm's byte-level BPE adds no space before "
            "the text, as GPT-2 does not. Received: add_prefix_space=True"
        )
    settings, from_json = {}, None
    if directory.has(_JSON):
        *from_json, settings = _tokenizer_json(directory)
    if directory.has("vocab.json") and directory.has("merges.txt"):
        vocabulary, merges = _load_files(directory.file("vocab.json"), directory.file("merges.txt"))
        if from_json is not None and from_json != [vocabulary, merges]:
            raise ValueError(
                f"{directory.file('vocab.json')} and merges.txt differ from "
                f"{directory.file(_JSON)}; transformers reads tokenizer.json's. Remove the "
                "stale one."
            )
    elif from_json is not None:
        try:
            vocabulary, merges = _load_files(*from_json)
        except ValueError as error:
            raise ValueError(f"{directory.file(_JSON)}: {error}") from None
    else:
        raise FileNotFoundError(
            f"{directory.path} has neither vocab.json and merges.txt nor tokenizer.json; a "
            f"byte-level BPE tokenizer needs them. Found: {', '.join(directory.files) or 'nothing'}."
        )
    vocabulary = dict(vocabulary)
    added = _added_tokens(directory, vocabulary)
    bos_token = _special_token(directory, "bos_token", vocabulary)
    try:
        return CoreOpsBytePairTokenizer(
            vocabulary, merges, added_tokens=added, chat_template=_chat_template(directory),
            bos_token=bos_token, eos_token=_special_token(directory, "eos_token", vocabulary),
            add_bos_token=_adds_bos(directory, bos_token), **settings,
        )
    except ValueError as error:
        raise ValueError(f"{directory.path}: {error}") from None


def is_plain_gpt2(tokenizer):
    """Whether GPT-2's `vocab.json` and `merges.txt` say all there is to say of `tokenizer`."""
    return (tokenizer.pre_tokenizer, tokenizer.normalization, tokenizer.ignore_merges,
            tokenizer.added_tokens, tokenizer.chat_template, tokenizer.add_bos_token) == (
        "gpt2", None, False, {}, None, False) and tokenizer.bos_token in (None, _GPT2_END) and (
        tokenizer.eos_token in (None, _GPT2_END))


def _gpt2_files(tokenizer):
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
        "vocab.json": json_text(by_id),
        "merges.txt": "#version: 0.2\n" + "".join(merge + "\n" for merge in tokenizer.merges),
        _CONFIG: json_text(config),
        "special_tokens_map.json": json_text({k: v for k, v in specials.items() if v is not None}),
    }


def _post_processor(tokenizer):
    if not tokenizer.add_bos_token:
        return None
    bos = tokenizer.bos_token
    first = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {
        "type": "TemplateProcessing",
        "single": [first, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [first, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [tokenizer.bos_token_id], "tokens": [bos]}},
    }


def _tokenizer_json_files(tokenizer):
    by_id = dict(sorted(tokenizer.vocabulary.items(), key=lambda item: item[1]))
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": tokenizer.vocabulary[t], "content": t, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": special}
            for t, special in sorted(tokenizer.added_tokens.items(), key=lambda i: tokenizer.vocabulary[i[0]])
        ],
        "normalizer": {"type": "NFC"} if tokenizer.normalization == "NFC" else None,
        "pre_tokenizer": PRE_TOKENIZER_JSON[tokenizer.pre_tokenizer],
        "post_processor": _post_processor(tokenizer),
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": tokenizer.ignore_merges, "vocab": by_id,
            "merges": [merge.split(" ") for merge in tokenizer.merges],
        },
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": tokenizer.add_bos_token,
        "add_eos_token": False,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "clean_up_tokenization_spaces": False,
    }
    if tokenizer.chat_template is not None:
        config["chat_template"] = tokenizer.chat_template
    return {_JSON: json_text(tokenizer_json), _CONFIG: json_text(config)}


def byte_pair_files(tokenizer):
    """{file name: text} of a byte-level BPE tokenizer, and the files that must not be beside them."""
    if is_plain_gpt2(tokenizer):
        return _gpt2_files(tokenizer), (_JSON, "added_tokens.json", _TEMPLATE)
    return _tokenizer_json_files(tokenizer), ("vocab.json", "merges.txt", "added_tokens.json", _TEMPLATE)
