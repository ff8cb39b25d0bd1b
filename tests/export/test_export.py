"""SavedModel export: a TensorFlow-only process, served == in-Python, layout, robustness."""

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tokenizers as hf

import keras_llm
from keras_llm.generation import Generator

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
         "a", "dog", "good", "bad", "##s", ".", "!"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A GPT and a classifier, each exported once for the module's tests."""
    base = tmp_path_factory.mktemp("saved_models")
    keras.utils.set_random_seed(7)
    gpt = keras_llm.build_gpt("gpt_nano", num_layers=2, max_sequence_length=48)
    byte_tokenizer = keras_llm.tokenizers.ByteTokenizer()
    # No stop token: a random model would often stop at once.
    gpt_path = keras_llm.export(gpt, str(base / "gpt"), byte_tokenizer, max_new_tokens=6,
                                stop_token_ids=[])
    classifier = keras_llm.build_bert_classifier(
        "bert_tiny", num_classes=3, vocabulary_size=len(VOCAB), max_sequence_length=16
    )
    word_piece = keras_llm.tokenizers.WordPieceTokenizer(VOCAB)
    classifier_path = keras_llm.export(classifier, str(base / "classifier"), word_piece,
                                       label_names=["negative", "neutral", "positive"])
    masked_lm = keras_llm.build_bert_pretrainer(
        "bert_tiny", vocabulary_size=len(VOCAB), max_sequence_length=16
    )
    masked_lm_path = keras_llm.export(masked_lm, str(base / "masked_lm"), word_piece, top_k=4)
    return dict(gpt=gpt, gpt_path=gpt_path, tokenizer=byte_tokenizer, classifier=classifier,
                classifier_path=classifier_path, word_piece=word_piece, masked_lm=masked_lm,
                masked_lm_path=masked_lm_path)


TEXTS = ["The cat sat", "", "a dog!" * 40, "caf\u00e9 \U0001F642"]
# Blanks: two, none, only blanks, next to words, past the context (dropped), lower-case.
MASKED_TEXTS = ["The [MASK] sat on the [MASK].", "", "[MASK][MASK]", "a[MASK]dogs!",
                "the cat " * 10 + "[MASK]", "the [mask] [MASK]"]

