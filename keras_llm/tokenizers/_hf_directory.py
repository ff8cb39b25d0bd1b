"""A Hugging Face model directory's tokenizer files, as the readers and writers of tokenizers see them."""

import json
import os

from keras_llm._json import read_json_object

# What from_pretrained reads, for its errors.
EXPECTED = (
    "vocab.txt (or tokenizer.json with a WordPiece model) for the BERT family, or vocab.json "
    "and merges.txt (or tokenizer.json with a byte-level BPE model) for GPT-2, Llama 3, Qwen2 "
    "and SmolLM2"
)


class Directory:
    """A model directory's file names and its JSON files, each read once."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(
                "`path` must be a Hugging Face model directory (the tokenizer files: "
                f"{EXPECTED}). Received: path={self.path!r}"
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


def setting(directory, name, key, value, kind):
    """`value` checked to be of `kind` (bool, str, int), named by file and key when it is not."""
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ValueError(
            f"{directory.file(name)}: `{key}` must be a {kind.__name__}. Received: {key}={value!r}"
        )
    return value


def token_name(directory, name, key, value):
    """A special token as transformers writes it: a string, or an AddedToken's dict."""
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return setting(directory, name, key, value, str)


def tokenizer_json_model(directory, model_type):
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


def vocabulary_list(directory, name, vocabulary):
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


def declared_added_tokens(directory):
    """The added tokens the directory declares, as `(file name, content, id, entry)`.

    From tokenizer.json's `added_tokens`, tokenizer_config.json's
    `added_tokens_decoder` and added_tokens.json; `entry` is the token's
    object (`special`, `lstrip`, ...), or {} where the file gives none.
    """
    found = []
    for item in directory.json("tokenizer.json").get("added_tokens") or []:
        if isinstance(item, dict):
            found.append(("tokenizer.json", item.get("content"), item.get("id"), item))
    decoder = directory.json("tokenizer_config.json").get("added_tokens_decoder") or {}
    for token_id, item in decoder.items() if isinstance(decoder, dict) else []:
        content = item.get("content") if isinstance(item, dict) else None
        token_id = int(token_id) if str(token_id).isdigit() else token_id  # JSON keys are strings
        found.append(("tokenizer_config.json", content, token_id, item if isinstance(item, dict) else {}))
    for content, token_id in directory.json("added_tokens.json").items():
        found.append(("added_tokens.json", content, token_id, {"special": False}))
    return found


def check_added_tokens(directory, vocabulary):
    """Tokens the directory adds must already be in `vocabulary` ({token: id}) with the same id.

    transformers gives added tokens new ids and matches them in text before
    splitting it; keras_llm's WordPiece tokenizer holds one vocabulary, so a
    token outside it would give different ids.
    """
    for name, content, token_id, _ in declared_added_tokens(directory):
        if vocabulary.get(content) != token_id:
            raise ValueError(
                f"{directory.file(name)}: adds the token {content!r} with the id {token_id}, which "
                "its vocabulary does not hold; keras_llm's tokenizers cannot give the ids "
                "transformers gives it."
            )


def json_text(value):
    """`value` as the indented JSON text transformers writes."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
