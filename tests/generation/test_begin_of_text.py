"""A tokenizer that declares `add_bos_token` (Llama 3's) starts every prompt with its BOS, as
Hugging Face `tokenizers` encodes the text, in the `Generator` and in the export; a chat
template writes its own and gets no second one."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tokenizers as hf

import keras_llm
from keras_llm.generation import Generator
from keras_llm.generation.chat import render_template
from tests.tokenizers.byte_level_reference import write_directory

PROMPTS = ["The cat sat", "a  12345"]
NEW = 4
CONVERSATION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def llama3(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama3")
    write_directory(directory, "llama3")
    tokenizer = keras_llm.tokenizers.from_pretrained(str(directory))
    reference = hf.Tokenizer.from_file(str(directory / "tokenizer.json"))
    keras.utils.set_random_seed(0)
    model = keras_llm.build_llama(
        "llama_tiny", tokenizer=tokenizer, num_layers=1, max_sequence_length=64)
    # Large random kernels, so that the next token depends on every prompt token.
    rng = np.random.default_rng(1)
    for weight in model.weights:
        if len(weight.shape) >= 2:
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    return model, tokenizer, reference


def greedy(model, ids):
    """`NEW` greedy ids after `ids`, recomputing the whole sequence each step (NumPy argmax)."""
    ids = list(ids)
    for _ in range(NEW):
        logits = np.asarray(model(
            {"token_ids": np.array([ids], "int32"), "padding_mask": np.ones((1, len(ids)), "int32")}))
        ids.append(int(np.argmax(logits[0, -1])))
    return ids[-NEW:]


def test_the_generator_starts_text_prompts_with_the_begin_token(llama3):
    model, tokenizer, reference = llama3
    bos = reference.token_to_id("<|endoftext|>")
    generator = Generator(model, tokenizer)
    for prompt in PROMPTS:
        expected = reference.encode(prompt).ids  # the post-processor adds the BOS
        assert expected[0] == bos
        out = generator.generate(prompt, max_new_tokens=NEW, temperature=0.0, stop_token_ids=[])
        assert out == tokenizer.detokenize(greedy(model, expected)).numpy().decode("utf-8", "replace")
    assert tokenizer.added_bos_token_id == bos


@pytest.mark.slow  # an export: 20-30 s on 2 cores
def test_the_export_adds_it_to_text_and_not_to_conversations(llama3, tmp_path):
    model, tokenizer, reference = llama3
    path = keras_llm.export(model, str(tmp_path / "llama3"), max_new_tokens=NEW,
                            stop_token_ids=[])
    signatures = tf.saved_model.load(path).signatures
    served = signatures["serving_default"](text=tf.constant(PROMPTS[:1]))
    assert served["generated_ids"].numpy()[0].tolist() == greedy(
        model, reference.encode(PROMPTS[0]).ids)
    # The template (ChatML) has no BOS; transformers tokenizes its text without special tokens.
    chat = signatures["chat"](roles=tf.constant([["user"]]),
                              contents=tf.constant([[CONVERSATION[0]["content"]]]))
    text = render_template(tokenizer.chat_template)(CONVERSATION, True)
    expected = reference.encode(text, add_special_tokens=False).ids
    assert chat["generated_ids"].numpy()[0].tolist() == greedy(model, expected)
