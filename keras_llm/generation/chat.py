"""Chat with a decoder: a conversation laid out by the checkpoint's chat template, replies streamed.

A chat checkpoint declares how a conversation becomes its prompt as a Jinja
template (`tokenizer.chat_template` in Hugging Face directories and GGUF
files). `render_template` renders it as `transformers`' `apply_chat_template`
does (the same Jinja settings, so the same text, tested), `chat_prompt` checks
a conversation and lays it out, and `Chat` keeps a conversation and decodes
each reply a few tokens at a time until the end-of-turn token. The export of
a chat model lays the same template out in graph ops
(`keras_llm.export.chat`).
"""

import jinja2.exceptions
import jinja2.sandbox
import numpy as np

from keras_llm.generation.generator import Generator

# The roles a conversation may use, as Hugging Face's chat templates name them.
ROLES = ("system", "user", "assistant")


def render_template(template, bos_token="", eos_token=""):
    """A Jinja chat template as a function `(messages, add_generation_prompt) -> str`.

    Rendered as `transformers`' `apply_chat_template` renders it: a
    sandboxed environment with `trim_blocks` and `lstrip_blocks`, the
    `raise_exception` function, and the tokenizer's `bos_token` and
    `eos_token` texts. (jinja2 is what transformers renders with; writing a
    template engine by hand would only add ways to differ from it.)

    Example:

    ```python
    from keras_llm.generation.chat import render_template

    render = render_template("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}")
    assert render([{"role": "user", "content": "Hi"}], True) == "[user] Hi"
    ```
    """

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    try:
        compiled = environment.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as error:
        raise ValueError(
            f"`chat_template` is not a Jinja template: {error} (line {error.lineno})"
        ) from None
    return lambda messages, add_generation_prompt: compiled.render(
        messages=messages, add_generation_prompt=add_generation_prompt,
        bos_token=bos_token, eos_token=eos_token,
    )


def template_of(tokenizer, chat_template=None):
    """`chat_template` if given, else the tokenizer's; an error naming both if neither has one."""
    template = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        raise ValueError(
            "A chat needs the checkpoint's chat template: pass `chat_template=` (a Jinja string) "
            "or use a tokenizer that carries one (`tokenizer.chat_template`, read from a Hugging "
            f"Face directory or a GGUF file). Received: chat_template={chat_template!r}, "
            f"tokenizer={type(tokenizer).__name__} with chat_template="
            f"{getattr(tokenizer, 'chat_template', None)!r}"
        )
    return template


def check_messages(messages):
    """`messages` as a list of `{"role", "content"}` dicts; an error naming the first bad one."""
    if isinstance(messages, (str, bytes, dict)) or not hasattr(messages, "__len__") or not messages:
        raise ValueError(
            "`messages` must be a non-empty list of {'role': ..., 'content': ...} dicts. "
            f"Received: messages={messages!r}"
        )
    for n, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise ValueError(
                f"`messages[{n}]` must be a dict with a 'role' (one of {', '.join(ROLES)}) and a "
                f"string 'content'. Received: {message!r}"
            )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def chat_prompt(messages, tokenizer=None, chat_template=None, add_generation_prompt=True):
    """The text a chat model continues: `messages` laid out by the chat template.

    Args:
        messages: A list of `{"role": "system" | "user" | "assistant",
            "content": str}`.
        tokenizer: The model's tokenizer: its `chat_template` (unless one
            is given) and its `bos_token`/`eos_token` texts, if any.
        chat_template: A Jinja template; default: the tokenizer's.
        add_generation_prompt: Whether to end with the assistant's turn
            opening (the reply is asked for).

    Returns:
        The prompt, a string, equal to `transformers`'
        `apply_chat_template(messages, tokenize=False, ...)`.
    """
    render = render_template(template_of(tokenizer, chat_template),
                             *(_token_text(tokenizer, n) for n in ("bos_token", "eos_token")))
    return render(check_messages(messages), add_generation_prompt)


def _token_text(tokenizer, name):
    return getattr(tokenizer, name, None) or ""


