"""A checkpoint's chat template in core TensorFlow ops, for a chat model's export.

Hugging Face checkpoints declare their chat format as a Jinja template
(`tokenizer.chat_template`); TF Serving has no Jinja. Most chat templates
(ChatML as SmolLM2 and Qwen2 write it, Mistral's and Zephyr's) render each
message as a fixed text before and after its content, chosen by its role,
with a different text before the first message (a begin-of-text token, a
default system prompt) and a fixed generation prompt at the end. This module
finds those texts by rendering marked conversations through the template,
then checks the layout against the template on every conversation of up to
three messages of the known roles, with contents that a template could trim
or escape; a template that the layout does not reproduce on any of them (one
that trims or rewrites contents, counts turns, or numbers messages) is
refused by name. `chat_texts` lays out a batch of conversations in graph ops.
"""

import dataclasses
import itertools

import tensorflow as tf

from keras_llm._graph import graph_function
from keras_llm.export.decoding import CausalLMServing
from keras_llm.generation.chat import ROLES, end_of_turn_ids, render_template, template_of

# Contents of the probe conversations: whitespace a template could strip,
# characters a template could escape, text on several lines.
_PROBE_CONTENTS = (
    "  Hi there \n", "a < b & 'c' \"d\"", "two\nlines\t", "é 中 🙂",
    "\u3000\u00a0wide\u2028 spaces\u2003\r\n",
)


# What Python's str.strip (Jinja's `trim`) strips, as an RE2 class: RE2's \s is ASCII only.
_SPACE = r"[\s\p{Zs}\x{0b}\x{1c}-\x{1f}\x{85}\x{2028}\x{2029}]"


@dataclasses.dataclass(frozen=True)
class ChatLayout:
    """Fixed texts around each message, by role: what a chat template renders.

    A conversation `[(r0, c0), (r1, c1), ...]` renders as
    `first_prefix[r0] + c0 + suffix[r0] + prefix[r1] + c1 + suffix[r1] + ...`,
    then `generation_prompt` when the assistant's reply is asked for. With
    `trim`, each content is stripped of surrounding whitespace first (Jinja's
    `trim`, as Llama 3's template applies it).
    """

    first_prefix: dict
    prefix: dict
    suffix: dict
    generation_prompt: str
    trim: bool = False

    def render(self, messages, add_generation_prompt=True):
        """`messages` (dicts with "role" and "content") as text, in Python."""
        texts = [
            (self.first_prefix if i == 0 else self.prefix)[m["role"]]
            + (m["content"].strip() if self.trim else m["content"]) + self.suffix[m["role"]]
            for i, m in enumerate(messages)
        ]
        return "".join(texts) + (self.generation_prompt if add_generation_prompt else "")