TENSORFLOW_ONLY = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry
    before = set(sys.modules)  # `import tensorflow` itself imports parts of keras
    request = json.loads(sys.stdin.read())
    result = {"ops": {}}
    for name in ("gpt", "classifier", "masked_lm"):
        texts = tf.constant([t.encode("utf-8") for t in request["texts"][name]])
        loaded = tf.saved_model.load(request[name])
        ops = set()
        for signature in loaded.signatures.values():
            graph = signature.graph.as_graph_def()
            ops |= {n.op for n in graph.node}
            ops |= {n.op for f in graph.library.function for n in f.node_def}
            ops -= {f.signature.name for f in graph.library.function}
        result["ops"][name] = sorted(ops)
        result[name] = {k: v.numpy().tolist() for k, v in loaded.signatures["serving_default"](text=texts).items()}
        if name == "gpt":
            n = len(request["texts"][name])
            sampled = loaded.signatures["generate"](
                text=texts, max_new_tokens=tf.fill([n], 5), temperature=tf.fill([n], 0.8),
                top_k=tf.fill([n], 20), top_p=tf.fill([n], 0.9), seed=tf.range(n))
            result["sampled"] = sampled["generated_ids"].numpy().tolist()
            # One value of each setting for every text; a request with no texts.
            one = loaded.signatures["generate"](
                text=texts, max_new_tokens=tf.constant([5]), temperature=tf.constant([0.8]),
                top_k=tf.constant([20]), top_p=tf.constant([0.9]), seed=tf.constant([3]))
            result["one_for_all"] = one["generated_ids"].numpy().tolist()
            empty = loaded.signatures["serving_default"](text=tf.zeros([0], tf.string))
            result["empty"] = {k: [v.dtype.name, v.shape.as_list()] for k, v in empty.items()}
            ids = tf.constant(request["ids"], tf.int32)
            result["logits"] = loaded.signatures["logits"](
                token_ids=ids, padding_mask=tf.ones_like(ids))["logits"].numpy().tolist()
        if name == "masked_lm":
            ids = tf.constant(request["masked_ids"], tf.int32)
            result["mlm_logits"] = loaded.signatures["fill_ids"](
                token_ids=ids, segment_ids=tf.zeros_like(ids), padding_mask=tf.ones_like(ids),
                mask_positions=tf.constant([[2, -1]]))["mlm_logits"].numpy().tolist()
    result["unregistered"] = sorted({op for ops in result["ops"].values() for op in ops
                                     if op_def_registry.get(op) is None})
    result["imported"] = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                                & {"tensorflow_text", "keras", "keras_llm", "keras_hub"})
    print(json.dumps(result, default=lambda b: b.decode("utf-8")))
    """
)


@pytest.mark.slow
def test_a_tensorflow_only_process_serves_the_same_outputs_as_python(exports):
    ids = [[72, 101, 108, 108, 111, 33]]
    masked_ids = [[2, 5, 4, 7, 3]]
    request = dict(gpt=exports["gpt_path"], classifier=exports["classifier_path"],
                   masked_lm=exports["masked_lm_path"], ids=ids, masked_ids=masked_ids,
                   texts=dict(gpt=TEXTS, classifier=TEXTS, masked_lm=MASKED_TEXTS))
    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_ONLY], input=json.dumps(request), capture_output=True,
        text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    # Core ops only: every op is in a plain TensorFlow's registry, none is an
    # XLA op (TF Serving builds without XLA lack their kernels).
    assert served["imported"] == [] and served["unregistered"] == []
    assert not [op for ops in served["ops"].values() for op in ops if op.startswith("Xla")]

    # GPT: the same greedy tokens and the same seeded samples as in Python.
    gpt, tokenizer = exports["gpt"], exports["tokenizer"]
    generator = Generator(gpt, tokenizer)
    prompts = [list(tokenizer.encode_numpy(t)) or [tokenizer.end_token_id] for t in TEXTS]
    expected = [row.tolist() for row in generator.generate(prompts, 6, stop_token_ids=[])]
    assert [row[:n] for row, n in zip(served["gpt"]["generated_ids"], served["gpt"]["generated_length"])] == expected
    texts = generator.generate(TEXTS, 6, stop_token_ids=[])
    assert served["gpt"]["generated_text"] == texts
    for n, prompt in enumerate(prompts):
        sampled = generator.generate(prompt, 5, temperature=0.8, top_k=20, top_p=0.9, seed=n,
                                     stop_token_ids=[])
        assert served["sampled"][n][:5] == sampled.tolist()
    for n, prompt in enumerate(prompts):
        sampled = generator.generate(prompt, 5, temperature=0.8, top_k=20, top_p=0.9, seed=3,
                                     stop_token_ids=[])
        assert served["one_for_all"][n][:5] == sampled.tolist()
    assert served["empty"] == {"generated_text": ["string", [0]], "generated_ids": ["int32", [0, 0]],
                               "generated_length": ["int32", [0]]}
    logits = np.asarray(gpt({"token_ids": np.array(ids, "int32"), "padding_mask": np.ones((1, 6), "int32")}))
    np.testing.assert_allclose(served["logits"], logits, atol=1e-5)

    # Classifier: [CLS] text [SEP] truncated to the context, as in Python.
    word_piece = exports["word_piece"]
    rows = [[2] + word_piece(t).numpy().tolist()[:14] + [3] for t in TEXTS]
    width = max(map(len, rows))
    token_ids = np.array([r + [0] * (width - len(r)) for r in rows], "int32")
    mask = (token_ids > 0).astype("int32")
    logits = np.asarray(exports["classifier"](
        {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": mask}
    ), "float64")
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(served["classifier"]["probabilities"], probabilities, atol=1e-5)
    assert served["classifier"]["label_id"] == probabilities.argmax(-1).tolist()
    names = ["negative", "neutral", "positive"]
    assert served["classifier"]["label"] == [names[i] for i in probabilities.argmax(-1)]

    # Masked LM: the ids of Hugging Face's BERT tokenizer (which knows
    # "[MASK]"), truncated to the context; top-k of a float64 softmax.
    reference = hf.BertWordPieceTokenizer({t: i for i, t in enumerate(VOCAB)}, lowercase=True)
    reference.enable_truncation(16)
    rows = [reference.encode(t).ids for t in MASKED_TEXTS]
    assert [row.count(4) for row in rows] == [2, 0, 2, 1, 0, 1]  # a test of the test
    out = served["masked_lm"]
    positions = [[i for i, t in enumerate(row) if t == 4] for row in rows]
    blanks = max(map(len, positions))
    assert out["mask_positions"] == [p + [-1] * (blanks - len(p)) for p in positions]
    for row, position, top_ids, top_tokens, top_probabilities, filled in zip(
        rows, positions, out["top_token_ids"], out["top_tokens"], out["top_probabilities"],
        out["filled_text"],
    ):
        logits = exports["masked_lm"]({
            "token_ids": np.array([row], "int32"), "segment_ids": np.zeros((1, len(row)), "int32"),
            "padding_mask": np.ones((1, len(row)), "int32"),
            "mask_positions": np.array([position or [0]], "int32"),
        })["mlm_logits"]
        logits = np.asarray(logits, "float64")[0]
        probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        expected = np.argsort(-probabilities, axis=-1, kind="stable")[:, :4]
        for j in range(blanks):
            if j < len(position):
                assert top_ids[j] == expected[j].tolist()
                np.testing.assert_allclose(top_probabilities[j], probabilities[j, expected[j]], atol=1e-5)
                assert top_tokens[j] == [VOCAB[i] for i in expected[j]]
            else:
                assert top_ids[j] == [-1] * 4 and top_tokens[j] == [""] * 4
                assert top_probabilities[j] == [0.0] * 4
        best = dict(zip(position, expected[:, 0]))
        words = [VOCAB[best.get(i, t)] for i, t in enumerate(row)][1:-1]
        assert filled == " ".join(words).replace(" ##", "")
    logits = exports["masked_lm"]({
        "token_ids": np.array(masked_ids, "int32"), "segment_ids": np.zeros((1, 5), "int32"),
        "padding_mask": np.ones((1, 5), "int32"), "mask_positions": np.array([[2, 0]], "int32"),
    })["mlm_logits"]
    np.testing.assert_allclose(served["mlm_logits"], logits, atol=1e-5)


@pytest.mark.slow
def test_saved_model_cli_lists_the_documented_signatures(exports):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", exports["gpt_path"], "--all"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for signature in ("serving_default", "generate", "generate_ids", "logits"):
        assert f"signature_def['{signature}']" in shown.stdout
    for name in ("generated_text", "generated_ids", "generated_length", "max_new_tokens", "top_p"):
        assert f"['{name}']" in shown.stdout
    # The other exports' signature defs, read here (what saved_model_cli prints from them).
    for key, names in [
        ("classifier_path", {"serving_default", "classify_ids", "probabilities", "label_id", "label"}),
        ("masked_lm_path", {"serving_default", "fill_ids", "mask_positions", "top_token_ids",
                            "top_tokens", "top_probabilities", "filled_text", "mlm_logits"}),
    ]:
        signatures = tf.saved_model.load(exports[key]).signatures
        listed = set(signatures)
        for signature in signatures.values():
            listed |= set(signature.structured_input_signature[1]) | set(signature.structured_outputs)
        assert names <= listed, (key, names - listed)


@pytest.mark.slow
def test_versions_are_numbered_written_atomically_and_never_overwritten(tmp_path, monkeypatch):
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=16)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    base = tmp_path / "gpt"
    assert keras_llm.export(model, str(base), tokenizer).endswith(os.sep + "1")
    assert keras_llm.export(model, str(base), tokenizer).endswith(os.sep + "2")
    with pytest.raises(FileExistsError, match="overwrite"):
        keras_llm.export(model, str(base), tokenizer, version=1)
    keras_llm.export(model, str(base), tokenizer, version=1, overwrite=True, max_new_tokens=3)
    loaded = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    assert loaded(text=tf.constant(["x"]))["generated_ids"].shape[1] <= 3
    # A failed save leaves nothing behind, not even a temporary directory.
    monkeypatch.setattr(tf.saved_model, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        keras_llm.export(model, str(base), tokenizer)
    assert sorted(os.listdir(base)) == ["1", "2"]


@pytest.mark.slow  # the module's two exports (14 s)
def test_bad_requests_give_a_documented_result_or_a_clear_error(exports):
    served = tf.saved_model.load(exports["gpt_path"]).signatures["generate"]

    def generate(text, max_new_tokens):
        n = len(text)
        return served(text=tf.constant(text), max_new_tokens=tf.constant(max_new_tokens, tf.int32),
                      temperature=tf.zeros([n]), top_k=tf.zeros([n], tf.int32),
                      top_p=tf.ones([n]), seed=tf.zeros([n], tf.int32))

    out = generate(["abc", ""], [0, 0])
    assert out["generated_length"].numpy().tolist() == [0, 0]
    assert out["generated_text"].numpy().tolist() == [b"", b""]
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_new_tokens must be >= 0"):
        generate(["abc"], [-1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="context of 48 tokens"):
        generate(["abc"], [48])
    # Invalid UTF-8 in, valid UTF-8 out; per-row lengths; the process is fine after errors.
    out = generate([b"\xff\xfe\xc3", b"ok"], [3, 1])
    assert out["generated_length"].numpy().tolist() == [3, 1]
    for text in out["generated_text"].numpy():
        text.decode("utf-8")  # raises if not UTF-8
    classifier = tf.saved_model.load(exports["classifier_path"]).signatures["serving_default"]
    out = classifier(text=tf.constant([b"\xff\xfe the cat", b"the cat"]))
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-6)
    masked_lm = tf.saved_model.load(exports["masked_lm_path"]).signatures
    out = masked_lm["serving_default"](text=tf.constant([b"\xff the [MASK]", b"no blanks"]))
    assert out["mask_positions"].numpy().tolist() == [[2], [-1]]
    out = masked_lm["serving_default"](text=tf.constant(["no", "blanks"]))
    assert out["top_token_ids"].shape == (2, 0, 4) and out["filled_text"].shape == (2,)
    ids = tf.constant([[2, 5, 4, 3]])
    for bad in (4, -2):
        with pytest.raises(tf.errors.InvalidArgumentError, match="mask_positions must be -1"):
            masked_lm["fill_ids"](token_ids=ids, segment_ids=tf.zeros_like(ids),
                                  padding_mask=tf.ones_like(ids), mask_positions=tf.constant([[bad]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one row per row of token_ids"):
        masked_lm["fill_ids"](token_ids=ids, segment_ids=tf.zeros_like(ids),
                              padding_mask=tf.ones_like(ids), mask_positions=tf.constant([[2], [2]]))

    # A prompt longer than the context keeps its last tokens.
    long_text = "x" * 100 + "The end"
    room = 48 - 4
    tail = long_text.encode()[-room:].decode()
    assert generate([long_text], [4])["generated_ids"].numpy().tolist() == generate([tail], [4])[
        "generated_ids"
    ].numpy().tolist()


@pytest.mark.slow
def test_padding_is_never_a_blank_even_when_mask_has_the_padding_id(tmp_path):
    vocabulary = ["[MASK]", "[UNK]", "[CLS]", "[SEP]", "the", "cat"]  # no [PAD]: pads with 0
    model = keras_llm.build_bert_pretrainer("bert_tiny", vocabulary_size=6, num_layers=1)
    path = keras_llm.export(model, str(tmp_path / "m"), keras_llm.tokenizers.WordPieceTokenizer(vocabulary))
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(text=tf.constant(["the [MASK]", "the cat the cat"]))
    assert out["mask_positions"].numpy().tolist() == [[2], [-1]]


@pytest.mark.slow
def test_eight_threads_of_requests_get_the_sequential_answers(exports):
    gpt = tf.saved_model.load(exports["gpt_path"]).signatures["serving_default"]
    classifier = tf.saved_model.load(exports["classifier_path"]).signatures["serving_default"]
    masked_lm = tf.saved_model.load(exports["masked_lm_path"]).signatures["serving_default"]
    inputs = ["The cat sat", "", "a dog! a [MASK]", "good [MASK] mat", "\u00e9t\u00e9", "the"]

    def request(n):
        text = tf.constant([inputs[n % len(inputs)]])
        if n % 3 == 1:
            return classifier(text=text)["probabilities"].numpy().round(6).tolist()
        if n % 3 == 2:
            return masked_lm(text=text)["top_probabilities"].numpy().round(6).tolist()
        return gpt(text=text)["generated_ids"].numpy().tolist()

    sequential = [request(n) for n in range(3 * len(inputs))]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(request, range(800)))
    assert answers == [sequential[n % len(sequential)] for n in range(800)]


def test_export_refuses_what_it_cannot_serve(tmp_path):
    backbone = keras_llm.build_bert("bert_tiny", vocabulary_size=len(VOCAB))
    word_piece = keras_llm.tokenizers.WordPieceTokenizer(VOCAB)
    with pytest.raises(ValueError, match="build_gpt or keras_llm.build_llama, a seq2seq model.*task 'encoder'"):
        keras_llm.export(backbone, str(tmp_path / "m"), word_piece)
    # What a model is comes from the model, not its layer names: a plain
    # functional copy of the pretrainer (an earlier keras_llm's .keras file) is refused.
    pretrainer = keras_llm.build_bert_pretrainer("bert_tiny", vocabulary_size=len(VOCAB))
    plain = keras.Model(pretrainer.inputs, pretrainer.outputs, name="plain")
    with pytest.raises(ValueError, match="'plain' \\(no `task`"):
        keras_llm.export(plain, str(tmp_path / "m"), word_piece)
    pretrainer = keras_llm.build_bert_pretrainer("bert_tiny", vocabulary_size=len(VOCAB))
    with pytest.raises(ValueError, match=r"`top_k` \(fills per \[MASK\]\) must be an int in \[1, 17\]"):
        keras_llm.export(pretrainer, str(tmp_path / "m"), word_piece, top_k=0)
    with pytest.raises(ValueError, match="max_new_tokens.*this model is a masked LM. Received: max_new_tokens=3"):
        keras_llm.export(pretrainer, str(tmp_path / "m"), word_piece, max_new_tokens=3)
    with pytest.raises(ValueError, match="`mask_token_id`"):
        keras_llm.export(pretrainer, str(tmp_path / "m"), keras_llm.tokenizers.WordPieceTokenizer(
            [t for t in VOCAB if t != "[MASK]"] + ["extra"]))
    with pytest.raises(ValueError, match="`cls_token_id`.*WordPieceTokenizer"):
        keras_llm.export(pretrainer, str(tmp_path / "m"), keras_llm.tokenizers.WordPieceTokenizer(
            [t for t in VOCAB if t != "[CLS]"] + ["extra"]))
    # (A tokenizer of another size is refused by the one tokenizer check first.)
    with pytest.raises(ValueError, match=r"exactly the model's 17 token ids.*ByteTokenizer"):
        keras_llm.export(pretrainer, str(tmp_path / "m"), keras_llm.tokenizers.ByteTokenizer())
    with pytest.raises(ValueError, match=r"`tokenizer` must have exactly the model's 17 token ids.*with 16 token ids"):
        keras_llm.export(pretrainer, str(tmp_path / "m"), keras_llm.tokenizers.WordPieceTokenizer(VOCAB[:-1]))
    gpt = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=16)
    with pytest.raises(ValueError, match="max_new_tokens"):
        keras_llm.export(gpt, str(tmp_path / "g"), keras_llm.tokenizers.ByteTokenizer(), max_new_tokens=16)
    with pytest.raises(ValueError, match="tokenizer"):
        keras_llm.export(gpt, str(tmp_path / "g"), object())
    for name in ("g", "m"):
        assert not (tmp_path / name).exists() or os.listdir(tmp_path / name) == []


def test_export_checks_the_tokenizer_and_the_stop_tokens_against_the_model(tmp_path):
    gpt = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=16)
    byte_tokenizer = keras_llm.tokenizers.ByteTokenizer()  # 256 bytes + 2 specials
    assert gpt.vocabulary_size == 256 + 2
    word_piece = keras_llm.tokenizers.WordPieceTokenizer(VOCAB[:8])
    # The one tokenizer check (keras_llm.models.task_model.check_tokenizer) words it.
    with pytest.raises(ValueError, match=r"`tokenizer` must have the model's 258 token ids, or fewer "
                                         r"padded up to them: a causal LM.*Received: tokenizer=WordPieceTokenizer "
                                         r"with 8 token ids"):
        keras_llm.export(gpt, str(tmp_path / "g"), word_piece)
    for stop, error, match in [
        ([258], ValueError, r"`stop_token_ids` must be token ids in \[0, 258\).*: 258$"),
        ([-1, 5], ValueError, r"`stop_token_ids` must be token ids in \[0, 258\).*: -1$"),
        (["x"], TypeError, r"`stop_token_ids` must be integer token ids"),
        ("ab", TypeError, r"`stop_token_ids` must be a list of token ids. Received: stop_token_ids='ab'"),
    ]:
        with pytest.raises(error, match=match):
            keras_llm.export(gpt, str(tmp_path / "g"), byte_tokenizer, stop_token_ids=stop)
    for settings, match in [(dict(seed=2**31), "Received: seed=2147483648"),
                            (dict(top_p=0.0), "Received: top_p=0.0")]:
        with pytest.raises(ValueError, match=match):
            keras_llm.export(gpt, str(tmp_path / "g"), byte_tokenizer, **settings)
    classifier = keras_llm.build_bert_classifier("bert_tiny", num_classes=2, vocabulary_size=8)
    with pytest.raises(ValueError, match=r"`tokenizer` must have the model's 8 token ids, or fewer.*"
                                         r"with 17 token ids"):
        keras_llm.export(classifier, str(tmp_path / "c"), keras_llm.tokenizers.WordPieceTokenizer(VOCAB))
    with pytest.raises(ValueError, match=r"`label_names` must have one name per class \(2\). "
                                         r"Received: label_names='ab'"):
        keras_llm.export(classifier, str(tmp_path / "c"), word_piece, label_names="ab")
    assert not (tmp_path / "g").exists() and not (tmp_path / "c").exists()


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.slow  # a SavedModel export
def test_a_version_gets_the_umask_modes_so_other_users_can_read_it(tmp_path, umask_022):
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=16)
    path = keras_llm.export(model, str(tmp_path / "gpt"), keras_llm.tokenizers.ByteTokenizer())
    modes = {}
    for root, _, files in os.walk(path):
        modes[root] = os.stat(root).st_mode & 0o777
        modes.update({os.path.join(root, f): os.stat(os.path.join(root, f)).st_mode & 0o777 for f in files})
    assert os.path.join(path, "saved_model.pb") in modes and os.path.join(path, "variables") in modes
    # 0o777 & ~0o022 for directories, 0o666 & ~0o022 for files (tempfile gives 0700 / 0600).
    assert {p: oct(m) for p, m in modes.items() if m != (0o755 if os.path.isdir(p) else 0o644)} == {}


def test_the_next_export_removes_what_a_killed_one_left_and_path_must_be_a_directory(tmp_path):
    from keras_llm._atomic import _host

    model = keras_llm.build_gpt("gpt_nano", num_layers=1, max_sequence_length=16)
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    base = tmp_path / "gpt"
    # What `kill -9` during exports of versions 1 and 7 leaves: a process id that no longer exists.
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read()) + 1
    for version in (1, 7):
        leftover = base / f".{version}.incomplete-{_host()}-{dead}-0123456789ab"
        (leftover / "variables").mkdir(parents=True)
        (leftover / "saved_model.pb").write_bytes(b"half")
    path = keras_llm.export(model, str(base), tokenizer)
    assert path == str(base / "1")
    assert sorted(os.listdir(base)) == ["1"]
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    with pytest.raises(ValueError, match=rf"`path` must be a directory.*Received: path='{a_file}', which is a file"):
        keras_llm.export(model, str(a_file), tokenizer)
    assert a_file.read_text() == "not a directory"


def _generate(signature, texts, counts=None, **settings):
    """The `generate` signature with settings of `counts[name]` values (default: one per text)."""
    values = {**dict(max_new_tokens=4, temperature=0.0, top_k=0, top_p=1.0, seed=0), **settings}
    dtypes = dict(max_new_tokens=tf.int32, temperature=tf.float32, top_k=tf.int32, top_p=tf.float32,
                  seed=tf.int32)
    counts = {name: (counts or {}).get(name, len(texts)) for name in values}
    return signature(text=tf.constant(texts, tf.string), **{
        name: tf.fill([counts[name]], tf.constant(value, dtypes[name])) for name, value in values.items()
    })


@pytest.mark.slow  # the module's two exports (14 s)
def test_a_setting_has_one_value_per_text_or_one_for_all(exports):
    signatures = tf.saved_model.load(exports["gpt_path"]).signatures
    texts = ["The cat sat", "a dog"]
    generator = Generator(exports["gpt"], exports["tokenizer"])
    settings = dict(temperature=0.9, top_k=20, top_p=0.9, seed=3)
    # The documented meaning of one value: each text generates as if it had it.
    expected = [generator.generate(t, 5, stop_token_ids=[], **settings) for t in texts]
    one_for_all = {name: 1 for name in ("max_new_tokens", "temperature", "top_k", "top_p", "seed")}
    out = _generate(signatures["generate"], texts, one_for_all, **{**settings, "max_new_tokens": 5})
    assert out["generated_text"].numpy().tolist() == [t.encode() for t in expected]
    for name in one_for_all:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"`{name}` must have one value per prompt \(2 prompts\) or one value "
                                 rf"for all. Received: 3 values of {name}"):
            _generate(signatures["generate"], texts, {name: 3})
    ids = tf.constant([[72, 105], [72, 0]])
    rows = dict(max_new_tokens=tf.constant([3]), temperature=tf.zeros([1]), top_k=tf.zeros([1], tf.int32),
                top_p=tf.ones([1]), seed=tf.zeros([1], tf.int32))
    out = signatures["generate_ids"](token_ids=ids, padding_mask=tf.constant([[1, 1], [1, 0]]), **rows)
    assert out["generated_ids"].numpy().tolist() == [
        generator.generate([72, 105], 3, stop_token_ids=[]).tolist(),
        generator.generate([72], 3, stop_token_ids=[]).tolist(),
    ]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`seed` must have one value per prompt"):
        signatures["generate_ids"](token_ids=ids, padding_mask=tf.ones_like(ids),
                                   **{**rows, "seed": tf.zeros([3], tf.int32)})


@pytest.mark.slow  # the module's two exports (14 s)
def test_a_request_with_no_texts_gets_empty_outputs(exports):
    signatures = tf.saved_model.load(exports["gpt_path"]).signatures
    nothing = tf.zeros([0], tf.string)
    for out in (signatures["serving_default"](text=nothing),
                _generate(signatures["generate"], []),
                _generate(signatures["generate"], [], {"seed": 1})):
        assert out["generated_text"].dtype == tf.string and out["generated_text"].shape == (0,)
        assert out["generated_ids"].dtype == tf.int32 and out["generated_ids"].shape == (0, 0)
        assert out["generated_length"].dtype == tf.int32 and out["generated_length"].shape == (0,)
    no_ids = tf.zeros([0, 0], tf.int32)
    out = signatures["generate_ids"](
        token_ids=no_ids, padding_mask=no_ids, max_new_tokens=tf.constant([4]),
        temperature=tf.zeros([0]), top_k=tf.zeros([0], tf.int32), top_p=tf.ones([0]),
        seed=tf.zeros([0], tf.int32),
    )
    assert out["generated_ids"].shape == (0, 0) and out["generated_length"].shape == (0,)
    out = signatures["logits"](token_ids=tf.zeros([0, 3], tf.int32), padding_mask=tf.zeros([0, 3], tf.int32))
    assert out["logits"].dtype == tf.float32 and out["logits"].shape == (0, 3, 256 + 2)
    # The BERT exports too (the model would fail on [0, 0] inputs).
    out = tf.saved_model.load(exports["classifier_path"]).signatures["serving_default"](text=nothing)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "probabilities": (0, 3), "label_id": (0,), "label": (0,)}
    out = tf.saved_model.load(exports["masked_lm_path"]).signatures["serving_default"](text=nothing)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "mask_positions": (0, 0), "top_token_ids": (0, 0, 4), "top_tokens": (0, 0, 4),
        "top_probabilities": (0, 0, 4), "filled_text": (0,)}


@pytest.mark.slow  # the module's two exports (14 s)
def test_id_signatures_name_ids_outside_the_vocabulary_or_the_context(exports):
    signatures = tf.saved_model.load(exports["gpt_path"]).signatures
    context = exports["gpt"].max_sequence_length
    for bad in (258, -7, 999):
        ids = tf.constant([[72, 105], [bad, 1]])
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"`token_ids` must be token ids in \[0, 258\) \(the vocabulary\). "
                                 rf"Received: token_ids holding 1 id\(s\) outside it: {bad}\]"):
            signatures["logits"](token_ids=ids, padding_mask=tf.ones_like(ids))
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"`token_ids` must be token ids in \[0, 258\)"):
            signatures["generate_ids"](
                token_ids=ids, padding_mask=tf.ones_like(ids), max_new_tokens=tf.constant([1]),
                temperature=tf.zeros([1]), top_k=tf.zeros([1], tf.int32), top_p=tf.ones([1]),
                seed=tf.zeros([1], tf.int32),
            )
    longest = tf.ones([1, context], tf.int32)
    assert signatures["logits"](token_ids=longest, padding_mask=longest)["logits"].shape == (1, context, 258)
    too_long = tf.ones([1, context + 1], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"`token_ids` must be at most {context} tokens long \(the context of the model\). "
                             rf"Received: token_ids of length {context + 1}\]"):
        signatures["logits"](token_ids=too_long, padding_mask=too_long)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`padding_mask` must have the shape of `token_ids` \(1, 2\)"):
        signatures["logits"](token_ids=tf.ones([1, 2], tf.int32), padding_mask=tf.ones([1, 3], tf.int32))
    # The classifier's and the masked LM's id signatures: 17 ids, a context of 16.
    classify_ids = tf.saved_model.load(exports["classifier_path"]).signatures["classify_ids"]
    fill_ids = tf.saved_model.load(exports["masked_lm_path"]).signatures["fill_ids"]
    for ids, match in [
        (tf.constant([[2, 17, 3]]), r"`token_ids` must be token ids in \[0, 17\).*: 17\]"),
        (tf.constant([[2, -1, 3]]), r"`token_ids` must be token ids in \[0, 17\).*: -1\]"),
        (tf.fill([1, 17], 5), r"`token_ids` must be at most 16 tokens long.*Received: token_ids of length 17\]"),
    ]:
        inputs = dict(token_ids=ids, segment_ids=tf.zeros_like(ids), padding_mask=tf.ones_like(ids))
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            classify_ids(**inputs)
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            fill_ids(**inputs, mask_positions=tf.constant([[1]]))
    ids = tf.constant([[2, 5, 3]])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`segment_ids` must have the shape of `token_ids` \(1, 3\). "
                             r"Received: segment_ids of shape 1, 2\]"):
        classify_ids(token_ids=ids, segment_ids=tf.zeros([1, 2], tf.int32), padding_mask=tf.ones_like(ids))


@pytest.mark.parametrize("build", [
    lambda v: keras_llm.build_bert_classifier("bert_tiny", num_classes=2, vocabulary_size=v),
    lambda v: keras_llm.build_bert_tagger("bert_tiny", num_classes=2, vocabulary_size=v),
    lambda v: keras_llm.build_bert_question_answerer("bert_tiny", vocabulary_size=v),
])
def test_a_much_smaller_tokenizer_is_refused_for_every_task_that_reads_ids(build, tmp_path):
    # 8 ids padded to a multiple of 8-128 never make 99: ids 8-98 would never be served.
    model = build(99)
    small = keras_llm.tokenizers.WordPieceTokenizer(VOCAB[:8])
    with pytest.raises(ValueError, match=r"`tokenizer` must have the model's 99 token ids, or fewer "
                                         r"padded up to them.*with 8 token ids"):
        keras_llm.export(model, str(tmp_path / "m"), small)
    assert not (tmp_path / "m").exists()


def test_export_uses_the_carried_tokenizer_and_needs_one(tmp_path):
    classifier = keras_llm.build_bert_classifier(
        "bert_tiny", num_classes=2, vocabulary_size=len(VOCAB), num_layers=1, max_sequence_length=8
    )
    with pytest.raises(ValueError, match=r"carries none.*pass `tokenizer=`.*build the model with "
                                         r"`tokenizer=`.*Received: tokenizer=None"):
        keras_llm.export(classifier, str(tmp_path / "c"))
    classifier.tokenizer = keras_llm.tokenizers.WordPieceTokenizer(VOCAB)
    # An explicit tokenizer is checked against the one the model carries: other special tokens.
    moved = keras_llm.tokenizers.WordPieceTokenizer(VOCAB[2:4] + VOCAB[:2] + VOCAB[4:])
    with pytest.raises(ValueError, match=r"`tokenizer`'s special tokens .* differ from those of the "
                                         r"tokenizer the model carries"):
        keras_llm.export(classifier, str(tmp_path / "c"), moved)
    assert not (tmp_path / "c").exists()


@pytest.mark.slow  # a SavedModel export
def test_a_trained_model_exports_its_weights_without_its_optimizer(tmp_path):
    # A model that took one Adam step holds two moments per weight; the export
    # must hold the weights alone (it held all three, under model/optimizer).
    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_gpt("gpt_nano", num_layers=1, tokenizer=tokenizer)
    token_ids = np.random.default_rng(0).integers(0, 256, (2, 8)).astype("int32")
    model.train_on_batch({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}, token_ids)
    assert model.optimizer.variables  # built: its moments exist
    version = keras_llm.export(model, tmp_path / "gpt")
    saved = tf.train.list_variables(os.path.join(version, "variables", "variables"))
    assert not [name for name, _ in saved if "optimizer" in name]
    weights = sum(int(np.prod(w.shape)) for w in model.weights)
    assert sum(int(np.prod(shape)) for _, shape in saved) < 1.1 * weights
    assert model.optimizer is not None  # training can go on
    model.train_on_batch({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}, token_ids)


def test_an_export_stores_no_gradient_functions_and_serves(tmp_path):
    # A Llama's blocks hold ops with custom gradients (Keras's); TensorFlow
    # traced and stored a gradient function for each, which serving never
    # calls (10% of SmolLM2-135M's export time).
    from tensorflow.core.protobuf import saved_model_pb2

    tokenizer = keras_llm.tokenizers.ByteTokenizer()
    model = keras_llm.build_llama(num_layers=1, hidden_dim=32, num_heads=4, num_key_value_heads=2,
                                  intermediate_dim=64, vocabulary_size=tokenizer.vocabulary_size,
                                  max_sequence_length=32, tokenizer=tokenizer)
    version = keras_llm.export(model, tmp_path / "llama")
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(version, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    assert len(saved.meta_graphs[0].graph_def.library.registered_gradients) == 0
    served = tf.saved_model.load(version).signatures["logits"]
    ids = np.array([[72, 105, 33]], "int32")
    out = served(token_ids=tf.constant(ids), padding_mask=tf.ones_like(ids))["logits"]
    expected = model({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    np.testing.assert_allclose(out.numpy(), np.asarray(expected), atol=1e-5)
