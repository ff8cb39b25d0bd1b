"""Which checkpoint family maps which builder: the family modules' parts joined to the task registry.

A family module (`_bert.py`, `_gpt2.py`, `_bart.py`, `_llama.py`) says which
parts each Hugging Face architecture's file has (`FILE_PARTS`) and which
parts each keras_llm task's model has (`TASK_PARTS`); which task and builder
an architecture is, and which architecture a builder writes, is declared
once, in `keras_llm.models.registry` (`Builder.hugging_face`: the first is
the one written, unless the family picks one by the model's configuration).
"""

from keras_llm.models import registry
from keras_llm.pretrained import _bart, _bert, _gpt2, _llama

# model_type -> the module that maps that family, for `from_pretrained`'s
# table-driven reader (Llama's three model types have a reader of their own,
# `_llama.model_from_hf`, which the GGUF reader shares).
FAMILIES = {family.MODEL_TYPE: family for family in (_bert, _gpt2, _bart)}
# Every family `save_pretrained` writes.
WRITTEN = (*FAMILIES.values(), _llama)

# Tasks whose head has classes (registry names).
LABELLED = ("classifier", "tagger")


def public_name(task):
    """A task's name in `from_pretrained(task=...)`: its alias ("classify"), else its name."""
    return task.alias or task.name


def architectures(family):
    """{Hugging Face architecture: registry `Task`} for the architectures `family` reads."""
    return {
        architecture: task
        for task in registry.TASKS.values()
        for architecture in task.hugging_face
        if architecture in family.FILE_PARTS
    }


def tasks(family):
    """{public task name: registry `Task`} for the tasks `family` builds, in its order."""
    return {public_name(registry.TASKS[name]): registry.TASKS[name] for name in family.TASK_PARTS}


def family_of(builder):
    """The family module whose checkpoints a registry `Builder`'s models are, or None."""
    return next((f for f in WRITTEN if set(builder.hugging_face) & set(f.FILE_PARTS)), None)


def check_label_names(label_names):
    """`label_names` as a list, checked to be distinct strings."""
    if (
        isinstance(label_names, (str, bytes))
        or not isinstance(label_names, (list, tuple))
        or not all(isinstance(n, str) for n in label_names)
        or len(set(label_names)) != len(label_names)
    ):
        raise ValueError(
            "`label_names` must be a list of distinct strings. "
            f"Received: label_names={label_names!r}"
        )
    return list(label_names)
