"""GPT-2 checkpoints: keras_llm's outputs equal transformers', importing and exporting."""

import keras
import pytest
import transformers

import keras_llm
from tests.pretrained.checkpoints import PADDING_MASK, gpt_inputs
from tests.pretrained.reference import assert_close, gpt2_config, load, random_checkpoint, run_gpt2

pytestmark = pytest.mark.slow  # torch and transformers take seconds to import

# Right padding: only real tokens are compared (transformers' outputs at
# padded positions are not defined by the model).
REAL = PADDING_MASK.astype(bool)


def hidden_states(model):
    """keras_llm's final hidden states (after ln_f), transformers' last_hidden_state."""
    return keras.Model(model.inputs, model.get_layer("final_layer_norm").output)(gpt_inputs())


@pytest.mark.parametrize("architecture", ["GPT2Model", "GPT2LMHeadModel"])
def test_gpt2_checkpoint_round_trip_matches_transformers(architecture, tmp_path):
    model_class = getattr(transformers, architecture)
    reference = random_checkpoint(model_class, gpt2_config(), tmp_path / "hf")
    expected = run_gpt2(reference)

    model = keras_llm.from_pretrained(tmp_path / "hf")
    assert_close(hidden_states(model), expected.hidden_states[-1], where=REAL)
    logits = model(gpt_inputs())
    if architecture == "GPT2LMHeadModel":
        assert_close(logits, expected.logits, where=REAL)

    path = keras_llm.save_pretrained(model, tmp_path / "back")
    back, info = load(transformers.GPT2LMHeadModel, path)
    assert not info["unexpected_keys"], info
    outputs = run_gpt2(back)
    assert_close(logits, outputs.logits, where=REAL)
    base, info = load(transformers.GPT2Model, path)
    assert not info["unexpected_keys"], info
    assert_close(hidden_states(model), run_gpt2(base).last_hidden_state, where=REAL)
