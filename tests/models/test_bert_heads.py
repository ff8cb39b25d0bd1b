"""The tagging and question-answering heads learn from their pipelines and are scored by keras_llm.evaluation."""

import numpy as np
import pytest

import keras_llm
from keras_llm.evaluation import answer_questions, entity_f1, squad_scores

# Training tests: the full tier runs them.
pytestmark = pytest.mark.slow

SMALL = dict(num_layers=1, num_heads=2, hidden_dim=64, intermediate_dim=128, dropout=0.0)
NAMES, SURNAMES, PLACES = ["alice", "bob", "carol"], ["smith", "jones"], ["paris", "rome", "oslo"]
FILLER = ["the", "met", "in", "and", "saw", "went", "to", "a", "dog", "cat", "ran", "far"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "?"] + NAMES + SURNAMES + PLACES + FILLER + [
    ".", "##s"]
TOKENIZER = keras_llm.tokenizers.WordPieceTokenizer(VOCAB)


def test_a_tagger_learns_entities_from_token_tagging_dataset_and_entity_f1_scores_it():
    rng = np.random.default_rng(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC"]

    def sentence():
        words, labels = [], []
        for _ in range(rng.integers(3, 12)):
            kind = rng.random()
            if kind < 0.1:
                words.append(str(rng.choice(NAMES)))
                labels.append("B-PER")
            elif kind < 0.2:  # two-word people
                words += [str(rng.choice(NAMES)), str(rng.choice(SURNAMES))]
                labels += ["B-PER", "I-PER"]
            elif kind < 0.35:  # two pieces, "rome ##s", now and then: the tag goes to the first
                words.append(str(rng.choice(PLACES)) + ("s" if rng.random() < 0.3 else ""))
                labels.append("B-LOC")
            else:
                words.append(str(rng.choice(FILLER)))
                labels.append("O")
        return words, labels

    examples = [sentence() for _ in range(400)]
    data = keras_llm.data.load_texts([{"tokens": w, "tags": t} for w, t in examples],
                                     text_field="tokens", label_field="tags")
    model = keras_llm.build_bert_tagger(vocabulary_size=len(VOCAB), max_sequence_length=32,
                                        num_classes=len(tags), **SMALL)
    train = keras_llm.data.token_tagging_dataset(data, TOKENIZER, 16, sequence_length=32,
                                                 label_names=tags, repeat=True)
    # As built: compiled, so fit runs at once; a learning rate for a model from scratch.
    keras_llm.compile_model(model, "token_tagging", learning_rate=3e-3, total_steps=300, warmup_steps=20)
    model.fit(train, steps_per_epoch=300, epochs=1, verbose=0)
    test = keras_llm.data.token_tagging_dataset(data.take(100), TOKENIZER, 16, sequence_length=32,
                                                label_names=tags, shuffle=False, bucket=False)
    truth, predicted = [], []
    for x, labels, weights in test:
        guesses = np.argmax(model.predict_on_batch(x), -1)
        for row in range(len(labels)):
            first = weights[row].numpy() > 0
            truth.append([tags[t] for t in labels[row].numpy()[first]])
            predicted.append([tags[t] for t in guesses[row][first]])
    assert truth == [t for _, t in examples[:100]]  # first pieces are the words, in order
    assert entity_f1(truth, predicted)["f1"] > 0.95


def test_a_question_answerer_learns_from_question_answering_dataset_over_windows():
    rng = np.random.default_rng(1)

    def example():
        words = list(rng.choice(FILLER, rng.integers(4, 40)))
        at = int(rng.integers(len(words)))
        name = str(rng.choice(NAMES))
        words.insert(at, name)
        context = " ".join(w.upper() if rng.random() < 0.3 else w for w in words)
        start = len(" ".join(words[:at])) + (at > 0)
        return {"question": "who?", "context": context,
                "answers": {"text": [context[start:start + len(name)]], "answer_start": [start]}}

    examples = [example() for _ in range(500)]
    model = keras_llm.build_bert_question_answerer(vocabulary_size=len(VOCAB), max_sequence_length=24,
                                                   **SMALL)
    settings = dict(sequence_length=24, doc_stride=6, max_question_length=4)
    train = keras_llm.data.question_answering_dataset(examples, TOKENIZER, 16, repeat=True, **settings)
    keras_llm.compile_model(model, "question_answering", learning_rate=3e-3, total_steps=400,
                            warmup_steps=20)
    model.fit(train, steps_per_epoch=400, epochs=1, verbose=0)
    held_out = [example() for _ in range(60)]
    out = answer_questions(model, TOKENIZER, [e["question"] for e in held_out],
                           [e["context"] for e in held_out], doc_stride=6, max_question_length=4)
    answers = [a.decode() for a in out["answer"].numpy()]
    # Contexts of up to 41 words and windows of 19 tokens: most answers are in one window of several.
    scores = squad_scores(answers, [e["answers"]["text"] for e in held_out])
    assert scores["exact_match"] > 90, list(zip(answers, [e["answers"]["text"] for e in held_out]))
