"""The chat layout in core ops against the templates rendered by Jinja, as transformers does."""

import pytest
import tensorflow as tf

from keras_llm.export.chat import ROLES, chat_layout, chat_texts
from keras_llm.generation.chat import render_template

# SmolLM2-135M-Instruct's template, as its GGUF file declares it (ChatML with a default system
# prompt when the conversation has none).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Zephyr's: a begin token on the first message only, an end token after each.
ZEPHYR = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Llama 3's trims each content.
TRIMS = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# Llama 2's and Mistral's first versions refuse conversations whose roles do not alternate.
ALTERNATES = (
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    "{% endif %}[{{ message['role'] }}] {{ message['content'] }}{% endfor %}"
)
# Rewrites contents (escapes "&"): no fixed layout renders it.
ESCAPES = "{% for message in messages %}{{ message['content'] | replace('&', '&amp;') }}\n{% endfor %}"
# Numbers the turns: the text before a message depends on its position.
NUMBERS = "{% for message in messages %}{{ loop.index }}. {{ message['content'] }}\n{% endfor %}"

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! \n"},
     {"role": "user", "content": "  2 + 2 = ?"}],
    [{"role": "system", "content": "é 中 🙂"}, {"role": "user", "content": "a\n\nb"},
     {"role": "assistant", "content": "<b>x</b>"}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "\u2003\x0b tabs\tand\u00a0spaces \u3000\x1f"},
     {"role": "assistant", "content": " \n"}],
]


def jinja_render(template):
    return render_template(template, bos_token="<s>", eos_token="</s>")


@pytest.mark.slow  # imports transformers
def test_templates_render_as_transformers_renders_them():
    import tokenizers
    import transformers

    words = tokenizers.Tokenizer(tokenizers.models.WordLevel({"<s>": 0, "</s>": 1}, unk_token="<s>"))
    for template in (SMOLLM2, ZEPHYR, TRIMS, ESCAPES, NUMBERS):
        reference = transformers.PreTrainedTokenizerFast(
            tokenizer_object=words, bos_token="<s>", eos_token="</s>", chat_template=template)
        for messages in CONVERSATIONS:
            for prompt in (True, False):
                assert jinja_render(template)(messages, prompt) == reference.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=prompt)


@pytest.mark.parametrize("template", [SMOLLM2, ZEPHYR, TRIMS], ids=["smollm2", "zephyr", "llama3"])
def test_layout_renders_conversations_as_the_template_does_in_python_and_in_graph(template):
    render = jinja_render(template)
    layout = chat_layout(render)
    for messages in CONVERSATIONS:
        for prompt in (True, False):
            assert layout.render(messages, prompt) == render(messages, prompt)
    # A batch of unequal conversations, padded with "" roles, in graph ops.
    width = max(len(m) for m in CONVERSATIONS)
    roles = [[m["role"] for m in c] + [""] * (width - len(c)) for c in CONVERSATIONS]
    contents = [[m["content"] for m in c] + [""] * (width - len(c)) for c in CONVERSATIONS]
    texts = tf.function(lambda r, c: chat_texts(layout, r, c))(tf.constant(roles), tf.constant(contents))
    assert [t.decode("utf-8") for t in texts.numpy()] == [render(c, True) for c in CONVERSATIONS]


@pytest.mark.parametrize("template, match", [
    (ESCAPES, r"is not a fixed text before and after each message by role.*a < b &amp; "),
    (ALTERNATES, r"refuses the conversation.*Conversation roles must alternate"),
    (NUMBERS, r"is not a fixed text before and after each message"),
    ("{{ messages[0]['content'] }}", r"does not write each message's content once"),
], ids=["rewrites", "alternates", "numbers", "drops"])
def test_templates_that_no_fixed_layout_renders_are_refused_by_name(template, match):
    with pytest.raises(ValueError, match=r"`chat_template` cannot be served in core TensorFlow ops: it " + match):
        chat_layout(jinja_render(template))


def test_unknown_roles_and_empty_conversations_are_refused_in_graph():
    layout = chat_layout(jinja_render(SMOLLM2))
    for roles, match in [
        ([["user", "tool"]], "every role must be one of " + ", ".join(ROLES)),
        ([["", "user"]], "every conversation needs at least one message"),
        ([["user", "", "user"]], "its messages come first"),
        (tf.zeros([1, 0], tf.string), "every conversation needs at least one message"),
    ]:
        roles = tf.constant(roles)
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            chat_texts(layout, roles, tf.fill(tf.shape(roles), "x"))


@pytest.mark.slow  # an export, ~8 s
def test_a_gpt_exported_with_a_template_answers_conversations_as_the_generator_does(tmp_path):
    import keras

    import keras_llm
    from keras_llm.generation import Generator

    keras.utils.set_random_seed(0)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=96, tokenizer=tokenizer)
    template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}|{% endfor %}"
                "{% if add_generation_prompt %}<assistant>{% endif %}")
    path = keras_llm.export(model, str(tmp_path / "chat"), max_new_tokens=6, chat_template=template)
    served = tf.saved_model.load(path).signatures
    assert set(served) == {"serving_default", "generate", "generate_ids", "logits", "chat"}
    conversations = CONVERSATIONS[:3]
    width = max(len(c) for c in conversations)
    out = served["chat"](
        roles=tf.constant([[m["role"] for m in c] + [""] * (width - len(c)) for c in conversations]),
        contents=tf.constant([[m["content"] for m in c] + [""] * (width - len(c)) for c in conversations]),
    )
    # The Python generator on the template's own rendering; "|" (the assistant's message suffix,
    # one byte) ends the turn.
    prompts = [jinja_render(template)(c, True) for c in conversations]
    expected = Generator(model).generate(prompts, 6, stop_token_ids=[tokenizer.end_token_id, ord("|")])
    assert [t.decode("utf-8") for t in out["generated_text"].numpy()] == expected
    with pytest.raises(ValueError, match=r"chat_template is for other models.*this model is a masked LM"):
        keras_llm.export(keras_llm.build_bert_pretrainer("bert_tiny", num_layers=1, vocabulary_size=20),
                         str(tmp_path / "m"), keras_llm.tokenizers.ByteTokenizer(), chat_template=template)
