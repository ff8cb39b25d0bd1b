"""CoreOpsWordPieceTokenizer against Hugging Face `tokenizers` (the reference)."""

import keras
import pytest
import tensorflow as tf
import tokenizers as hf

from keras_llm.tokenizers import CoreOpsWordPieceTokenizer
from tests.tokenizers.serving_check import (
    SHARED_FILES,
    STRESS,
    TRAINING_CORPUS,
    assert_same_ids_on_shared_file,
    run_in_tensorflow_only_process,
    shared_lines,
)



@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def pair(request, tmp_path_factory):
    """A vocabulary trained by Hugging Face, loaded by both implementations."""
    lowercase = request.param
    reference = hf.BertWordPieceTokenizer(lowercase=lowercase)
    reference.train_from_iterator(TRAINING_CORPUS, vocab_size=600)
    directory = tmp_path_factory.mktemp("vocab")
    reference.save_model(str(directory))
    ours = CoreOpsWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=lowercase)
    return ours, reference, directory / "vocab.txt"


def reference_ids(reference, texts):
    return [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]


def test_stress_set_matches_hugging_face(pair):
    ours, reference, _ = pair
    assert ours(STRESS).to_list() == reference_ids(reference, STRESS)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED_FILES)
def test_shared_corpora_match_hugging_face(pair, name):
    ours, reference, _ = pair
    # In a graph, as it serves (eagerly, its while_loop would step in Python).
    tokenize = tf.function(ours, input_signature=[tf.TensorSpec([None], tf.string)])
    assert_same_ids_on_shared_file(
        name, lambda texts: tokenize(tf.constant(texts)).to_list(),
        lambda texts: reference_ids(reference, texts),
    )


def test_scalar_input_and_tf_data(pair):
    ours, reference, _ = pair
    assert ours("Café!").numpy().tolist() == reference_ids(reference, ["Café!"])[0]
    ds = tf.data.Dataset.from_tensor_slices(STRESS[:6]).batch(3).map(ours)
    got = [row for batch in ds for row in batch.to_list()]
    assert got == reference_ids(reference, STRESS[:6])


def test_invalid_utf8_bytes_are_dropped(pair):
    ours, _, _ = pair
    assert ours([b"caf\xff\xfee"]).to_list() == ours(["cafe"]).to_list()


def test_detokenize_glues_continuations(pair):
    ours, reference, _ = pair
    text = "supercalifragilisticexpialidocious"
    ids = ours(text)
    assert ours.detokenize(ids).numpy().decode() == reference.decode(ids.numpy().tolist())


@pytest.mark.slow
def test_keras_round_trip(pair, tmp_path):
    ours, _, _ = pair
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, ours(inputs))
    clone = CoreOpsWordPieceTokenizer.from_config(ours.get_config())
    assert clone(STRESS).to_list() == ours(STRESS).to_list()
    model.save(tmp_path / "tokenizer.keras")
    loaded = keras.saving.load_model(tmp_path / "tokenizer.keras")
    assert loaded(tf.constant(STRESS)).to_list() == ours(STRESS).to_list()


@pytest.mark.slow
def test_saved_model_runs_in_a_process_that_imports_only_tensorflow(pair, tmp_path):
    ours, reference, _ = pair
    answer = run_in_tensorflow_only_process(ours, STRESS, tmp_path)
    assert answer["imported"] == []
    assert answer["unregistered"] == [] and answer["ops"] > 20  # op audit
    assert answer["ids"] == reference_ids(reference, STRESS)


def test_bad_vocabulary_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        CoreOpsWordPieceTokenizer(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"[UNK]\nok\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: the vocabulary file is not valid UTF-8"):
        CoreOpsWordPieceTokenizer(str(bad))
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("[UNK]\ntwo words\n")
    with pytest.raises(ValueError, match=r"spaced.txt:2: expected one WordPiece token"):
        CoreOpsWordPieceTokenizer(str(spaced))
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("[UNK]\na\na\n")
    with pytest.raises(ValueError, match=r"repeated.txt:3: token 'a' repeats line 2"):
        CoreOpsWordPieceTokenizer(str(repeated))
    with pytest.raises(ValueError, match="unknown_token='<unk>'"):
        CoreOpsWordPieceTokenizer(["[UNK]", "a"], unknown_token="<unk>")


@pytest.mark.slow
@pytest.mark.parametrize("name", [None, "sst2_dev.tsv", "tinyshakespeare.txt"])
def test_tensorflow_text_variant_matches_core_ops_variant(pair, name):
    """WordPieceTokenizer (tensorflow-text kernel) == CoreOpsWordPieceTokenizer."""
    from keras_llm.tokenizers import WordPieceTokenizer

    ours, reference, vocab_path = pair
    texts = STRESS if name is None else shared_lines(name)
    if texts is None:
        pytest.skip(f"../shared/data/{name} is absent (it exists only beside the project's checkout)")
    fast = WordPieceTokenizer(str(vocab_path), lowercase=ours.lowercase)
    assert fast(texts).to_list() == ours(texts).to_list()
    if name is None:
        assert fast(texts).to_list() == reference_ids(reference, texts)


def test_special_token_ids_follow_the_vocabulary(pair):
    ours, reference, _ = pair
    for name in ["pad", "cls", "sep", "mask"]:
        token = f"[{name.upper()}]"
        assert getattr(ours, f"{name}_token_id") == reference.token_to_id(token)
        assert ours.special_tokens[token] == reference.token_to_id(token)
    assert CoreOpsWordPieceTokenizer(["[UNK]", "a"]).mask_token_id is None