def chat_layout(render, name="chat_template"):
    """The `ChatLayout` of a template, or an error if no fixed layout renders it.

    Args:
        render: The template as a function `(messages, add_generation_prompt)
            -> str` (for example `transformers`' `apply_chat_template` with
            `tokenize=False`, or `keras_llm`'s own rendering of the
            checkpoint's template).
        name: What messages call the template.

    Returns:
        A `ChatLayout` that renders every probe conversation as `render` does.

    Example:

    ```python
    from keras_llm.export.chat import chat_layout

    def chatml(messages, add_generation_prompt):
        text = "".join(f"<|im_start|>{m['role']}\\n{m['content']}<|im_end|>\\n" for m in messages)
        return text + ("<|im_start|>assistant\\n" if add_generation_prompt else "")

    layout = chat_layout(chatml)
    assert layout.generation_prompt == "<|im_start|>assistant\\n"
    assert layout.render([{"role": "user", "content": "Hi"}]) == chatml(
        [{"role": "user", "content": "Hi"}], True)
    ```
    """
    marks = ("\u27e6keras_llm 0\u27e7", "\u27e6keras_llm 1\u27e7")

    def rendered(messages, add_generation_prompt=False):
        try:
            return render(messages, add_generation_prompt)
        except Exception as error:  # the template's own refusal, e.g. roles that must alternate
            raise ValueError(
                f"`{name}` cannot be served in core TensorFlow ops: it refuses the "
                f"conversation {messages!r} ({type(error).__name__}: {error}); a served chat "
                f"takes any sequence of the roles {', '.join(ROLES)}"
            ) from None

    def split(text, messages):
        parts = [text]
        for mark in marks[: len(messages)]:
            head, found, tail = parts[-1].partition(mark)
            if not found or mark in tail:
                raise ValueError(
                    f"`{name}` cannot be served in core TensorFlow ops: it does not write each "
                    f"message's content once, as it was given. Received: {messages!r} rendered "
                    f"as {text!r}"
                )
            parts[-1:] = [head, tail]
        return parts

    first_prefix, prefix, suffix = {}, {}, {}
    for role in ROLES:
        one = [{"role": role, "content": marks[0]}]
        first_prefix[role], suffix[role] = split(rendered(one), one)
    for role in ROLES:
        two = [{"role": "user", "content": marks[0]}, {"role": role, "content": marks[1]}]
        _, between, _ = split(rendered(two), two)
        prefix[role] = between[len(suffix["user"]):] if between.startswith(suffix["user"]) else None
    one = [{"role": "user", "content": marks[0]}]
    without, with_prompt = rendered(one), rendered(one, True)
    generation_prompt = with_prompt[len(without):] if with_prompt.startswith(without) else None
    complete = None not in prefix.values() and generation_prompt is not None
    probes = [(messages, prompt, rendered(messages, prompt)) for messages, prompt in _probes()]
    for trim in (False, True):  # the texts as given, else each content trimmed (Llama 3)
        layout = ChatLayout(first_prefix, prefix, suffix, generation_prompt, trim)
        if complete and all(layout.render(m, p) == text for m, p, text in probes):
            return layout
    layout = dataclasses.replace(layout, trim=False)
    for messages, add_generation_prompt, expected in probes:
        got = layout.render(messages, add_generation_prompt) if complete else None
        if got != expected:
            raise ValueError(
                f"`{name}` cannot be served in core TensorFlow ops: it is not a fixed text "
                f"before and after each message by role, around each content as given or "
                f"trimmed (it rewrites or numbers messages). For {messages!r} (add_generation_prompt={add_generation_prompt}) it "
                f"renders {expected!r}; fixed texts by role render {got!r}"
            )


def _probes():
    """Every conversation of one to three messages of `ROLES`, with and without the prompt."""
    for length in (1, 2, 3):
        for i, roles in enumerate(itertools.product(ROLES, repeat=length)):
            messages = [
                {"role": role, "content": _PROBE_CONTENTS[(i + j) % len(_PROBE_CONTENTS)]}
                for j, role in enumerate(roles)
            ]
            yield messages, True
            yield messages, False


def chat_texts(layout, roles, contents):
    """Conversations `[B, M]` laid out as `layout` says, with the generation prompt, in graph ops.

    Args:
        layout: A `ChatLayout`.
        roles: `[B, M]` strings, each one of `ROLES`, or `""` after a row's
            last message (rows of unequal length).
        contents: `[B, M]` strings, the messages' contents.

    Returns:
        `[B]` strings: the prompts the model continues.
    """
    roles = tf.convert_to_tensor(roles, tf.string)
    contents = tf.convert_to_tensor(contents, tf.string)
    tf.debugging.assert_equal(
        tf.shape(roles), tf.shape(contents),
        message="chat: `roles` and `contents` must have the same shape [conversations, messages]",
    )
    known = tf.constant(ROLES)
    matches = tf.equal(roles[..., None], known)  # [B, M, R]
    present = tf.not_equal(roles, "")
    tf.debugging.assert_equal(
        tf.reduce_all(tf.reduce_any(matches, -1) | ~present), True,
        message=f"chat: every role must be one of {', '.join(ROLES)} (or \"\" after a "
                "conversation's last message)",
    )
    has_messages = (tf.shape(roles)[0] == 0) | (tf.shape(roles)[1] > 0)
    in_order = tf.reduce_all(present[:, :1]) & tf.reduce_all(~present[:, 1:] | present[:, :-1])
    tf.debugging.assert_equal(
        has_messages & in_order, True,
        message="chat: every conversation needs at least one message, and its messages come "
                "first (\"\" roles only after them)",
    )
    role = tf.argmax(tf.cast(matches, tf.int32), axis=-1)  # [B, M]

    def by_role(texts):
        return tf.gather(tf.constant([texts[r] for r in ROLES]), role)

    first = tf.range(tf.shape(roles)[1]) == 0  # [M]
    before = tf.where(first, by_role(layout.first_prefix), by_role(layout.prefix))
    if layout.trim:
        contents = tf.strings.regex_replace(contents, f"^{_SPACE}+|{_SPACE}+$", "")
    pieces = tf.where(present, before + contents + by_role(layout.suffix), "")
    return tf.strings.reduce_join(pieces, axis=1) + layout.generation_prompt



