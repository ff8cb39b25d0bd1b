"""BART checkpoints: keras_llm's logits and decoded ids equal transformers'."""

import numpy as np
import pytest
import torch
import transformers

import keras_llm
from keras_llm.generation import Generator
from tests.pretrained.checkpoints import edit_config, edit_tensors
from tests.pretrained.reference import assert_close, load, random_checkpoint

pytestmark = pytest.mark.slow  # torch and transformers take seconds to import

START, END = 2, 2  # BART's decoder_start_token_id and eos: </s>
# Sources with BART's layout (<s> ... </s>), the second padded on the right with <pad> (1).
SOURCES = np.array([[0, 11, 12, 13, 14, 2], [0, 21, 22, 2, 1, 1]], "int32")
SOURCE_MASK = (SOURCES != 1).astype("int32")
TARGETS = np.array([[2, 0, 31, 32, 33], [2, 0, 41, 42, 1]], "int32")
TARGET_MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], "int32")


def bart_config(**overrides):
    return transformers.BartConfig(
        vocab_size=60, d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_position_embeddings=32, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        **overrides,
    )


def inputs():
    return {"encoder_token_ids": SOURCES, "encoder_padding_mask": SOURCE_MASK,
            "decoder_token_ids": TARGETS, "decoder_padding_mask": TARGET_MASK}


@pytest.mark.parametrize("architecture,scale", [("BartForConditionalGeneration", False),
                                                ("BartModel", True)])
def test_bart_logits_equal_transformers(architecture, scale, tmp_path):
    reference = random_checkpoint(getattr(transformers, architecture),
                                  bart_config(scale_embedding=scale), tmp_path / "hf")
    model = keras_llm.from_pretrained(tmp_path / "hf")
    assert isinstance(model, keras_llm.models.Seq2SeqTransformer) and model.task == "seq2seq_lm"
    with torch.no_grad():
        head = reference if architecture != "BartModel" else transformers.BartForConditionalGeneration(
            reference.config).eval()
        if architecture == "BartModel":  # the same body under a tied head
            head.model.load_state_dict(reference.state_dict())
        expected = head(
            input_ids=torch.tensor(SOURCES, dtype=torch.long),
            attention_mask=torch.tensor(SOURCE_MASK, dtype=torch.long),
            decoder_input_ids=torch.tensor(TARGETS, dtype=torch.long),
            decoder_attention_mask=torch.tensor(TARGET_MASK, dtype=torch.long),
        ).logits.numpy()
    assert_close(model(inputs()), expected, where=TARGET_MASK.astype(bool))


def test_bart_greedy_and_beam_search_give_transformers_ids(tmp_path):
    # Larger random weights than random_checkpoint's: outputs that differ by step (small ones
    # repeat one token). A random post-norm BART barely reads its source: both rows decode alike.
    torch.manual_seed(0)
    reference = transformers.BartForConditionalGeneration(bart_config()).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    reference.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model = keras_llm.from_pretrained(tmp_path / "hf")
    generator = Generator(model, start_token_id=START, jit_compile=False)
    sources = [row[mask.astype(bool)].tolist() for row, mask in zip(SOURCES, SOURCE_MASK)]

    def hf_generate(source, **settings):
        # Every generation default that changes the output, off: the comparison is of the model
        # and the search, not of transformers' extra rules.
        with torch.no_grad():
            out = reference.generate(
                torch.tensor([source]), attention_mask=torch.ones(1, len(source), dtype=torch.long),
                decoder_start_token_id=START, max_new_tokens=8, do_sample=False, min_length=0,
                no_repeat_ngram_size=0, forced_bos_token_id=None, forced_eos_token_id=None,
                **settings,
            )
        return out[0, 1:].tolist()  # without the start token

    # Greedy, stopping at </s>.
    greedy = generator.generate(sources, max_new_tokens=8, stop_token_ids=[END])
    for source, ids in zip(sources, greedy):
        assert ids.tolist() == hf_generate(source, num_beams=1, eos_token_id=END)
    assert len(set(greedy[0].tolist())) > 1
    # Beam search over 8 tokens with no stop token: both searches keep the 4 best prefixes of
    # each length and return the best complete one (transformers' early-stopping and
    # finished-hypothesis rules only apply once a beam ends).
    got = generator.generate(sources, max_new_tokens=8, num_beams=4, length_penalty=0.0,
                             stop_token_ids=[])
    for source, ids in zip(sources, got):
        expected = hf_generate(source, num_beams=4, eos_token_id=None, length_penalty=0.0)
        assert ids.tolist() == expected


def test_bart_settings_keras_llm_cannot_compute_are_refused(tmp_path):
    random_checkpoint(transformers.BartForConditionalGeneration, bart_config(), tmp_path / "hf")
    edit_config(tmp_path / "hf", activation_function="relu")
    with pytest.raises(ValueError, match="activation_function='relu'"):
        keras_llm.from_pretrained(tmp_path / "hf")
    edit_config(tmp_path / "hf", activation_function="gelu", decoder_ffn_dim=64)
    with pytest.raises(ValueError, match="encoder_ffn_dim=32 and decoder_ffn_dim=64 differ"):
        keras_llm.from_pretrained(tmp_path / "hf")
    edit_config(tmp_path / "hf", decoder_ffn_dim=32)

    def nonzero_bias(tensors):
        tensors["final_logits_bias"] = np.full((1, 60), 0.5, "float32")

    edit_tensors(tmp_path / "hf", nonzero_bias)
    with pytest.raises(ValueError, match="final_logits_bias is not zero"):
        keras_llm.from_pretrained(tmp_path / "hf")
    model = keras_llm.build_seq2seq("seq2seq_tiny", vocabulary_size=60)  # pre-norm, sinusoidal
    with pytest.raises(ValueError, match="BART, which has position_embedding='learned'; this model "
                                         "has position_embedding='sinusoidal'"):
        keras_llm.save_pretrained(model, tmp_path / "out")


def test_bart_written_back_loads_in_transformers_with_the_same_logits(tmp_path):
    random_checkpoint(transformers.BartForConditionalGeneration, bart_config(), tmp_path / "hf")
    model = keras_llm.from_pretrained(tmp_path / "hf")
    path = keras_llm.save_pretrained(model, tmp_path / "back")
    back, info = load(transformers.BartForConditionalGeneration, path)
    assert not info["unexpected_keys"], info
    with torch.no_grad():
        logits = back(
            input_ids=torch.tensor(SOURCES, dtype=torch.long),
            attention_mask=torch.tensor(SOURCE_MASK, dtype=torch.long),
            decoder_input_ids=torch.tensor(TARGETS, dtype=torch.long),
            decoder_attention_mask=torch.tensor(TARGET_MASK, dtype=torch.long),
        ).logits.numpy()
    assert_close(model(inputs()), logits, where=TARGET_MASK.astype(bool))
    again = keras_llm.from_pretrained(path)
    assert_close(again(inputs()), model(inputs()))
