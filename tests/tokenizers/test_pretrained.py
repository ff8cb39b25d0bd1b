"""from_pretrained and save_pretrained against transformers' AutoTokenizer (the reference)."""

import json
import os

import pytest
import tokenizers as hf
import transformers

from keras_llm.tokenizers import (
    CoreOpsBytePairTokenizer,
    CoreOpsWordPieceTokenizer,
    from_pretrained,
    save_pretrained,
)
from tests.tokenizers.serving_check import STRESS, TRAINING_CORPUS
from tests.tokenizers.test_core_ops_word_piece_tokenizer import minilm_directory

# The stress set, and text with the special tokens' characters (not the
# tokens themselves: transformers matches those inside text, keras_llm's
# tokenizers split them as text, as the original BERT and GPT-2 do).
TEXTS = STRESS + ["PAD [pad] CLS mask ] [", "endoftext <| |> < |"]


def auto_ids(directory, texts=TEXTS):
    reference = transformers.AutoTokenizer.from_pretrained(str(directory))
    return [reference(text, add_special_tokens=False)["input_ids"] for text in texts]


def write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")


def listing(directory):
    return sorted(os.listdir(directory))


@pytest.fixture(scope="module")
def word_piece_files(tmp_path_factory):
    """A BERT vocab.txt and tokenizer.json trained by Hugging Face `tokenizers` (uncased)."""
    directory = tmp_path_factory.mktemp("word_piece_files")
    trainer = hf.BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(TRAINING_CORPUS, vocab_size=600)
    trainer.save_model(str(directory))
    trainer.save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture(scope="module")
def byte_pair_files(tmp_path_factory):
    """GPT-2 vocab.json, merges.txt and tokenizer.json trained by Hugging Face `tokenizers`."""
    directory = tmp_path_factory.mktemp("byte_pair_files")
    trainer = hf.ByteLevelBPETokenizer()
    trainer.train_from_iterator(TRAINING_CORPUS, vocab_size=500, special_tokens=["<|endoftext|>"])
    trainer.save_model(str(directory))
    trainer.save(str(directory / "tokenizer.json"))
    return directory


def bert_directory(tmp_path, files, names, **config):
    directory = tmp_path / "bert"
    directory.mkdir()
    for name in names:
        (directory / name).write_bytes((files / name).read_bytes())
    if config:
        write_json(directory / "tokenizer_config.json", config)
    return directory


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_bert_vocab_txt_with_tokenizer_config(word_piece_files, tmp_path, lowercase):
    directory = bert_directory(tmp_path, word_piece_files, ["vocab.txt"],
                               tokenizer_class="BertTokenizer", do_lower_case=lowercase)
    ours = from_pretrained(directory)
    assert isinstance(ours, CoreOpsWordPieceTokenizer)
    assert (ours.lowercase, ours.strip_accents) == (lowercase, lowercase)
    assert ours(TEXTS).to_list() == auto_ids(directory)


def test_bert_lower_cased_with_accents_kept(word_piece_files, tmp_path):
    directory = bert_directory(tmp_path, word_piece_files, ["vocab.txt"],
                               tokenizer_class="BertTokenizerFast", do_lower_case=True,
                               strip_accents=False)
    ours = from_pretrained(directory)
    assert (ours.lowercase, ours.strip_accents) == (True, False)
    assert ours(TEXTS).to_list() == auto_ids(directory)


def test_bert_from_tokenizer_json_alone(word_piece_files, tmp_path):
    """No vocab.txt: the vocabulary and the lower-casing come from tokenizer.json."""
    directory = bert_directory(tmp_path, word_piece_files, ["tokenizer.json"])
    ours = from_pretrained(directory)
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    assert ours.lowercase and ours.vocabulary_size == len(reference)
    assert ours(TEXTS).to_list() == [reference(t, add_special_tokens=False)["input_ids"] for t in TEXTS]


def test_bert_by_config_model_type(word_piece_files, tmp_path):
    directory = bert_directory(tmp_path, word_piece_files, ["vocab.txt"])
    write_json(directory / "config.json", {"model_type": "bert"})
    assert from_pretrained(directory)(TEXTS).to_list() == auto_ids(directory)


def test_real_checkpoint_directory():
    """all-MiniLM-L6-v2 as it is published: vocab.txt, tokenizer.json, configs, weights."""
    directory = minilm_directory()
    ours = from_pretrained(directory)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    assert ours(TEXTS).to_list() == auto_ids(directory)
    for name in ["pad", "unk", "cls", "sep", "mask"]:
        ours_id = ours.unknown_token_id if name == "unk" else getattr(ours, f"{name}_token_id")
        assert ours_id == getattr(reference, f"{name}_token_id")


