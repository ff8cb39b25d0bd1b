"""`keras-llm chat` against the Generator on the template's own rendering."""

import io
import os
import subprocess
import sys

import jinja2
import keras
import pytest

import keras_llm
from keras_llm.generation import Generator
from tests.test_cli_commands import cli

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}|{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.mark.slow  # a subprocess
def test_chat_answers_each_line_of_standard_input_as_the_generator_does(tmp_path, capsys,
                                                                       monkeypatch):
    keras.utils.set_random_seed(2)
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=128,
                                tokenizer=keras_llm.tokenizers.ByteTokenizer())
    model.save(tmp_path / "chat.keras")
    (tmp_path / "template.jinja").write_text(TEMPLATE, encoding="utf-8")
    script = os.path.join(os.path.dirname(sys.executable), "keras-llm")
    command = [script, "chat", "--model", str(tmp_path / "chat.keras"), "--chat-template",
               str(tmp_path / "template.jinja"), "--system", "Be brief.", "--max-new-tokens", "9"]
    result = subprocess.run(command, input="Hi\n\nAnd then?\n", capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # The reference: each turn rendered by Jinja from the conversation so far, decoded by the
    # Generator until the end token or "|" (the text after an assistant message).
    messages, replies = [{"role": "system", "content": "Be brief."}], []
    for turn in ("Hi", "And then?"):  # the empty line is skipped
        messages.append({"role": "user", "content": turn})
        prompt = jinja2.Template(TEMPLATE).render(messages=messages, add_generation_prompt=True)
        reply = Generator(model).generate(prompt, 9, stop_token_ids=[model.tokenizer.end_token_id, ord("|")])
        messages.append({"role": "assistant", "content": reply})
        replies.append(reply)
    assert result.stdout == "".join(reply + "\n" for reply in replies)

    # Bad input, in this process (the run above showed the installed command works).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = cli(capsys, *command[1:4], "--max-new-tokens", "0")
    assert code == 2 and "--max-new-tokens must be positive" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\n"))
    code, _, err = cli(capsys, *command[1:4])
    assert code == 2 and "A chat needs the checkpoint's chat template" in err
