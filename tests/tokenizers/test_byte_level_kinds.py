"""The byte-level BPE of GPT-2, Llama 3, Qwen2 and SmolLM2 from tokenizer.json, against `tokenizers`/`transformers`."""

import json
import random
import unicodedata

import keras
import pytest
import tensorflow as tf
import transformers

from keras_llm.tokenizers import BytePairTokenizer, CoreOpsBytePairTokenizer, from_pretrained, save_pretrained
from keras_llm.tokenizers._normalization import NFC, _tables
from tests.tokenizers.byte_level_reference import CHATML, KINDS, TEXTS, write_directory
from tests.tokenizers.serving_check import run_in_tensorflow_only_process


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    """{kind: (directory, reference `tokenizers.Tokenizer`, our tokenizer read from it)}."""
    found = {}
    for kind in KINDS:
        directory = tmp_path_factory.mktemp(kind)
        reference = write_directory(directory, kind, "Qwen2Tokenizer" if kind == "qwen2" else
                                    "PreTrainedTokenizerFast")
        found[kind] = directory, reference, from_pretrained(directory)
    return found


def reference_ids(reference, texts=TEXTS):
    return [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("kind", KINDS)
def test_ids_equal_tokenizers_and_transformers(directories, kind):
    directory, reference, ours = directories[kind]
    assert isinstance(ours, CoreOpsBytePairTokenizer) and ours.pre_tokenizer == kind
    expected = reference_ids(reference)
    assert ours(TEXTS).to_list() == expected
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    auto = transformers.AutoTokenizer.from_pretrained(str(directory))
    for hf_tokenizer in (fast, auto):
        assert [hf_tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS] == expected
    # Each added token written in text is one id.
    assert ours("<|eot_id|><think>").numpy().tolist() == [reference.token_to_id("<|eot_id|>"),
                                                          reference.token_to_id("<think>")]


def test_inside_a_tf_function(directories):
    """As the exports call it: traced into the caller's graph (Qwen2's: NFC, a split, added tokens)."""
    _, reference, ours = directories["qwen2"]
    graph = tf.function(lambda texts: ours(texts), input_signature=[tf.TensorSpec([None], tf.string)])
    assert graph(tf.constant(TEXTS)).to_list() == reference_ids(reference)


@pytest.mark.parametrize("kind", KINDS)
def test_detokenize_and_settings(directories, kind):
    _, reference, ours = directories[kind]
    ids = reference_ids(reference)
    decoded = [t.decode("utf-8", "replace") for t in ours.detokenize(tf.ragged.constant(ids)).numpy()]
    assert decoded == [reference.decode(row, skip_special_tokens=False) for row in ids]
    assert (ours.normalization, ours.ignore_merges) == ({"qwen2": "NFC"}.get(kind), kind == "llama3")
    assert (ours.bos_token, ours.eos_token, ours.chat_template) == ("<|endoftext|>", "<|im_end|>", CHATML)
    assert ours.end_token_id == reference.token_to_id("<|im_end|>")
    assert ours.add_bos_token == (kind == "llama3")
    assert ours.vocabulary_size == reference.get_vocab_size(with_added_tokens=True)


def test_config_round_trip_keeps_everything(directories):
    _, reference, ours = directories["qwen2"]
    restored = CoreOpsBytePairTokenizer.from_config(json.loads(json.dumps(ours.get_config())))
    assert restored.get_config() == ours.get_config()
    assert restored(TEXTS).to_list() == reference_ids(reference)
    serialized = keras.saving.serialize_keras_object(ours)
    assert keras.saving.deserialize_keras_object(serialized).get_config() == ours.get_config()


def test_cached_tokenizer_takes_the_same_settings(directories):
    _, reference, ours = directories["llama3"]
    cached = BytePairTokenizer.from_config(ours.get_config())
    for _ in range(2):  # filling the cache, then from it
        assert cached(TEXTS).to_list() == reference_ids(reference)


@pytest.mark.parametrize("kind", KINDS)
def test_save_pretrained_reads_back_in_transformers(directories, kind, tmp_path):
    _, reference, ours = directories[kind]
    save_pretrained(ours, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert [auto(t, add_special_tokens=False)["input_ids"] for t in TEXTS] == reference_ids(reference)
    assert (auto.bos_token, auto.eos_token, auto.chat_template) == ("<|endoftext|>", "<|im_end|>", CHATML)
    with_specials = auto("hi")["input_ids"]
    assert (with_specials[0] == ours.bos_token_id) == ours.add_bos_token
    loaded = from_pretrained(tmp_path)
    assert loaded.get_config() | {"name": None} == ours.get_config() | {"name": None}


def test_nfc_equals_unicodedata():
    decomposed, classes, pairs = _tables()
    pool = sorted({chr(c) for c in list(decomposed)[::7] + list(classes) + [b for _, b in pairs]})
    pool += list("aeiouAEOU \u3000") + [chr(c) for c in range(0x1100, 0x1176, 3)]
    rng = random.Random(0)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 10))) for _ in range(3000)]
    ours = NFC()(tf.constant(texts)).numpy()
    assert [t.decode() for t in ours] == [unicodedata.normalize("NFC", t) for t in texts]


