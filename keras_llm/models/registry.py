"""The one registry of keras_llm's tasks: what each kind of model is and who serves it.

A task is what a model says it is (`model.task`). Its entry declares, once,
everything the rest of keras_llm looks up about it:

- `builders`: the functions that build it (`Builder`s: `"module:function"`,
  the class of the models it returns, and the Hugging Face architectures
  its checkpoints are, read and written); the first is the task's default
  (`builder`). A model's builder is the one whose class it is
  (`get_builder`): the model says what it is, no layer names are read;
- `compile`: the key of its training defaults in
  `keras_llm.training.defaults.COMPILE_DEFAULTS` (loss, metrics, peak
  learning rate);
- `serving`: the `tf.Module` that `keras_llm.export` serves it with
  (`"module:Class"`, None where the task does not export) and the
  `export` settings that module takes;
- `hugging_face`: the Hugging Face architectures of all its builders;
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
llama = keras_llm.build_llama("llama_tiny", num_layers=1)
assert registry.get_task(llama).name == "causal_lm"
assert registry.get_builder(llama).name == "build_llama"
task, builder = registry.checkpoint_builder("Qwen2ForCausalLM")
assert (task.name, builder.name) == ("causal_lm", "build_llama")
```
"""

import dataclasses
import importlib

# Settings of `keras_llm.export` that the decoding exports take.
GENERATION_SETTINGS = (
    "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_token_ids", "jit_compile",
)


def _resolve(reference):
    """The object a `"module:name"` string names, imported on first use."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class Builder:
    """One builder of a task's models, and the checkpoints they are.

    `function` is the builder (`"module:function"`), `model` the class of
    the models it returns (`"module:Class"`), `hugging_face` the Hugging
    Face architectures its checkpoints are: `from_pretrained` reads each,
    `save_pretrained` writes the first (or, where one builder makes several
    architectures' models, the one its checkpoint family picks).
    """

    function: str
    model: str
    hugging_face: tuple = ()

    @property
    def name(self):
        """The builder's name in `keras_llm` (`"build_gpt"`)."""
        return self.function.partition(":")[2]

    def resolve(self, field):
        """The object a `"module:name"` field names, imported on first use."""
        return _resolve(getattr(self, field))


@dataclasses.dataclass(frozen=True)
class Task:
    """One task's entry: see the module docstring for each field."""

    name: str
    description: str  # what messages call such a model ("a causal LM")
    builders: tuple  # `Builder`s, the default first
    compile: str
    serving: str = None
    export_settings: tuple = ()
    alias: str = None
    specials: str = "none"  # "causal_lm", "seq2seq" or "bert": see `special_tokens`

    @property
    def builder(self):
        """The default builder, `"module:function"`."""
        return self.builders[0].function

    @property
    def hugging_face(self):
        """The Hugging Face architectures of all the task's builders."""
        return tuple(a for builder in self.builders for a in builder.hugging_face)

    def builder_names(self):
        """`"keras_llm.build_gpt or keras_llm.build_llama"`: the builders, for messages."""
        return " or ".join(f"keras_llm.{builder.name}" for builder in self.builders)

    def resolve(self, field):
        """The object a `"module:name"` field names, imported on first use."""
        return _resolve(getattr(self, field))


_BERT_MODEL = "keras_llm.models.task_model:TaskModel"

TASKS = {
    task.name: task
    for task in (
        Task(
            "causal_lm", "a causal LM",
            (
                Builder("keras_llm.models.gpt:build_gpt", "keras_llm.models.gpt:GPT",
                        ("GPT2LMHeadModel", "GPT2Model")),
                Builder("keras_llm.models.llama:build_llama", "keras_llm.models.llama:Llama",
                        ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")),
            ),
            "causal_lm", serving="keras_llm.export.chat:ChatServing",
            export_settings=GENERATION_SETTINGS + ("chat_template",), specials="causal_lm",
        ),
        Task(
            "seq2seq_lm", "a seq2seq model",
            (Builder("keras_llm.models.seq2seq:build_seq2seq",
                     "keras_llm.models.seq2seq:Seq2SeqTransformer",
                     ("BartForConditionalGeneration", "BartModel")),),
            "seq2seq_lm", serving="keras_llm.export.decoding:Seq2SeqServing",
            export_settings=GENERATION_SETTINGS, specials="seq2seq",
        ),
        Task(
            "encoder", "a BERT encoder",
            (Builder("keras_llm.models.bert:build_bert", _BERT_MODEL, ("BertModel",)),),
            "none", alias="backbone", specials="bert",
        ),
        Task(
            "masked_lm", "a masked LM",
            (Builder("keras_llm.models.bert_heads:build_bert_pretrainer", _BERT_MODEL,
                     ("BertForPreTraining", "BertForMaskedLM")),),
            "bert_pretraining", serving="keras_llm.export.masked_lm:MaskedLMServing",
            export_settings=("top_k",), specials="bert",
        ),
        Task(
            "classifier", "a classifier",
            (Builder("keras_llm.models.bert_heads:build_bert_classifier", _BERT_MODEL,
                     ("BertForSequenceClassification",)),),
            "classification", serving="keras_llm.export.labelled:ClassifierServing",
            export_settings=("label_names",), alias="classify", specials="bert",
        ),
        Task(
            "tagger", "a tagger",
            (Builder("keras_llm.models.bert_heads:build_bert_tagger", _BERT_MODEL,
                     ("BertForTokenClassification",)),),
            "token_tagging", serving="keras_llm.export.labelled:TaggerServing",
            export_settings=("label_names",), alias="tag", specials="bert",
        ),
        Task(
            "question_answerer", "a question answerer",
            (Builder("keras_llm.models.bert_heads:build_bert_question_answerer", _BERT_MODEL,
                     ("BertForQuestionAnswering",)),),
            "question_answering",
            serving="keras_llm.export.question_answering:QuestionAnswererServing",
            export_settings=("max_answer_length", "doc_stride", "max_question_length"),
            alias="qa", specials="bert",
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



def get_builder(model):
    """The `Builder` that made `model`: of its task's builders, the one whose model class it is.

    Raises:
        ValueError: the model's task is unknown, or it is of none of the
            task's builders' classes.
    """
    task = get_task(model)
    for builder in task.builders:
        if isinstance(model, builder.resolve("model")):
            return builder
    raise ValueError(
        f"`model` says it is {task.description} (task {task.name!r}) but is not a model of "
        f"{task.builder_names()}. Received: model={getattr(model, 'name', model)!r} of class "
        f"{type(model).__name__}"
    )


def checkpoint_builder(architecture):
    """`(Task, Builder)` whose checkpoints are the Hugging Face `architecture`, or None."""
    return next(
        ((task, builder) for task in TASKS.values() for builder in task.builders
         if architecture in builder.hugging_face),
        None,
    )

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
    # Llama-family tokenizers that declare `add_bos_token`: a prompt starts with it.
    "bos_token_id": ("target", ("added_bos_token_id",)),
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
    A GPT: `end_token_id` (stop token and empty-prompt start),
    `pad_token_id` (else the end token) and `bos_token_id` (the token a
    prompt starts with, where the tokenizer's `added_bos_token_id` has
    one). BERT's tasks: `cls_token_id`, `sep_token_id`, `pad_token_id`,
    `mask_token_id`. A special in `needed`
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