_CONVERSATION_SPECS = [
    tf.TensorSpec([None, None], tf.string, name="roles"),
    tf.TensorSpec([None, None], tf.string, name="contents"),
]


class ChatServing(CausalLMServing):
    r"""Signatures of a chat model's export: a GPT's, plus `chat` (a conversation in, a reply out).

    `chat` takes `roles` and `contents`, `[B, M]` strings (roles "system",
    "user", "assistant"; a conversation shorter than `M` pads its roles with
    `""`), lays each conversation out as the checkpoint's chat template
    does, with the assistant's generation prompt (`chat_layout`,
    `chat_texts`), and decodes the reply with the export's settings until
    the end-of-turn token. Its outputs are `serving_default`'s:
    `generated_text` is the reply. Template, tokenizer and decoding are core
    TensorFlow ops.

    Example:

    ```python
    import tensorflow as tf
    import keras_llm
    from keras_llm.export.chat import ChatServing

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, tokenizer=tokenizer)
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    module = ChatServing.from_settings(model, tokenizer, chat_template=template, max_new_tokens=3)
    out = module.signatures()["chat"](tf.constant([["user"]]), tf.constant([["Hi"]]))
    assert int(out["generated_length"][0]) <= 3
    ```
    """

    def __init__(self, model, generator, defaults, stop_token_ids, jit_compile=False, layout=None):
        super().__init__(model, generator, defaults, stop_token_ids, jit_compile)
        self._layout = layout

    @classmethod
    def from_settings(cls, model, tokenizer, *, chat_template=None, stop_token_ids=None, **settings):
        """The template (default: the tokenizer's `chat_template`) checked and laid out.

        Without a template the export is a GPT's (`CausalLMServing`). The
        default stop tokens are the end token and the end-of-turn token:
        the assistant's message suffix when it is one token (ChatML's
        `<|im_end|>`).
        """
        if chat_template is None and getattr(tokenizer, "chat_template", None) is None:
            return CausalLMServing.from_settings(
                model, tokenizer, stop_token_ids=stop_token_ids, **settings)
        template = template_of(tokenizer, chat_template)
        token_text = lambda name: getattr(tokenizer, name, None) or ""
        layout = chat_layout(render_template(template, token_text("bos_token"), token_text("eos_token")))
        if stop_token_ids is None:
            stop_token_ids = end_of_turn_ids(tokenizer, template)
        plain = CausalLMServing.from_settings(model, tokenizer, stop_token_ids=stop_token_ids, **settings)
        return cls(model, plain._generator, plain._defaults, plain._stop_token_ids.numpy().tolist(),
                   settings.get("jit_compile", False), layout)

    @graph_function(input_signature=_CONVERSATION_SPECS)
    def chat(self, roles, contents):
        # The template writes the begin-of-text token itself (SmolLM2's does
        # not, Llama 3's does): the tokenizer's is not added again.
        return self._serve(chat_texts(self._layout, roles, contents), with_bos=False)

    def signatures(self):
        return {**super().signatures(), "chat": self.chat}
