"""SentencePieceTokenizer against the sentencepiece library; vocabulary training."""

import os

import keras
import pytest
import sentencepiece
import tensorflow as tf
import tokenizers as hf

import keras_llm
from tests.tokenizers.serving_check import STRESS, TRAINING_CORPUS, shared_lines


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def model_path(request, tmp_path_factory):
    return keras_llm.tokenizers.train_sentence_piece(
        TRAINING_CORPUS, 100, tmp_path_factory.mktemp("spm"), model_type=request.param
    )


def test_sentence_piece_matches_the_library(model_path):
    reference = sentencepiece.SentencePieceProcessor(model_file=model_path)
    ours = keras_llm.tokenizers.SentencePieceTokenizer(model_path)
    # keras-hub's layer returns Python lists when called eagerly.
    assert ours(STRESS) == reference.encode(STRESS)


def test_sentence_piece_matches_the_library_on_the_shared_sentences(model_path):
    texts = shared_lines("sst2_dev.tsv")
    if texts is None:
        pytest.skip("../shared/data/sst2_dev.tsv is absent (it exists only beside the shared checkout)")
    reference = sentencepiece.SentencePieceProcessor(model_file=model_path)
    ours = keras_llm.tokenizers.SentencePieceTokenizer(model_path)
    assert ours(texts) == reference.encode(texts)


def test_sentence_piece_config_and_assets_round_trip(model_path, tmp_path):
    """What `.keras` saving does with the layer: config plus the model file as an asset.

    (keras-hub's tokenizer gives wrong outputs as a node of a functional
    model, so it is checked here the way keras-hub's own preprocessors save it.)
    """
    ours = keras_llm.tokenizers.SentencePieceTokenizer(model_path)
    ours.save_assets(str(tmp_path))
    clone = keras.layers.deserialize(keras.layers.serialize(ours))
    assert type(clone) is keras_llm.tokenizers.SentencePieceTokenizer
    clone.load_assets(str(tmp_path))
    assert clone(STRESS) == ours(STRESS)


def test_sentence_piece_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.model"):
        keras_llm.tokenizers.SentencePieceTokenizer(str(tmp_path / "absent.model"))


@pytest.mark.slow
@pytest.mark.parametrize("source", ["list", "file", "dataset"])
def test_word_piece_training_equals_hugging_face_on_every_corpus_form(source, tmp_path):
    if source == "list":
        corpus = TRAINING_CORPUS
    elif source == "file":
        corpus = str(tmp_path / "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(TRAINING_CORPUS) + "\n")
    else:
        corpus = tf.data.Dataset.from_tensor_slices(TRAINING_CORPUS)
    path = keras_llm.tokenizers.train_word_piece(corpus, 300, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["vocab.txt"]  # no staging left
    with open(path, encoding="utf-8") as f:
        vocabulary = f.read().splitlines()
    assert vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 200 < len(vocabulary) <= 300 and len(set(vocabulary)) == len(vocabulary)
    assert any(t.startswith("##") for t in vocabulary)
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(path)
    hf_loaded = hf.BertWordPieceTokenizer(path, lowercase=True)
    assert tokenizer(STRESS).to_list() == [e.ids for e in hf_loaded.encode_batch(STRESS, add_special_tokens=False)]


def test_byte_pair_training_round_trips(tmp_path):
    vocab, merges = keras_llm.tokenizers.train_byte_pair(TRAINING_CORPUS, 400, tmp_path)
    tokenizer = keras_llm.tokenizers.CoreOpsBytePairTokenizer(vocab, merges)
    reference = hf.ByteLevelBPETokenizer(vocab, merges)
    assert tokenizer(STRESS).to_list() == [e.ids for e in reference.encode_batch(STRESS)]
    assert tokenizer.vocabulary["<|endoftext|>"] == 0


@pytest.mark.parametrize("train", ["train_word_piece", "train_byte_pair"])
def test_training_prints_nothing(train, tmp_path, capfd):
    # Hugging Face's trainers draw progress bars unless told not to; on a
    # pipe (CI, a log file) they came out as blank lines in `keras-llm train`.
    capfd.readouterr()
    getattr(keras_llm.tokenizers, train)(TRAINING_CORPUS, 400, tmp_path)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_training_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        keras_llm.tokenizers.train_word_piece(str(tmp_path / "nothing.txt"), 100, tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: not valid UTF-8"):
        keras_llm.tokenizers.train_word_piece(str(bad), 100, tmp_path / "o")
    with pytest.raises(ValueError, match="vocabulary_size=3"):
        keras_llm.tokenizers.train_word_piece(TRAINING_CORPUS, 3, tmp_path)
    with pytest.raises(TypeError, match="Received: int"):
        keras_llm.tokenizers.train_byte_pair(42, 400, tmp_path)


TRAINERS = {
    "word_piece": (lambda out: keras_llm.tokenizers.train_word_piece(TRAINING_CORPUS, 300, out),
                   ["vocab.txt"]),
    "byte_pair": (lambda out: keras_llm.tokenizers.train_byte_pair(TRAINING_CORPUS, 400, out),
                  ["merges.txt", "vocab.json"]),
    "sentence_piece": (lambda out: keras_llm.tokenizers.train_sentence_piece(TRAINING_CORPUS, 100, out),
                       ["sentencepiece.model"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_vocabulary_files_get_the_modes_of_the_umask(trainer, umask, file_mode, dir_mode, tmp_path):
    train, names = TRAINERS[trainer]
    old = os.umask(umask)
    try:
        train(tmp_path / "out")
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path / "out")) == names  # nothing else left
    assert [os.stat(tmp_path / "out" / n).st_mode & 0o777 for n in names] == [file_mode] * len(names)
    assert os.stat(tmp_path / "out").st_mode & 0o777 == dir_mode


# Trains a vocabulary and is killed while its file is being put in place (the
# rename into `vocab.txt` stalls until the test kills the process).
KILLED_TRAINER = """
import os, sys, time
import keras_llm
from tests.tokenizers.serving_check import TRAINING_CORPUS

output_dir, marker = sys.argv[1], sys.argv[2]
replace = os.replace

def stalled(source, destination, *args, **kwargs):
    if os.fspath(destination) == os.path.join(output_dir, "vocab.txt"):
        open(marker, "w").close()
        time.sleep(600)
    return replace(source, destination, *args, **kwargs)

os.replace = stalled
keras_llm.tokenizers.train_word_piece(TRAINING_CORPUS, 300, output_dir)
"""


@pytest.mark.slow
def test_what_a_killed_trainer_left_is_removed_by_the_next_run(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    output_dir, marker = tmp_path / "out", tmp_path / "stalled"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_TRAINER, str(output_dir), str(marker)],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the trainer never reached the point to kill it at"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert os.listdir(output_dir) and "vocab.txt" not in os.listdir(output_dir)  # only litter
    keras_llm.tokenizers.train_word_piece(TRAINING_CORPUS, 300, output_dir)
    assert os.listdir(output_dir) == ["vocab.txt"]