def end_of_turn_ids(tokenizer, chat_template=None):
    """The tokens that end the assistant's turn: the end token, and the text the template writes
    after an assistant message when it is one token (ChatML's `<|im_end|>`)."""
    stops = [] if getattr(tokenizer, "end_token_id", None) is None else [int(tokenizer.end_token_id)]
    render = render_template(template_of(tokenizer, chat_template),
                             *(_token_text(tokenizer, n) for n in ("bos_token", "eos_token")))
    mark = "\u27e6keras_llm\u27e7"
    try:
        after = render([{"role": "user", "content": "x"}, {"role": "assistant", "content": mark}],
                       False).rpartition(mark)[2].strip()
    except jinja2.exceptions.TemplateError:
        after = ""
    ids = np.asarray(tokenizer(after)).reshape(-1).tolist() if after else []
    if len(ids) == 1 and ids[0] not in stops:
        stops.append(ids[0])
    return stops


class Chat:
    """A conversation with a chat model: each `send` adds the user's text and decodes the reply.

    The conversation is laid out by the chat template anew for every reply
    (as `transformers`' chat pipeline does); the reply is decoded a few
    tokens at a time (`chunk`) and handed to `on_text` as it grows, and ends
    at the end-of-turn token (`end_of_turn_ids`), at `max_new_tokens`, or
    where the context is full.

    Args:
        model: A decoder (a GPT or a Llama-family model).
        tokenizer: Default: the one the model carries.
        system: A system message to start the conversation with, or None.
        chat_template: Default: the tokenizer's.
        max_new_tokens: The most tokens of one reply.
        chunk: Tokens decoded per step of the stream.
        **sampling: `Generator.generate`'s `temperature`, `top_k`, `top_p`
            and `seed`.

    Example:

    ```python
    import keras_llm
    from keras_llm.generation.chat import Chat

    model = keras_llm.build_gpt("gpt_nano", num_layers=1,
                                tokenizer=keras_llm.tokenizers.ByteTokenizer())
    chat = Chat(model, chat_template="{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n"
                                     "{% endfor %}assistant: ", max_new_tokens=4)
    reply = chat.send("Hi")
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]
    ```
    """

    def __init__(self, model, tokenizer=None, *, system=None, chat_template=None,
                 max_new_tokens=256, chunk=8, **sampling):
        self._generator = Generator(model, tokenizer)
        self.tokenizer = self._generator.tokenizer
        self.chat_template = template_of(self.tokenizer, chat_template)
        self.stop_token_ids = end_of_turn_ids(self.tokenizer, self.chat_template)
        self.messages = [] if system is None else check_messages([{"role": "system", "content": system}])
        self.max_new_tokens = max_new_tokens
        self.chunk = chunk
        self.sampling = sampling

    def send(self, text, on_text=None):
        """Adds the user's `text`, decodes the reply (calling `on_text(new_text)` as it grows),
        adds it to `messages` and returns it."""
        messages = check_messages(self.messages + [{"role": "user", "content": text}])
        prompt = chat_prompt(messages, self.tokenizer, self.chat_template)
        prompt_ids = [int(i) for i in np.asarray(self.tokenizer(prompt)).reshape(-1)]
        context = self._generator.max_sequence_length
        if len(prompt_ids) >= context:
            raise ValueError(
                f"The conversation is {len(prompt_ids)} tokens, and the model reads at most "
                f"{context}: start a new `Chat` (or drop earlier messages from `chat.messages`)."
            )
        reply_ids, shown = [], ""
        while len(reply_ids) < self.max_new_tokens and len(prompt_ids) + len(reply_ids) < context:
            count = min(self.chunk, self.max_new_tokens - len(reply_ids),
                        context - len(prompt_ids) - len(reply_ids))
            new = self._generator.generate(prompt_ids + reply_ids, count,
                                           stop_token_ids=self.stop_token_ids, **self.sampling)
            new = [int(i) for i in new]
            stopped = [i for i, t in enumerate(new) if t in self.stop_token_ids]
            reply_ids += new[: stopped[0]] if stopped else new
            text_now = self._text(reply_ids)
            if on_text is not None and text_now != shown and not text_now.endswith("\ufffd"):
                on_text(text_now[len(shown):] if text_now.startswith(shown) else text_now)
                shown = text_now
            if stopped or len(new) < count:
                break
        reply = self._text(reply_ids)
        if on_text is not None and reply != shown:
            on_text(reply[len(shown):] if reply.startswith(shown) else reply)
        self.messages = messages + [{"role": "assistant", "content": reply}]
        return reply

    def _text(self, ids):
        if not ids:
            return ""
        text = self.tokenizer.detokenize(np.asarray([ids], np.int32))
        text = np.asarray(text).reshape(-1)[0]
        return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
