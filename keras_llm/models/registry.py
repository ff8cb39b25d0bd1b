"""The one registry of keras_llm's tasks: what each kind of model is and who serves it.

A task is what a model says it is (`model.task`). Its entry declares, once,
everything the rest of keras_llm looks up about it:

- `builder`: the function that builds it (`"module:function"`);
- `compile`: the key of its training defaults in
  `keras_llm.training.defaults.COMPILE_DEFAULTS` (loss, metrics, peak
  learning rate);
- `serving`: the `tf.Module` that `keras_llm.export` serves it with
  (`"module:Class"`, None where the task does not export) and the
  `export` settings that module takes;
- `hugging_face`: the Hugging Face architectures it reads and writes;
- `alias`: its short name in `from_pretrained(task=...)` and
  `keras-llm finetune --task`;
- `specials`: the special tokens it uses, resolved by `special_tokens`.

Adding a task means one entry here plus the task's own modules (its builder,
its serving module). References are strings resolved on first use, so this
module imports nothing of keras_llm and every floor can read it.

Example:

```python
import keras_llm
from keras_llm.models import registry

model = keras_llm.build_bert_classifier("bert_tiny", num_classes=2, vocabulary_size=100)
task = registry.get_task(model)
assert (task.name, task.alias, task.compile) == ("classifier", "classify", "classification")
assert registry.get_task("tag").name == "tagger"
```
"""

import dataclasses
import importlib

# Settings of `keras_llm.export` that the decoding exports take.
GENERATION_SETTINGS = (
    "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_token_ids", "jit_compile",
)


@dataclasses.dataclass(frozen=True)
class Task:
    """One task's entry: see the module docstring for each field."""

    name: str
    description: str  # what messages call such a model ("a GPT")
    builder: str
    compile: str
    serving: str = None
    export_settings: tuple = ()
    hugging_face: tuple = ()
    alias: str = None
    specials: str = "none"  # "causal_lm", "seq2seq" or "bert": see `special_tokens`

    def resolve(self, field):
        """The object a `"module:name"` field names, imported on first use."""
        module, _, name = getattr(self, field).partition(":")
        return getattr(importlib.import_module(module), name)


TASKS = {
    task.name: task
    for task in (
        Task(
            "causal_lm", "a GPT", "keras_llm.models.gpt:build_gpt", "causal_lm",
            serving="keras_llm.export.chat:ChatServing",
            export_settings=GENERATION_SETTINGS + ("chat_template",),
            hugging_face=("GPT2LMHeadModel", "GPT2Model"), specials="causal_lm",
        ),
        Task(
            "seq2seq_lm", "a seq2seq model", "keras_llm.models.seq2seq:build_seq2seq",
            "seq2seq_lm", serving="keras_llm.export.decoding:Seq2SeqServing",
            export_settings=GENERATION_SETTINGS,
            hugging_face=("BartForConditionalGeneration", "BartModel"), specials="seq2seq",
        ),
        Task(
            "encoder", "a BERT encoder", "keras_llm.models.bert:build_bert", "none",
            hugging_face=("BertModel",), alias="backbone", specials="bert",
        ),
        Task(
            "masked_lm", "a masked LM", "keras_llm.models.bert_heads:build_bert_pretrainer",
            "bert_pretraining", serving="keras_llm.export.masked_lm:MaskedLMServing",
            export_settings=("top_k",),
            hugging_face=("BertForPreTraining", "BertForMaskedLM"), specials="bert",
        ),
        Task(
            "classifier", "a classifier", "keras_llm.models.bert_heads:build_bert_classifier",
            "classification", serving="keras_llm.export.labelled:ClassifierServing",
            export_settings=("label_names",),
            hugging_face=("BertForSequenceClassification",), alias="classify", specials="bert",
        ),
        Task(
            "tagger", "a tagger", "keras_llm.models.bert_heads:build_bert_tagger", "token_tagging",
            serving="keras_llm.export.labelled:TaggerServing", export_settings=("label_names",),
            hugging_face=("BertForTokenClassification",), alias="tag", specials="bert",
        ),
        Task(
            "question_answerer", "a question answerer",
            "keras_llm.models.bert_heads:build_bert_question_answerer", "question_answering",
            serving="keras_llm.export.question_answering:QuestionAnswererServing",
            export_settings=("max_answer_length", "doc_stride", "max_question_length"),
            hugging_face=("BertForQuestionAnswering",), alias="qa", specials="bert",
        ),
    )
}


