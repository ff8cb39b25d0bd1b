"""The one reader of JSON-object files (checkpoint configs, tokenizer files)."""

import json


def read_json_object(path):
    """The JSON object in the file `path`, as a dict.

    Raises:
        ValueError: naming `path` (and the line and column of a syntax error)
            when the file is not UTF-8, not JSON, or holds something else than
            an object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8; expected a JSON file.") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}."
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object. Received: a JSON {type(value).__name__}")
    return value
