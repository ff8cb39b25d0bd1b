"""Export: SavedModels in TF Serving's layout that serve raw text with core TensorFlow ops.

`export(model, path)` looks the model's task up in
`keras_llm.models.registry`, which names the serving module of each kind:

- `decoding`: a GPT's and a seq2seq model's (`CausalLMServing`,
  `Seq2SeqServing`);
- `labelled`: a classifier's and a tagger's (`ClassifierServing`,
  `TaggerServing`);
- `masked_lm`: a masked LM's (`MaskedLMServing`);
- `question_answering`: a question answerer's (`QuestionAnswererServing`);
- `serving`: what they share (the `Serving` base class,
  `serving_tokenizer`, BERT's inputs);
- `versions`: the versioned, atomic writer of `path/VERSION/`.

Adding a kind of serving means a module with a `Serving` subclass and its
task's `serving=` entry in the registry.
"""

from keras_llm.export.decoding import GENERATION_DEFAULTS
from keras_llm.export.serving import serving_tokenizer
from keras_llm.export.versions import write_version
from keras_llm.models import registry
from keras_llm.models.task_model import tokenizer_of
from keras_llm.training.lora import lora_spec, merge_lora


def export(
    model,
    path,
    tokenizer=None,
    *,
    version=None,
    overwrite=False,
    label_names=None,
    max_new_tokens=None,
    temperature=None,
    top_k=None,
    top_p=None,
    seed=None,
    stop_token_ids=None,
    max_answer_length=None,
    doc_stride=None,
    max_question_length=None,
    jit_compile=False,
    chat_template=None,
):
    """Exports `model` with its tokenizer as a SavedModel that TF Serving serves from text.

    Writes `path/VERSION/` (TF Serving's layout: `path` is the model's base
    path, `VERSION` an integer, by default one more than the largest there).
    The version is written into a temporary directory beside it (a name TF
    Serving ignores) and renamed into place, so a server watching `path`
    never loads a half-written version; what killed exports left in `path`
    (of any version) is removed by the next export there. The version gets
    the modes of the user's umask (0755 directories, 0644 files under umask
    022), so a TF Serving process of another user can read it. An existing
    version is an error unless `overwrite=True`.

    The serving module is the one the model's task names in
    `keras_llm.models.registry` (`model.task`). The SavedModel holds the
    weights, the tokenizer (its core-ops twin, see `serving_tokenizer`) and
    the decoding loop, and uses only ops that TensorFlow itself registers:
    it loads with nothing but `tensorflow` installed, in Python or in any TF
    Serving build. Its signatures (table in `saved_models/README.md`):

    - a GPT (`decoding.CausalLMServing`): `serving_default` (`text` ->
      `generated_text`, `generated_ids`, `generated_length`, decoding with
      the defaults given here), `generate` (the same with per-row
      `max_new_tokens`, `temperature`, `top_k`, `top_p`, `seed`: TF Serving
      cannot leave out a signature input, so the settings are a second
      signature), `generate_ids` (from `token_ids` and `padding_mask`) and
      `logits`. Each setting has one value per text, or one value that
      applies to every text; any other number of values fails with
      `INVALID_ARGUMENT` naming the setting. No texts give empty outputs.
      Ids outside the vocabulary, and `logits` input longer than the
      context, fail with `INVALID_ARGUMENT` naming `token_ids`.
    - a seq2seq model (`decoding.Seq2SeqServing`, one tokenizer for source
      and target): the same signatures with the texts as sources: each is
      cut to `max_sequence_length - 1` tokens and ended with the source end
      token, as `keras_llm.data.seq2seq_dataset` trains, and
      `generated_text` is the target written from the decoder's start token
      (`Generator` decodes the same way); `logits` takes the model's four
      inputs.
    - a masked LM (`masked_lm.MaskedLMServing`): `serving_default` (`text`
      with `[MASK]` marking blanks -> `mask_positions`, and per blank the
      `top_k` most likely `top_token_ids`, `top_tokens`,
      `top_probabilities`; `filled_text`) and `fill_ids`.
    - a classifier (`labelled.ClassifierServing`): `serving_default` (`text`
      -> `probabilities`, `label_id`, `label`) and `classify_ids` (also
      `logits`).
    - a tagger (`labelled.TaggerServing`): `serving_default` (`text` -> per
      word `words`, `tags`, `tag_ids`, `scores`, and `num_words`) and
      `classify_ids` (per token). Words are split at Unicode whitespace
      (where BERT's tokenizer splits) and tagged by their first piece, as
      `keras_llm.data.token_tagging_dataset` trains; a word of no piece, or
      past the context, gets tag `""`, tag id -1 and score 0.
    - a question answerer (`question_answering.QuestionAnswererServing`):
      `serving_default` (`question`, `context` -> `answer`, `score`,
      `start`, `end`: `keras_llm.evaluation.answer_questions`) and
      `answer_ids`.

    A GPT's or a seq2seq model's decoding loop is by default a plain graph,
    which every TensorFlow runtime and TF Serving build runs as it is. With
    `jit_compile=True` the loop is XLA-compiled per shape bucket
    (`Generator.bucket_shapes`), each bucket compiling on its first request;
    the SavedModel then needs XLA where it runs (TF Serving on a CPU:
    `--xla_cpu_compilation_enabled=true`; TF Serving's GPU images have
    shipped without XLA's GPU compiler, tensorflow/serving#2214).

    Text longer than the model's context is truncated: a classifier, a
    tagger or a masked LM keeps the first `max_sequence_length - 2` tokens;
    a GPT prompt keeps its last tokens, leaving room for `max_new_tokens`.
    An empty GPT prompt starts from the end token. Generated text is always
    valid UTF-8.

    A model with LoRA adapters (`keras_llm.training.enable_lora`) is served
    as `keras_llm.training.merge_lora` gives it: a copy with the adapters
    folded into its kernels, so serving costs what the base model does;
    `model` keeps its adapters.

    Args:
        model: A model whose task exports (`registry.TASKS` entries with a
            `serving`): from `keras_llm.build_gpt`, `keras_llm.build_llama`,
            `keras_llm.build_seq2seq`, `keras_llm.build_bert_pretrainer`,
            `keras_llm.build_bert_classifier`, `keras_llm.build_bert_tagger`
            or `keras_llm.build_bert_question_answerer`.
        path: The model's base directory, e.g. `"saved_models/gpt_nano"`
            (created if needed; not a file).
        tokenizer: The tokenizer the model was trained with; default: the
            one it carries (`model.tokenizer`). One given here is checked
            against the model (`keras_llm.models.task_model.check_tokenizer`:
            the model's vocabulary size, or for a model that only reads ids
            a size that pads up to it; the carried tokenizer's special
            tokens).
        version: The version number; default: the next free one.
        overwrite: Whether an existing `version` may be replaced.
        label_names: A classifier's class names, a tagger's tag names
            (default `"0"`, `"1"`, ...).
        max_new_tokens, temperature, top_k, top_p, seed: A GPT's or a
            seq2seq model's `serving_default` settings; defaults: 64 (fewer
            if the context is shorter), greedy (0.0), 0 (no top-k), 1.0 (no
            top-p), 0. For a masked LM, `top_k` is the number of fills per
            blank (default 5, as in Hugging Face's fill-mask pipeline).
        stop_token_ids: A GPT's or seq2seq model's stop tokens, ids of its
            vocabulary; default: its end token
            (`keras_llm.models.registry.special_tokens`), if any.
        max_answer_length, doc_stride, max_question_length: A question
            answerer's settings, in tokens; defaults: 30 (as Hugging Face's
            run_qa.py), and `doc_stride` and `max_question_length` a third
            and a sixth of the window (128 and 64 for a model of 384 tokens
            or more, as Hugging Face's pipeline; see
            `question_answering.window_settings`). Windows are
            `min(384, max_sequence_length)` tokens; `doc_stride` must be
            less than `window - 3 - max_question_length`.
        jit_compile: A GPT's or seq2seq model's decoding loop XLA-compiled
            per shape bucket (see above); default False: a plain graph.
        chat_template: A decoder's chat template (Jinja, as Hugging Face
            checkpoints write it); default: the tokenizer's
            `chat_template`, if any. With one the export also has a `chat`
            signature (`roles` and `contents` in, the assistant's reply
            out; `keras_llm.export.chat.ChatServing`), the template laid
            out in core ops; a template that is not a fixed text around
            each message by role is refused by name. The default stop
            tokens then include the end-of-turn token.

    Returns:
        The path of the written version directory.

    Example:

    ```python
    import tempfile
    import tensorflow as tf
    import keras_llm

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, tokenizer=tokenizer)
    base = tempfile.mkdtemp() + "/gpt_nano"
    path = keras_llm.export(model, base, max_new_tokens=8)  # with model.tokenizer
    assert path.endswith("/1")
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(text=tf.constant(["Hello"]))
    assert out["generated_ids"].shape[0] == 1 and out["generated_length"].numpy()[0] <= 8
    ```
    """
    task = _exported_task(model)
    settings = dict(
        label_names=label_names, max_new_tokens=max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, seed=seed, stop_token_ids=stop_token_ids,
        max_answer_length=max_answer_length, doc_stride=doc_stride,
        max_question_length=max_question_length, jit_compile=jit_compile or None,
        chat_template=chat_template,
    )
    _refuse_other_settings(task, settings)
    if not isinstance(jit_compile, bool):
        raise ValueError(f"`jit_compile` must be True or False. Received: jit_compile={jit_compile!r}")
    settings["jit_compile"] = jit_compile
    tokenizer = _tokenizer(model, tokenizer)
    if lora_spec(model) is not None:
        model = merge_lora(model)  # no adapter matmuls per served call
    module = task.resolve("serving").from_settings(
        model, tokenizer, **{name: settings[name] for name in task.export_settings}
    )
    return write_version(module, path, version, overwrite)