def _edit(directory, **changes):
    tokenizer_json = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    for key, value in changes.items():
        *parents, last = key.split("__")
        target = tokenizer_json
        for part in parents:
            target = target[int(part) if isinstance(target, list) else part]
        target[last] = value
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")


@pytest.mark.parametrize("changes,message", [
    ({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}},
     "Received: pre_tokenizer=Metaspace\\(replacement='▁', prepend_scheme='always'\\)"),
    ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}},
     "Received: pre_tokenizer=ByteLevel\\(add_prefix_space=True"),
    ({"pre_tokenizer__pretokenizers__0__pattern": {"Regex": "\\s+"}},
     r"Received: pre_tokenizer=Sequence\[Split\(pattern={'Regex': '\\\\s\+'}"),
    ({"normalizer": {"type": "NFKC"}}, "NFC \\(Qwen2\\) or not at all. Received: normalizer of types \\['NFKC'\\]"),
    ({"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}},
     "Received: normalizer of types \\['NFC', 'Lowercase'\\]"),
    ({"model__byte_fallback": True}, "expected model.byte_fallback=False. Received: model.byte_fallback=True"),
], ids=["metaspace", "prefix-space", "other-split", "nfkc", "lowercase", "byte-fallback"])
def test_other_pipelines_are_refused_by_name(tmp_path, changes, message):
    write_directory(tmp_path, "qwen2")
    _edit(tmp_path, **changes)
    with pytest.raises(ValueError, match=f"{tmp_path / 'tokenizer.json'}: .*{message}"):
        from_pretrained(tmp_path)


def test_added_tokens_and_classes_it_cannot_match_are_refused(tmp_path):
    write_directory(tmp_path, "llama3")
    tokenizer_json = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_json["added_tokens"][-1]["lstrip"] = True
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    with pytest.raises(ValueError, match="without lstrip. Received: '</think>' with lstrip=True"):
        from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizerFast"}))
    with pytest.raises(ValueError, match="Received: tokenizer_class='LlamaTokenizerFast'"):
        from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|missing|>"}))
    with pytest.raises(ValueError, match="`eos_token` is not a token of the vocabulary. "
                                         "Received: eos_token='<|missing|>'"):
        from_pretrained(tmp_path)


def test_constructor_refuses_unknown_settings_by_name(directories):
    _, _, ours = directories["gpt2"]
    vocabulary, merges = ours.vocabulary, ours.merges
    for key, value, message in [
        ("pre_tokenizer", "llama4", "`pre_tokenizer` must be one of 'gpt2', 'llama3', 'qwen2', 'smollm'. "
                                    "Received: pre_tokenizer='llama4'"),
        ("normalization", "NFKC", "Received: normalization='NFKC'"),
        ("added_tokens", ["<|nope|>"], "Received: '<|nope|>', which it lacks"),
        ("eos_token", "<|nope|>", "Received: eos_token='<|nope|>'"),
    ]:
        with pytest.raises(ValueError, match=message):
            CoreOpsBytePairTokenizer(vocabulary, merges, **{key: value})


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_served_from_a_tensorflow_only_process(directories, tmp_path):
    _, reference, ours = directories["qwen2"]  # NFC, a split expression and added tokens
    result = run_in_tensorflow_only_process(ours, TEXTS, tmp_path)
    assert result["ids"] == reference_ids(reference)
    assert result["unregistered"] == [] and result["imported"] == []


def test_bytes_the_vocabulary_lacks_are_dropped_as_hugging_face_drops_them():
    """SmolLM2's vocabulary lacks 21 byte symbols; Hugging Face's BPE (no unknown token) drops them."""
    import tokenizers as hf

    symbols = hf.pre_tokenizers.ByteLevel.alphabet()
    lacking = {"Ā", "ć", "Ŀ"}  # the bytes 0x00, 0x07 and 0x7f (GPT-2's symbols for them)
    reference = hf.Tokenizer(hf.models.BPE())
    reference.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.train_from_iterator(["plain text 123", "more text"] * 5, hf.trainers.BpeTrainer(
        vocab_size=300, show_progress=False, initial_alphabet=sorted(set(symbols) - lacking)))
    assert not lacking & set(reference.get_vocab())
    model = json.loads(reference.to_str())["model"]
    texts = ["ctrl\x00\x07\x1bchars\x7f", "\x00", "a \x07\x07 b"]
    expected = [e.ids for e in reference.encode_batch(texts)]
    for kind in (CoreOpsBytePairTokenizer, BytePairTokenizer):
        ours = kind(model["vocab"], [" ".join(m) for m in model["merges"]])
        assert ours(texts).to_list() == expected