def gpt2_directory(tmp_path, files, names, **config):
    directory = tmp_path / "gpt2"
    directory.mkdir()
    for name in names:
        (directory / name).write_bytes((files / name).read_bytes())
    if config:
        write_json(directory / "tokenizer_config.json", config)
    return directory


def test_gpt2_vocab_and_merges(byte_pair_files, tmp_path):
    directory = gpt2_directory(tmp_path, byte_pair_files, ["vocab.json", "merges.txt"],
                               tokenizer_class="GPT2Tokenizer")
    ours = from_pretrained(directory)
    assert isinstance(ours, CoreOpsBytePairTokenizer)
    assert ours(TEXTS).to_list() == auto_ids(directory)
    assert ours.end_token_id == transformers.AutoTokenizer.from_pretrained(directory).eos_token_id


def test_gpt2_by_files_or_model_type_or_tokenizer_json(byte_pair_files, tmp_path):
    reference = hf.ByteLevelBPETokenizer(str(byte_pair_files / "vocab.json"),
                                         str(byte_pair_files / "merges.txt"))
    expected = [e.ids for e in reference.encode_batch(TEXTS)]
    by_files = gpt2_directory(tmp_path, byte_pair_files, ["vocab.json", "merges.txt"])
    assert from_pretrained(by_files)(TEXTS).to_list() == expected
    write_json(by_files / "config.json", {"model_type": "gpt2"})
    assert from_pretrained(by_files)(TEXTS).to_list() == expected == auto_ids(by_files)
    only_json = tmp_path / "only_json"
    only_json.mkdir()
    (only_json / "tokenizer.json").write_bytes((byte_pair_files / "tokenizer.json").read_bytes())
    assert from_pretrained(only_json)(TEXTS).to_list() == expected


def test_gpt2_trained_by_keras_llm(tmp_path):
    from keras_llm.tokenizers import train_byte_pair

    train_byte_pair(TRAINING_CORPUS, 400, tmp_path)
    write_json(tmp_path / "tokenizer_config.json", {"tokenizer_class": "GPT2Tokenizer"})
    assert from_pretrained(tmp_path)(TEXTS).to_list() == auto_ids(tmp_path)


def test_directories_transformers_wrote(byte_pair_files, tmp_path):
    """transformers' save_pretrained writes tokenizer.json and tokenizer_config.json only."""
    bert, gpt2 = tmp_path / "bert_saved", tmp_path / "gpt2_saved"
    transformers.AutoTokenizer.from_pretrained(minilm_directory()).save_pretrained(str(bert))
    source = gpt2_directory(tmp_path, byte_pair_files, ["vocab.json", "merges.txt"],
                            tokenizer_class="GPT2Tokenizer")
    transformers.AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(gpt2))
    for directory in (bert, gpt2):
        assert listing(directory) == ["tokenizer.json", "tokenizer_config.json"]
        assert from_pretrained(directory)(TEXTS).to_list() == auto_ids(directory)


