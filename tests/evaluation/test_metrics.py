"""accuracy and entity_f1 against seqeval; squad_scores against SQuAD v1.1's definitions, worked by hand."""

import warnings

import numpy as np
import pytest
import seqeval.metrics

from keras_llm.evaluation import accuracy, entity_f1, squad_scores

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def random_tag_sequences(rng, count):
    """Tag sequences of 0-12 tags: well-formed and not (I- after O, type switches mid-entity)."""
    return [list(rng.choice(TAGS, rng.integers(0, 13))) for _ in range(count)]


def corrupted(rng, sequences, rate):
    """The sequences with a fraction `rate` of their tags replaced at random."""
    return [[t if rng.random() > rate else str(rng.choice(TAGS)) for t in row] for row in sequences]


@pytest.mark.parametrize("seed", range(6))
def test_entity_f1_is_seqevals_default_mode_on_random_tags(seed):
    rng = np.random.default_rng(seed)
    true = random_tag_sequences(rng, 40)
    predicted = corrupted(rng, true, rate=[0.0, 0.1, 0.3, 0.6, 1.0, 0.2][seed])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns about 0/0
        expected = {
            "precision": seqeval.metrics.precision_score(true, predicted),
            "recall": seqeval.metrics.recall_score(true, predicted),
            "f1": seqeval.metrics.f1_score(true, predicted),
        }
    got = entity_f1(true, predicted)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)
    assert accuracy(true, predicted) == pytest.approx(seqeval.metrics.accuracy_score(true, predicted))


def test_entity_f1_reads_tags_as_conlleval_does():
    # (true, predicted, precision, recall) worked by hand: an I- after O
    # starts an entity; a type switch ends one and starts another; B- after
    # B- of the same type is two entities; spans must match exactly.
    cases = [
        (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"], 1.0, 1.0),
        (["B-PER", "I-PER", "O"], ["O", "I-PER", "O"], 0.0, 0.0),
        (["O", "I-PER", "I-PER"], ["O", "B-PER", "I-PER"], 1.0, 1.0),
        (["B-PER", "I-LOC"], ["B-PER", "B-LOC"], 1.0, 1.0),
        (["B-PER", "B-PER"], ["B-PER", "I-PER"], 0.0, 0.0),
        (["B-LOC", "O", "B-PER"], ["B-LOC", "O", "O"], 1.0, 0.5),
        (["O", "O"], ["B-MISC", "O"], 0.0, 0.0),
        (["O", "O"], ["O", "O"], 0.0, 0.0),  # nothing to count: 0, as seqeval
    ]
    for true, predicted, precision, recall in cases:
        got = entity_f1([true], [predicted])
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert got == {"precision": precision, "recall": recall, "f1": f1}, (true, predicted)


def test_entity_f1_and_accuracy_name_bad_input():
    with pytest.raises(ValueError, match=r"`true_tag_sequences\[1\]` and `predicted_tag_sequences\[1\]` must be tag sequences of the same length"):
        entity_f1([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match=r"Received: 'E-PER' at position 1 of sequence 0"):
        entity_f1([["O", "E-PER"]], [["O", "O"]])
    with pytest.raises(ValueError, match=r"same length. Received: 2 true_tag_sequences and 1"):
        entity_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match=r"`labels\[0\]` and `predictions\[0\]` must have the same length"):
        accuracy([[1, 2]], [[1]])
    with pytest.raises(TypeError, match="not a string"):
        accuracy("abc", "abd")


def test_accuracy_of_classes_and_of_arrays():
    assert accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    assert accuracy(["pos", "neg"], ["pos", "pos"]) == 0.5
    assert accuracy(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 0]])) == 0.5


# SQuAD v1.1's evaluate-v1.1.py, by its definitions:
#   normalize_answer(s) = white_space_fix(remove_articles(remove_punc(lower(s))))
#     remove_punc drops string.punctuation (ASCII); remove_articles replaces
#     \b(a|an|the)\b with a space; white_space_fix is " ".join(s.split()).
#   exact_match = normalize(prediction) == normalize(truth)
#   f1 = 2PR / (P + R) over the Counter intersection of normalized words, 0 if none shared.
#   Per question, the max over its ground truths; reported as 100 * mean.
# Each expected value below is worked out by hand from those lines.
SQUAD_CASES = [
    # prediction, ground truths, exact match, f1
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos"], 1.0, 1.0),
    ("the Denver Broncos!", ["Denver Broncos"], 1.0, 1.0),  # article and punctuation dropped
    ("Broncos", ["Denver Broncos"], 0.0, 2 * (1 * 0.5) / 1.5),  # P=1, R=1/2
    ("Denver Broncos team", ["Denver Broncos"], 0.0, 2 * (2 / 3 * 1) / (2 / 3 + 1)),
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara"], 0.0, 2 * (2 / 3 * 1) / (2 / 3 + 1)),
    ("Levis Stadium", ["Levi's Stadium"], 1.0, 1.0),  # the apostrophe is punctuation
    ("gold", ["golden"], 0.0, 0.0),
    ("an apple a day", ["apple day"], 1.0, 1.0),
    ("theater", ["the ater"], 0.0, 0.0),  # "the" inside a word stays: \b
    ("1,000", ["1000"], 1.0, 1.0),  # the comma goes, the digits join
    ("CAFÉ  au\tlait", ["café au lait"], 1.0, 1.0),  # lower() is Unicode-aware, spaces squeezed
    ("café", ["cafe"], 0.0, 0.0),  # accents are kept
    ("a", ["the"], 1.0, 0.0),  # both normalize to "": equal, but no word to share
    ("one one two", ["one two two"], 0.0, 2 * (2 / 3) * (2 / 3) / (4 / 3)),  # Counter: min counts
    ("«Broncos»", ["Broncos"], 0.0, 0.0),  # non-ASCII punctuation stays
]


def test_squad_scores_follow_the_official_v1_1_definitions():
    for prediction, truths, exact, f1 in SQUAD_CASES:
        got = squad_scores([prediction], [truths])
        assert got["exact_match"] == pytest.approx(100 * exact), prediction
        assert got["f1"] == pytest.approx(100 * f1), prediction
    got = squad_scores([c[0] for c in SQUAD_CASES], [c[1] for c in SQUAD_CASES])
    assert got["exact_match"] == pytest.approx(100 * np.mean([c[2] for c in SQUAD_CASES]))
    assert got["f1"] == pytest.approx(100 * np.mean([c[3] for c in SQUAD_CASES]))


def test_squad_scores_name_bad_input():
    assert squad_scores(["Paris"], ["Paris"]) == {"exact_match": 100.0, "f1": 100.0}
    with pytest.raises(ValueError, match="same length"):
        squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match=r"references_list\[0\]=\[\]"):
        squad_scores(["a"], [[]])
    with pytest.raises(ValueError, match=r"predictions\[1\]=None"):
        squad_scores(["a", None], [["a"], ["b"]])
