"""`Chat` and `chat_prompt` against the template rendered by Jinja and the plain `Generator`."""

import jinja2
import keras
import pytest

import keras_llm
from keras_llm.generation import Generator
from keras_llm.generation.chat import Chat, chat_prompt, check_messages, end_of_turn_ids

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}|{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=128,
                               tokenizer=keras_llm.tokenizers.ByteTokenizer())


@pytest.mark.slow  # decodes two replies, ~5 s
def test_a_chat_streams_the_generators_reply_and_keeps_the_conversation(model):
    tokenizer = model.tokenizer
    stops = [tokenizer.end_token_id, ord("|")]  # the end token; "|", one byte, ends a turn
    assert end_of_turn_ids(tokenizer, TEMPLATE) == stops
    chat = Chat(model, system="Be brief.", chat_template=TEMPLATE, max_new_tokens=11, chunk=4)
    reference = jinja2.Template(TEMPLATE)
    for turn in ("Hi", "And then?"):
        prompt = reference.render(messages=chat.messages + [{"role": "user", "content": turn}],
                                  add_generation_prompt=True)
        expected = Generator(model).generate(prompt, 11, stop_token_ids=stops)
        pieces = []
        assert chat.send(turn, on_text=pieces.append) == expected
        assert "".join(pieces) == expected and all(pieces)
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert chat_prompt(chat.messages, tokenizer, TEMPLATE, add_generation_prompt=False) == (
        reference.render(messages=chat.messages, add_generation_prompt=False))


def test_bad_conversations_are_refused_by_name():
    for messages, match in [
        ([], r"`messages` must be a non-empty list"),
        ("Hi", r"`messages` must be a non-empty list"),
        ([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}],
         r"`messages\[1\]` must be a dict with a 'role' \(one of system, user, assistant\).*'tool'"),
        ([{"role": "user", "content": 3}], r"`messages\[0\]`.*string 'content'"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_messages(messages)


@pytest.mark.slow  # builds a model
def test_missing_templates_and_long_conversations_are_refused_by_name(model):
    with pytest.raises(ValueError, match=r"A chat needs the checkpoint's chat template.*ByteTokenizer"):
        Chat(model)
    with pytest.raises(ValueError, match=r"`chat_template` is not a Jinja template"):
        chat_prompt([{"role": "user", "content": "a"}], model.tokenizer, "{% for %}")
    chat = Chat(model, chat_template=TEMPLATE)
    with pytest.raises(ValueError, match=r"The conversation is \d+ tokens, and the model reads at most 128"):
        chat.send("x" * 200)
    assert chat.messages == []  # nothing kept of a refused turn