# -- save_pretrained ---------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [{}, {"lowercase": False}, {"lowercase": True, "strip_accents": False}],
    ids=["uncased", "cased", "lower-cased-accents-kept"],
)
def test_save_word_piece_for_transformers(word_piece_files, tmp_path, settings):
    ours = CoreOpsWordPieceTokenizer(str(word_piece_files / "vocab.txt"), **settings)
    written = save_pretrained(ours, tmp_path)
    assert sorted(os.path.basename(p) for p in written) == listing(tmp_path) == [
        "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"
    ]
    assert ours(TEXTS).to_list() == auto_ids(tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert (reference.cls_token_id, reference.mask_token_id) == (ours.cls_token_id, ours.mask_token_id)
    loaded = from_pretrained(tmp_path)
    assert loaded.get_config() | {"name": None} == ours.get_config() | {"name": None}


def test_save_word_piece_with_missing_special_tokens(tmp_path):
    """Names the vocabulary lacks are not added: transformers keeps the same vocabulary."""
    ours = CoreOpsWordPieceTokenizer(["[UNK]", "[CLS]", "the", "cat", "##s", "!"])
    save_pretrained(ours, tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(reference) == ours.vocabulary_size
    assert ours(TEXTS).to_list() == auto_ids(tmp_path)


def test_save_real_checkpoint_tokenizer(tmp_path):
    directory = minilm_directory()
    save_pretrained(from_pretrained(directory), tmp_path)
    assert auto_ids(tmp_path) == auto_ids(directory)


@pytest.mark.parametrize("end_token", [True, False], ids=["with-endoftext", "without"])
def test_save_byte_pair_for_transformers(byte_pair_files, tmp_path, end_token):
    vocabulary = json.loads((byte_pair_files / "vocab.json").read_text(encoding="utf-8"))
    merges = (byte_pair_files / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    if not end_token:  # <|endoftext|> is id 0 here: renumber the rest
        del vocabulary["<|endoftext|>"]
        vocabulary = {token: i - 1 for token, i in vocabulary.items()}
    ours = CoreOpsBytePairTokenizer(vocabulary, merges)
    save_pretrained(ours, tmp_path)
    assert listing(tmp_path) == ["merges.txt", "special_tokens_map.json", "tokenizer_config.json",
                                 "vocab.json"]
    assert ours(TEXTS).to_list() == auto_ids(tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(reference) == ours.vocabulary_size
    assert reference.eos_token_id == ours.end_token_id
    loaded = from_pretrained(tmp_path)
    assert (loaded.vocabulary, loaded.merges) == (ours.vocabulary, ours.merges)


# -- bad input: named, and nothing written ------------------------------------------


def test_directories_that_hold_no_tokenizer_are_named(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=f"Received: path='{missing}' \\(does not exist\\)"):
        from_pretrained(missing)
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(FileNotFoundError, match=(
        f"{tmp_path} holds no tokenizer keras_llm reads. Found: README.md, model.safetensors. "
        "Expected: vocab.txt .* vocab.json and merges.txt")):
        from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="a file; pass its directory"):
        from_pretrained(tmp_path / "README.md")
    write_json(tmp_path / "config.json", {"model_type": "bert"})
    with pytest.raises(FileNotFoundError, match="neither vocab.txt nor tokenizer.json.*Found: README.md"):
        from_pretrained(tmp_path)
    write_json(tmp_path / "config.json", {"model_type": "gpt2"})
    with pytest.raises(FileNotFoundError, match="neither vocab.json and merges.txt nor tokenizer.json"):
        from_pretrained(tmp_path)


def test_unsupported_tokenizers_are_named(word_piece_files, tmp_path):
    directory = bert_directory(tmp_path, word_piece_files, ["vocab.txt"],
                               tokenizer_class="LlamaTokenizerFast")
    with pytest.raises(ValueError, match="tokenizer_config.json: keras_llm reads .*BertTokenizer.*"
                                         "GPT2Tokenizer.*Received: tokenizer_class='LlamaTokenizerFast'"):
        from_pretrained(directory)
    write_json(directory / "tokenizer_config.json", {})
    write_json(directory / "config.json", {"model_type": "t5"})
    with pytest.raises(ValueError, match="config.json: .*Received: model_type='t5'"):
        from_pretrained(directory)
    write_json(directory / "config.json", {"model_type": "bert"})
    for key in ["tokenize_chinese_chars", "do_basic_tokenize"]:
        write_json(directory / "tokenizer_config.json", {key: False})
        with pytest.raises(ValueError, match=f"tokenizer_config.json: .*Received: {key}=False"):
            from_pretrained(directory)
    write_json(directory / "tokenizer_config.json", {"do_lower_case": "yes"})
    with pytest.raises(ValueError, match="`do_lower_case` must be a bool. Received: do_lower_case='yes'"):
        from_pretrained(directory)
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    write_json(gpt2 / "tokenizer_config.json", {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True})
    with pytest.raises(ValueError, match="Received: add_prefix_space=True"):
        from_pretrained(gpt2)


@pytest.mark.parametrize("key,wanted,action", [
    ("normalizer", "BertNormalizer", "normalizes text"),
    ("pre_tokenizer", "BertPreTokenizer", "splits words"),
])
def test_a_word_piece_json_with_another_normalizer_or_pre_tokenizer_is_named(
    word_piece_files, tmp_path, key, wanted, action
):
    directory = bert_directory(tmp_path, word_piece_files, ["tokenizer.json"])
    tokenizer_json = json.loads((directory / "tokenizer.json").read_text())
    for value, received in (({"type": "Sequence"}, "'Sequence'"), ("odd", "'odd'")):
        write_json(directory / "tokenizer.json", {**tokenizer_json, key: value})
        with pytest.raises(ValueError) as error:
            from_pretrained(directory)
        assert str(error.value) == (
            f"{directory / 'tokenizer.json'}: keras_llm's WordPiece {action} as BERT does "
            f"({wanted}). Received: {key} of type {received}"
        )


def test_malformed_files_are_named_with_their_line(word_piece_files, byte_pair_files, tmp_path):
    directory = bert_directory(tmp_path, word_piece_files, ["vocab.txt"])
    (directory / "tokenizer_config.json").write_text('{\n  "do_lower_case": true,\n}\n')
    with pytest.raises(ValueError, match=r"tokenizer_config.json:3:1: not valid JSON"):
        from_pretrained(directory)
    (directory / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"tokenizer_config.json: expected a JSON object"):
        from_pretrained(directory)
    (directory / "tokenizer_config.json").unlink()
    (directory / "vocab.txt").write_text("[UNK]\nthe\ncat\nthe\n")
    with pytest.raises(ValueError, match=r"vocab.txt:4: token 'the' repeats line 2"):
        from_pretrained(directory)
    # vocab.txt and tokenizer.json that disagree: transformers would read tokenizer.json.
    tokens = (word_piece_files / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (directory / "vocab.txt").write_text("\n".join(reversed(tokens)) + "\n", encoding="utf-8")
    (directory / "tokenizer.json").write_bytes((word_piece_files / "tokenizer.json").read_bytes())
    with pytest.raises(ValueError, match="vocab.txt and .*tokenizer.json hold different vocabularies"):
        from_pretrained(directory)

    gpt2 = gpt2_directory(tmp_path, byte_pair_files, ["vocab.json", "merges.txt", "tokenizer.json"])
    assert isinstance(from_pretrained(gpt2), CoreOpsBytePairTokenizer)  # the three agree
    merges = (gpt2 / "merges.txt").read_text(encoding="utf-8").splitlines()
    (gpt2 / "merges.txt").write_text("\n".join(merges[:-1]) + "\n", encoding="utf-8")  # one less
    with pytest.raises(ValueError, match="vocab.json and merges.txt differ from .*tokenizer.json"):
        from_pretrained(gpt2)
    (gpt2 / "tokenizer.json").unlink()
    with open(gpt2 / "merges.txt", "a", encoding="utf-8") as f:
        f.write("Ġ q z\n")
    lines = (gpt2 / "merges.txt").read_text(encoding="utf-8").count("\n")
    with pytest.raises(ValueError, match=f"merges.txt:{lines}: expected two tokens separated by one space"):
        from_pretrained(gpt2)


def test_added_tokens_outside_the_vocabulary_are_refused(word_piece_files, tmp_path):
    directory = bert_directory(tmp_path, word_piece_files, ["vocab.txt"], tokenizer_class="BertTokenizer")
    write_json(directory / "added_tokens.json", {"<new>": 600})
    with pytest.raises(ValueError, match="added_tokens.json: adds the token '<new>' with the id 600"):
        from_pretrained(directory)


def test_from_pretrained_writes_nothing(word_piece_files, tmp_path):
    directory = bert_directory(tmp_path, word_piece_files, ["vocab.txt", "tokenizer.json"],
                               tokenizer_class="BertTokenizer")
    before = {name: (directory / name).read_bytes() for name in listing(directory)}
    from_pretrained(directory)
    assert {name: (directory / name).read_bytes() for name in listing(directory)} == before


def test_save_pretrained_refuses_before_writing(word_piece_files, tmp_path):
    ours = CoreOpsWordPieceTokenizer(str(word_piece_files / "vocab.txt"))
    with pytest.raises(TypeError, match="Received: tokenizer of type str"):
        save_pretrained("vocab.txt", tmp_path)
    with pytest.raises(FileNotFoundError, match="must be an existing directory.*does not exist"):
        save_pretrained(ours, tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(FileExistsError, match="holds tokenizer.json, which transformers would read"):
        save_pretrained(ours, tmp_path)
    assert listing(tmp_path) == ["tokenizer.json"]
    (tmp_path / "tokenizer.json").unlink()
    marked = CoreOpsWordPieceTokenizer(["[UNK]", "a", "@@b"], suffix_indicator="@@")
    with pytest.raises(ValueError, match="BertTokenizer always uses suffix_indicator='##'.*Received: "
                                         "suffix_indicator='@@'"):
        save_pretrained(marked, tmp_path)
    assert listing(tmp_path) == []
