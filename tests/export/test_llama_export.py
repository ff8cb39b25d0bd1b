"""A build_llama chat model's export serves text and conversations as the Generator decodes them.

Served from a TensorFlow-only process: no keras, keras_llm or jinja2 there.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_llm
from keras_llm.generation import Generator
from keras_llm.generation.chat import chat_prompt, end_of_turn_ids

# A template around each message by role; "|" (one byte) ends each turn.
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}|{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")
TEXTS = ["The cat sat", "", "caf\u00e9 \U0001F642" * 3]
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2 + 2 = ?"}],
]
MAX_NEW_TOKENS = 8

TENSORFLOW_ONLY = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    before = set(sys.modules)
    request = json.loads(sys.stdin.read())
    signatures = tf.saved_model.load(request["path"]).signatures
    texts = tf.constant([t.encode("utf-8") for t in request["texts"]])
    served = signatures["serving_default"](text=texts)["generated_text"].numpy().tolist()
    conversations = request["conversations"]
    width = max(len(c) for c in conversations)
    pad = lambda c, key: [m[key] for m in c] + [""] * (width - len(c))
    chat = signatures["chat"](
        roles=tf.constant([pad(c, "role") for c in conversations]),
        contents=tf.constant([pad(c, "content") for c in conversations]))
    imported = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                      & {"tensorflow_text", "keras", "keras_llm", "keras_hub", "jinja2"})
    print(json.dumps({"served": served, "chat": chat["generated_text"].numpy().tolist(),
                      "imported": imported}, default=lambda b: b.decode("utf-8")))
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_llama(
        tokenizer=tokenizer, num_layers=2, num_heads=4, num_key_value_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=128, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=16),
    )
    # Large random kernels, so that replies differ by prompt.
    rng = np.random.default_rng(1)
    for weight in model.weights:
        if len(weight.shape) >= 2:
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    path = keras_llm.export(model, str(tmp_path_factory.mktemp("llama") / "chat"),
                            max_new_tokens=MAX_NEW_TOKENS, chat_template=TEMPLATE)
    return model, tokenizer, path


@pytest.mark.slow  # an export and a subprocess: 30-50 s on 2 cores
def test_a_tensorflow_only_process_serves_text_and_conversations_as_the_generator_decodes(exported):
    model, tokenizer, path = exported
    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY],
        input=json.dumps({"path": path, "texts": TEXTS, "conversations": CONVERSATIONS}),
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["imported"] == []
    # The export stops at the end token and at the end of the assistant's turn ("|").
    stops = end_of_turn_ids(tokenizer, TEMPLATE)
    assert stops == [tokenizer.end_token_id, ord("|")]
    # With the tokenizer the model carries; a plain graph, as the export decodes.
    generator = Generator(model, jit_compile=False)
    assert served["served"] == generator.generate(TEXTS, MAX_NEW_TOKENS, stop_token_ids=stops)
    # Two conversations of unequal length: each laid out by the template in Python (Jinja).
    prompts = [chat_prompt(c, tokenizer, TEMPLATE) for c in CONVERSATIONS]
    assert prompts[0] == "<user>What is the capital of France?|<assistant>"
    replies = generator.generate(prompts, MAX_NEW_TOKENS, stop_token_ids=stops)
    assert served["chat"] == replies
    assert len(set(served["served"] + served["chat"])) > 1
