"""Decoders whose table is padded past their tokenizer (Qwen2.5: 151,936 rows, 151,665 tokens)."""

import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.export.decoding import CausalLMServing
from keras_llm.generation import Generator
from keras_llm.models.task_model import check_tokenizer, is_padded_vocabulary
from keras_llm.tokenizers import ByteTokenizer, WordPieceTokenizer

TOKENS = ByteTokenizer.vocabulary_size  # 258
ROWS = 264  # 258 rounded up to a multiple of 8


@pytest.mark.parametrize("size, rows, padded", [
    (151_665, 151_936, True),  # Qwen2.5: 271 spare rows on a multiple of 128
    (50_257, 50_304, True),  # GPT-2 rounded up to a multiple of 64
    (258, 264, True),
    (8, 99, False),  # no checkpoint pads 8 tokens to 99 rows
    (151_000, 151_936, False),  # 936 spare rows: more than 1/256 of the table
    (264, 264, False),  # not padded: the same size
])
def test_padded_vocabularies_are_rounded_up_or_a_few_spare_rows(size, rows, padded):
    assert is_padded_vocabulary(size, rows) is padded


@pytest.fixture(scope="module")
def model():
    """A GPT whose 6 spare rows outscore every token at every position, unless masked.

    The final LayerNorm's output is `n + beta` with `n` centred over the
    features; with `beta` constant, a zero-mean row `e` scores `e . n`
    (random, position-dependent) and a constant row scores `e . beta` alone.
    """
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, vocabulary_size=ROWS,
                                max_sequence_length=32, tokenizer=ByteTokenizer())
    table = model.get_layer("embeddings").token_embedding.embeddings
    rng = np.random.default_rng(0)
    named = rng.normal(0.0, 1.0, (TOKENS, table.shape[1]))
    rows = np.concatenate([named - named.mean(1, keepdims=True),
                           np.full((ROWS - TOKENS, table.shape[1]), 1.0)])
    table.assign(rows.astype("float32"))
    beta = model.get_layer("final_layer_norm").beta
    beta.assign(np.full(beta.shape, 1000.0 / beta.shape[0], "float32"))  # spare rows score 1000
    return model


def greedy_over_named_ids(model, prompt, steps):
    """Greedy decoding recomputing the whole sequence, the argmax over the tokenizer's ids."""
    ids, spare_wins = list(prompt), 0
    for _ in range(steps):
        row = np.array([ids], "int32")
        logits = np.asarray(model({"token_ids": row, "padding_mask": np.ones_like(row)}))[0, -1]
        spare_wins += int(np.argmax(logits) >= TOKENS)
        ids.append(int(np.argmax(logits[:TOKENS])))
    return ids[len(prompt):], spare_wins


def test_a_causal_lm_takes_a_tokenizer_its_table_pads_and_a_masked_lm_does_not(model):
    assert model.tokenizer.vocabulary_size == TOKENS  # accepted by the builder
    masked_lm = keras_llm.build_bert_pretrainer(
        "bert_tiny", vocabulary_size=8, num_layers=1, max_sequence_length=16)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]
    with pytest.raises(ValueError, match=r"exactly the model's 8 token ids: a masked LM ranks"):
        check_tokenizer(masked_lm, WordPieceTokenizer(pieces))
    tagger = keras_llm.build_bert_tagger(
        "bert_tiny", num_classes=2, vocabulary_size=99, num_layers=1, max_sequence_length=16)
    with pytest.raises(ValueError, match=r"model's 99 token ids, or fewer .* with 6 token ids"):
        check_tokenizer(tagger, WordPieceTokenizer(pieces))


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])  # XLA: slow
def test_greedy_decoding_never_picks_an_id_past_the_tokenizer(model, jit_compile):
    prompt = list(b"To be")
    expected, spare_wins = greedy_over_named_ids(model, prompt, 6)
    assert spare_wins == 6  # unmasked, every step would pick a spare row
    generator = Generator(model, jit_compile=jit_compile)
    got = generator.generate([prompt], max_new_tokens=6)[0]
    assert got.tolist() == expected
    beams = generator.generate([prompt], max_new_tokens=4, num_beams=3)[0]
    sampled = generator.generate([prompt] * 4, max_new_tokens=6, temperature=5.0, seed=[1, 2, 3, 4])
    assert max(max(ids) for ids in [beams, *sampled]) < TOKENS


def test_the_served_ids_are_the_generators(model):
    module = CausalLMServing.from_settings(model, model.tokenizer, max_new_tokens=6)
    served = module.signatures()["serving_default"](tf.constant(["To be"]))
    length = int(served["generated_length"][0])
    ids = Generator(model, jit_compile=False).generate([list(b"To be")], max_new_tokens=6)[0]
    assert served["generated_ids"].numpy()[0, :length].tolist() == ids.tolist()
    assert max(ids) < TOKENS
