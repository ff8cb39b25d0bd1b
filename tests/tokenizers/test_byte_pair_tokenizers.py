"""The byte-level BPE tokenizers against Hugging Face `tokenizers` (the reference)."""

import json

import keras
import pytest
import tensorflow as tf
import tokenizers as hf

from keras_llm.tokenizers import BytePairTokenizer, CoreOpsBytePairTokenizer
from tests.tokenizers.serving_check import (
    SHARED_FILES,
    STRESS,
    TRAINING_CORPUS,
    assert_same_ids_on_shared_file,
    run_in_tensorflow_only_process,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A GPT-2-style vocabulary trained by Hugging Face, and its files."""
    reference = hf.ByteLevelBPETokenizer()
    reference.train_from_iterator(TRAINING_CORPUS, vocab_size=700, special_tokens=["<|endoftext|>"])
    directory = tmp_path_factory.mktemp("bpe")
    reference.save_model(str(directory))
    return reference, directory


@pytest.fixture(scope="module", params=[CoreOpsBytePairTokenizer, BytePairTokenizer])
def pair(request, trained):
    """Each of our BPE tokenizers loaded from the reference's files."""
    reference, directory = trained
    ours = request.param(str(directory / "vocab.json"), str(directory / "merges.txt"))
    return ours, reference, directory


def reference_ids(reference, texts):
    return [e.ids for e in reference.encode_batch(texts)]


def test_stress_set_matches_hugging_face(pair):
    ours, reference, _ = pair
    assert ours(STRESS).to_list() == reference_ids(reference, STRESS)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED_FILES)
def test_shared_corpora_match_hugging_face(pair, name):
    ours, reference, _ = pair
    assert_same_ids_on_shared_file(
        name, lambda texts: ours(texts).to_list(), lambda texts: reference_ids(reference, texts)
    )


def test_round_trips_text(pair):
    ours, _, _ = pair
    for text in STRESS:
        if "\x00" in text or "\ufffd" in text:
            continue
        assert ours.detokenize(ours(text)).numpy().decode("utf-8") == text


def test_invalid_utf8_becomes_replacement_character(pair):
    ours, _, _ = pair
    assert ours([b"caf\xffe"]).to_list() == ours(["caf\ufffde"]).to_list()


@pytest.mark.slow
def test_tf_data_and_keras_round_trip(pair, tmp_path):
    ours, reference, _ = pair
    ds = tf.data.Dataset.from_tensor_slices(STRESS[:6]).batch(3).map(ours)
    assert [r for b in ds for r in b.to_list()] == reference_ids(reference, STRESS[:6])
    inputs = keras.Input(shape=(), dtype="string")
    keras.Model(inputs, ours(inputs)).save(tmp_path / "bpe.keras")
    loaded = keras.saving.load_model(tmp_path / "bpe.keras")
    assert loaded(tf.constant(STRESS)).to_list() == ours(STRESS).to_list()


@pytest.mark.slow
def test_saved_model_runs_in_a_process_that_imports_only_tensorflow(trained, tmp_path):
    reference, directory = trained
    ours = CoreOpsBytePairTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    answer = run_in_tensorflow_only_process(ours, STRESS, tmp_path)
    assert answer["imported"] == []
    assert answer["unregistered"] == [] and answer["ops"] > 20  # op audit
    assert answer["ids"] == reference_ids(reference, STRESS)


def test_bad_files_are_named(trained, tmp_path):
    _, directory = trained
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CoreOpsBytePairTokenizer(str(tmp_path / "nope.json"), str(merges))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: expected a JSON object"):
        CoreOpsBytePairTokenizer(str(broken), str(merges))
    bad_merges = tmp_path / "merges.txt"
    first_merge = merges.read_text(encoding="utf-8").splitlines()[1]
    bad_merges.write_text(f"#version: 0.2\n{first_merge}\nzzz qqq\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges.txt:3: the merge 'zzz qqq' needs 'zzz'.*do not match"):
        CoreOpsBytePairTokenizer(str(vocab), str(bad_merges))
    malformed = tmp_path / "malformed.txt"
    malformed.write_text("a b c\n")
    with pytest.raises(ValueError, match=r"malformed.txt:1: expected two tokens"):
        CoreOpsBytePairTokenizer(str(vocab), str(malformed))
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"a": 0}))
    with pytest.raises(ValueError, match="lacks 255 of GPT-2's 256 byte symbols"):
        CoreOpsBytePairTokenizer(str(small), [])


def test_special_token_and_vocabulary_lookups(pair):
    ours, reference, _ = pair
    assert ours.end_token_id == reference.token_to_id("<|endoftext|>")
    assert ours.special_tokens == {"<|endoftext|>": ours.end_token_id}
    for token in ["Ġthe", "a", "<|endoftext|>"]:
        token_id = reference.token_to_id(token)
        assert ours.token_to_id(token) == token_id and ours.id_to_token(token_id) == token
    with pytest.raises(ValueError, match="token='nope'"):
        ours.token_to_id("nope")
    with pytest.raises(ValueError, match="token_id=100000"):
        ours.id_to_token(100000)


def test_cached_tokenizer_equals_core_ops_one_and_survives_collisions(trained):
    _, directory = trained
    files = (str(directory / "vocab.json"), str(directory / "merges.txt"))
    core, cached = CoreOpsBytePairTokenizer(*files), BytePairTokenizer(*files)
    expected = core(STRESS).to_list()
    assert cached(STRESS).to_list() == expected  # cold cache
    assert cached(STRESS).to_list() == expected  # every word now cached
    # A fingerprint collision stores another word under a key: it must be a miss.
    key = tf.strings.to_hash_bucket_fast([" the"], 2**63 - 1)
    cached._cache.insert(key, tf.constant([b" tha\xff1 2 3"]))
    assert cached([" the"]).to_list() == core([" the"]).to_list()


@pytest.mark.parametrize("tokenizer_class", [CoreOpsBytePairTokenizer, BytePairTokenizer])
def test_vocabulary_ids_must_be_0_to_n_minus_1_each_once(trained, tmp_path, tokenizer_class):
    reference, directory = trained
    merges = str(directory / "merges.txt")
    vocabulary = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    ours = tokenizer_class(str(directory / "vocab.json"), merges)
    assert ours.vocabulary_size == reference.get_vocab_size() == len(vocabulary)
    # Two tokens share an id: "Ġthe" takes the id of "a".
    shared = dict(vocabulary, **{"Ġthe": vocabulary["a"]})
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(shared), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"shared.json: tokens '(a|Ġthe)' and '(a|Ġthe)' share the "
                                         rf"id {vocabulary['a']}; each token needs its own id"):
        tokenizer_class(str(path), merges)
    # An id far past the size: vocabulary_size would become 100,001.
    far = dict(vocabulary, **{"Ġthe": 100_000})
    path = tmp_path / "far.json"
    path.write_text(json.dumps(far), encoding="utf-8")
    n = len(vocabulary)
    with pytest.raises(ValueError, match=rf"far.json: token 'Ġthe' has the id 100000; the ids of "
                                         rf"its {n} tokens must be 0 to {n - 1}, each used once"):
        tokenizer_class(str(path), merges)
    negative = dict(vocabulary, **{"Ġthe": -3})
    with pytest.raises(ValueError, match=r"vocabulary: token 'Ġthe' has the id -3"):
        tokenizer_class(negative, merges)