def _exported_task(model):
    """The registry's entry of `model`'s task, if it is a kind that exports."""
    name = getattr(model, "task", None)
    task = registry.TASKS.get(name) if isinstance(name, str) else None
    if task is not None and task.serving:
        return task
    kinds = [
        f"{t.description} from {t.builder_names()}"
        for t in registry.TASKS.values() if t.serving
    ]
    raise ValueError(
        f"`model` must be {_listed(kinds, 'or')}. Received: model={getattr(model, 'name', model)!r}"
        + (f" (task {name!r})" if name else " (no `task`: a plain keras.Model, or a .keras file "
           "saved by an earlier keras_llm; build it again and copy the weights)")
    )


def _tokenizer(model, tokenizer):
    """The tokenizer given (checked against the model), else the one the model carries."""
    if tokenizer is not None:
        serving_tokenizer(tokenizer)  # one that cannot be served is named first
    return tokenizer_of(
        model, tokenizer,
        "An export serves text, so it needs the model's tokenizer, and the model carries "
        "none (`model.tokenizer` is None): pass `tokenizer=` (the one the model was "
        "trained with), or build the model with `tokenizer=` (or set `model.tokenizer`) "
        "before saving it.",
    )


def _plural(task):
    """"a causal LM" -> "causal LMs"."""
    return task.description.split(" ", 1)[1] + "s"


def _refuse_other_settings(task, settings):
    """An error naming every setting given that is for other kinds of models."""
    others = {
        name: value for name, value in settings.items()
        if value is not None and name not in task.export_settings
    }
    if others:
        takers = {
            name: _listed([_plural(t) for t in registry.TASKS.values() if name in t.export_settings])
            for name in others
        }
        raise ValueError(
            f"{' and '.join(others)} {'is' if len(others) == 1 else 'are'} for other models "
            f"({'; '.join(f'{name}: {kinds}' for name, kinds in takers.items())}); this model is "
            f"{task.description}. Received: "
            + ", ".join(f"{name}={value!r}" for name, value in others.items())
        )


def _listed(words, conjunction="and"):
    """"a", "a and b", "a, b and c" (or "a, b or c")."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


__all__ = ["GENERATION_DEFAULTS", "export", "serving_tokenizer"]
