"""Every builder checks its arguments before building, and names the one that is wrong."""

import functools
import json

import numpy as np
import pytest

import keras_llm

TINY = dict(vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=16)
BUILDERS = {
    "build_gpt": keras_llm.build_gpt,
    "build_bert": keras_llm.build_bert,
    "build_bert_pretrainer": keras_llm.build_bert_pretrainer,
    "build_bert_classifier": functools.partial(keras_llm.build_bert_classifier, num_classes=2),
    # The heads resolve their encoder's arguments through build_bert's code; errors still name them.
    "build_bert_tagger": functools.partial(keras_llm.build_bert_tagger, num_classes=2),
    "build_bert_question_answerer": keras_llm.build_bert_question_answerer,
}
BAD = [
    # (argument, value, what the message says it must be)
    ("dropout", "0.1", "a float in [0, 1)"),
    ("dropout", -0.1, "a float in [0, 1)"),
    ("dropout", 1.0, "a float in [0, 1)"),
    ("dropout", float("nan"), "a float in [0, 1)"),
    ("dropout", True, "a float in [0, 1)"),
    ("layer_norm_epsilon", -1.0, "a positive float"),
    ("layer_norm_epsilon", 0.0, "a positive float"),
    ("layer_norm_epsilon", "1e-5", "a positive float"),
    ("layer_norm_epsilon", float("inf"), "a positive float"),
    ("hidden_dim", 16.0, "a positive int"),
]


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("argument,value,expected", BAD)
def test_bad_arguments_are_named_with_the_value_received(builder, argument, value, expected):
    message = f"{builder}: `{argument}` must be {expected}. Received: {argument}={value!r}"
    with pytest.raises(ValueError) as error:
        BUILDERS[builder](**{**TINY, argument: value})
    assert str(error.value) == message


@pytest.mark.parametrize("builder", [b for b in BUILDERS if "bert" in b])
@pytest.mark.parametrize("value", [0, 2.0, "2"])
def test_bert_num_segments_must_be_a_positive_int(builder, value):
    with pytest.raises(ValueError) as error:
        BUILDERS[builder](**TINY, num_segments=value)
    assert str(error.value) == (
        f"{builder}: `num_segments` must be a positive int. Received: num_segments={value!r}"
    )


@pytest.mark.parametrize("builder", BUILDERS)
def test_ints_and_numpy_floats_are_taken_as_floats(builder):
    model = BUILDERS[builder](**TINY, dropout=0, layer_norm_epsilon=np.float32(1e-6))
    block = model.get_layer("transformer_layer_0").get_config()
    assert block["dropout"] == 0.0 and isinstance(block["dropout"], float)
    assert block["layer_norm_epsilon"] == float(np.float32(1e-6))
    json.dumps(model.get_config())  # what a .keras file stores


@pytest.mark.parametrize("argument,value,expected", [b for b in BAD if b[0] != "hidden_dim"])
def test_transformer_block_checks_the_same_floats(argument, value, expected):
    # The layer is public too (tests/layers/ is another file's: checked here beside the builders).
    with pytest.raises(ValueError) as error:
        keras_llm.layers.TransformerBlock(2, 32, **{argument: value})
    assert str(error.value) == f"`{argument}` must be {expected}. Received: {argument}={value!r}"


@pytest.mark.parametrize("builder", ["build_gpt", "build_bert", "build_seq2seq", "build_llama"])
def test_an_unknown_keyword_is_a_type_error_naming_it(builder):
    # As Python words it for a keyword the signature does not name.
    with pytest.raises(TypeError) as error:
        getattr(keras_llm, builder)(**TINY, hidden_size=16)
    assert str(error.value) == f"{builder}() got an unexpected keyword argument 'hidden_size'"


def test_sizes_over_a_preset_and_the_tokenizer_size_reach_the_model():
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_seq2seq("seq2seq_tiny", num_layers=1, normalize_first=False,
                                    tokenizer=tokenizer)
    assert model.vocabulary_size == tokenizer.vocabulary_size
    assert model.get_config()["num_layers"] == 1 and not model.get_config()["normalize_first"]
