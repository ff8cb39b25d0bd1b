"""Every task that exports: built with its tokenizer, saved, loaded, exported with no tokenizer argument.

The export finds the tokenizer on the model (`model.tokenizer`, back from
the `.keras` file) and its serving module in `keras_llm.models.registry`;
each `serving_default` answer on raw text is checked against the loaded
model recomputed in NumPy (full passes, float64 softmax), not against the
export's own numbers.
"""


import numpy as np

from keras_llm.models import registry

TINY = dict(num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog"]
END = 256  # ByteTokenizer's end token: a GPT's stop and empty-prompt start, a seq2seq start/end


def _softmax(logits):
    logits = np.asarray(logits, "float64")
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _bert(ids):
    ids = np.array([ids], "int32")
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}


def _gpt_expected(model, text, new):
    ids = list(text.encode("utf-8")) or [END]
    out = []
    for _ in range(new):
        x = np.array([ids + out], "int32")
        out.append(int(np.argmax(model({"token_ids": x, "padding_mask": np.ones_like(x)})[0, -1])))
        if out[-1] == END:
            break
    return out


def _seq2seq_expected(model, text, new):
    source = np.array([list(text.encode("utf-8"))[: model.max_sequence_length - 1] + [END]], "int32")
    out = []
    for _ in range(new):
        target = np.array([[END] + out], "int32")
        logits = model({"encoder_token_ids": source, "encoder_padding_mask": np.ones_like(source),
                        "decoder_token_ids": target, "decoder_padding_mask": np.ones_like(target)})
        out.append(int(np.argmax(logits[0, -1])))
        if out[-1] == END:
            break
    return out


def _check_decoded(expected_of, restored, served, texts):
    for n, text in enumerate(texts):
        expected = expected_of(restored, text, 4)
        count = int(served["generated_length"][n])
        assert served["generated_ids"].numpy()[n, :count].tolist() == expected, text
        kept = bytes(t for t in expected if t < 256).decode("utf-8", "replace")
        assert served["generated_text"].numpy()[n].decode("utf-8") == kept


def _check_masked_lm(restored, served, texts):
    (text,) = texts  # "the [MASK] sat": [CLS] the [MASK] sat [SEP]
    inputs = {**_bert([2, 5, 4, 7, 3]), "mask_positions": np.array([[2]], "int32")}
    probabilities = _softmax(restored(inputs)["mlm_logits"])[0, 0]
    top = np.argsort(-probabilities, kind="stable")[:5]  # the default top_k: 5
    assert served["mask_positions"].numpy().tolist() == [[2]]
    assert served["top_token_ids"].numpy()[0, 0].tolist() == top.tolist()
    np.testing.assert_allclose(served["top_probabilities"][0, 0], probabilities[top], atol=1e-5)
    assert [t.decode() for t in served["top_tokens"].numpy()[0, 0]] == [WORDS[i] for i in top]


def _check_classifier(restored, served, texts):
    (text,) = texts  # "the cat sat": [CLS] the cat sat [SEP]
    probabilities = _softmax(restored(_bert([2, 5, 6, 7, 3])))[0]
    np.testing.assert_allclose(served["probabilities"][0], probabilities, atol=1e-5)
    assert int(served["label_id"][0]) == probabilities.argmax()
    assert served["label"].numpy()[0].decode() == str(probabilities.argmax())


def _check_tagger(restored, served, texts):
    probabilities = _softmax(restored(_bert([2, 5, 6, 7, 3])))[0]  # one piece per word
    assert served["tag_ids"].numpy()[0].tolist() == probabilities[1:4].argmax(-1).tolist()
    np.testing.assert_allclose(served["scores"][0], probabilities[1:4].max(-1), atol=1e-5)


def _check_question_answerer(restored, served, texts):
    # [CLS] who(=[UNK]) sat [SEP] the cat sat [SEP]; the context is positions 4-6.
    ids = [2, 1, 7, 3, 5, 6, 7, 3]
    inputs = _bert(ids)
    inputs["segment_ids"] = np.array([[0, 0, 0, 0, 1, 1, 1, 1]], "int32")
    outputs = restored(inputs)
    start, end = (np.asarray(outputs[k], "float64")[0] for k in ("start_logits", "end_logits"))
    spans = [(start[s] + end[e], s, e) for s in range(4, 7) for e in range(s, 7)]
    _, s, e = max(spans)
    assert served["answer"].numpy()[0].decode() == " ".join(["the", "cat", "sat"][s - 4:e - 3])


# Per task: (builder arguments, its tokenizer, export settings, request, check): what
# tests/models/test_registry.py exports each loaded model with and checks its answer by.
CASES = {
    "causal_lm": (dict(TINY), "byte", dict(max_new_tokens=4), {"text": ["Hi", "", "caf\u00e9"]},
                  lambda *a: _check_decoded(_gpt_expected, *a)),
    "seq2seq_lm": (dict(TINY), "byte", dict(max_new_tokens=4), {"text": ["Hallo", "", "x" * 40]},
                   lambda *a: _check_decoded(_seq2seq_expected, *a)),
    "masked_lm": (dict(TINY), "word_piece", {}, {"text": ["the [MASK] sat"]}, _check_masked_lm),
    "classifier": (dict(TINY, num_classes=3), "word_piece", {}, {"text": ["the cat sat"]},
                   _check_classifier),
    "tagger": (dict(TINY, num_classes=3), "word_piece", {}, {"text": ["the cat sat"]},
               _check_tagger),
    # A context of 16 tokens: the windows' defaults come from it (Hugging Face's 128 and 64
    # do not fit).
    "question_answerer": (dict(TINY), "word_piece", {},
                          {"question": ["who sat"], "context": ["the cat sat"]},
                          _check_question_answerer),
}


def test_every_exported_task_has_a_case():
    assert sorted(CASES) == sorted(name for name, task in registry.TASKS.items() if task.serving)