def get_task(what):
    """The `Task` of a model (its `task`), of a task name, or of an alias ("classify").

    Raises:
        ValueError: naming what was received and the known tasks.
    """
    name = getattr(what, "task", what)
    if isinstance(name, str):
        if name in TASKS:
            return TASKS[name]
        for task in TASKS.values():
            if task.alias == name:
                return task
    known = ", ".join(
        f"{t.name}" + (f" ({t.alias})" if t.alias else "") for t in TASKS.values()
    )
    if isinstance(what, str) or what is None:
        received = f"task={what!r}"
    else:
        received = f"model={getattr(what, 'name', type(what).__name__)!r} with task={name!r}"
    raise ValueError(f"Unknown task; keras_llm's tasks are {known}. Received: {received}")


# Which tokenizer attribute gives each special token, in order of preference.
# A seq2seq model reads the end of its source from the source tokenizer and
# the rest from the target's.
_SEQ2SEQ = {
    "start_token_id": ("target", ("start_token_id", "cls_token_id", "end_token_id")),
    "end_token_id": ("target", ("end_token_id", "sep_token_id")),
    "pad_token_id": ("target", ("pad_token_id",)),
    "source_end_token_id": ("source", ("end_token_id", "sep_token_id")),
    "source_pad_token_id": ("source", ("pad_token_id",)),
}
_CAUSAL_LM = {
    # A GPT's end token separates documents: it stops generation and starts
    # an empty prompt.
    "end_token_id": ("target", ("end_token_id",)),
    "pad_token_id": ("target", ("pad_token_id", "end_token_id")),
}
_BERT = {
    name: ("target", (name,))
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id")
}
_SPECIALS = {"seq2seq": _SEQ2SEQ, "causal_lm": _CAUSAL_LM, "bert": _BERT, "none": {}}


def special_tokens(task, tokenizer, target_tokenizer=None, *, needed=(), **given):
    """The special token ids `task` uses: those `given`, else the tokenizer's.

    The one place that decides them, for training (`keras_llm.data`), the
    `Generator` and the exports. A seq2seq model: `start_token_id` is the
    target tokenizer's `start_token_id`, else `cls_token_id`, else
    `end_token_id`; `end_token_id` its `end_token_id`, else `sep_token_id`;
    `pad_token_id` its `pad_token_id`; `source_end_token_id` and
    `source_pad_token_id` the source tokenizer's end (or [SEP]) and padding.
    A GPT: `end_token_id` (stop token and empty-prompt start) and
    `pad_token_id` (else the end token). BERT's tasks: `cls_token_id`,
    `sep_token_id`, `pad_token_id`, `mask_token_id`. A special in `needed`
    that neither `given` nor the tokenizer has is an error naming the
    argument to pass; others are left out of the result.

    Args:
        task: A task name or alias, or a model.
        tokenizer: The (source) tokenizer, or None.
        target_tokenizer: A seq2seq model's target tokenizer (default: `tokenizer`).
        needed: Names that must be resolved.
        **given: Explicit ids, which win over the tokenizer's.

    Example:

    ```python
    import keras_llm
    from keras_llm.models.registry import special_tokens

    specials = special_tokens("seq2seq_lm", keras_llm.tokenizers.ByteTokenizer())
    assert specials["start_token_id"] == specials["end_token_id"] == 256
    assert special_tokens("causal_lm", keras_llm.tokenizers.ByteTokenizer()) == {
        "end_token_id": 256, "pad_token_id": 257,
    }
    ```
    """
    rules = _SPECIALS[get_task(task).specials]
    target_tokenizer = target_tokenizer or tokenizer
    unknown = set(given) - set(rules)
    if unknown:
        raise TypeError(
            f"Unknown special token arguments for {get_task(task).description}: "
            f"{', '.join(sorted(unknown))} (it takes {', '.join(rules) or 'none'})"
        )
    specials = {}
    for name, (side, attributes) in rules.items():
        source = target_tokenizer if side == "target" else tokenizer
        value = given.get(name)
        if value is None:
            value = next(
                (getattr(source, a) for a in attributes if getattr(source, a, None) is not None),
                None,
            )
        if value is not None:
            specials[name] = int(value)
        elif name in needed:
            raise ValueError(
                f"The {side} tokenizer has none of {', '.join(attributes)}; pass `{name}=` "
                f"explicitly. Received: tokenizer={type(source).__name__}"
            )
    return specials
