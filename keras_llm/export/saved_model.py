"""Deprecated: the previous home of `keras_llm.export` (one module for every kind of serving).

Its names still import from here, with a `DeprecationWarning`, for one
release: `export`, `serving_tokenizer` and `GENERATION_DEFAULTS` are
`keras_llm.export`'s; the serving classes are in `keras_llm.export.decoding`,
`.labelled`, `.masked_lm` and `.question_answering`; the versioned writer
in `keras_llm.export.versions`.
"""

import importlib
import warnings

_MOVED = {
    "export": "keras_llm.export",
    "serving_tokenizer": "keras_llm.export.serving",
    "GENERATION_DEFAULTS": "keras_llm.export.decoding",
    "_CausalLMServing": "keras_llm.export.decoding:CausalLMServing",
    "_Seq2SeqServing": "keras_llm.export.decoding:Seq2SeqServing",
    "_ClassifierServing": "keras_llm.export.labelled:ClassifierServing",
    "_TaggerServing": "keras_llm.export.labelled:TaggerServing",
    "_MaskedLMServing": "keras_llm.export.masked_lm:MaskedLMServing",
    "_QuestionAnswererServing": "keras_llm.export.question_answering:QuestionAnswererServing",
    "_write_version": "keras_llm.export.versions:write_version",
    "_clean_interrupted_versions": "keras_llm.export.versions:clean_interrupted_versions",
}


def __getattr__(name):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, new_name = _MOVED[name].partition(":")
    new_name = new_name or name
    warnings.warn(
        f"keras_llm.export.saved_model.{name} is deprecated and goes in the next release: "
        f"use {module}.{new_name}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), new_name)
