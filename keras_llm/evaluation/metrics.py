"""Accuracy, entity-level F1 for BIO tags, SQuAD exact match and F1: plain Python."""

import collections
import re
import string

import numpy as np


def _check_pair(name_a, a, name_b, b):
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)):
        raise TypeError(
            f"`{name_a}` and `{name_b}` must be sequences of values, not a string. "
            f"Received: {name_a}={a!r:.80}, {name_b}={b!r:.80}"
        )
    if len(a) != len(b):
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same length. Received: {len(a)} "
            f"{name_a} and {len(b)} {name_b}"
        )
    if len(a) == 0:
        raise ValueError(f"`{name_a}` is empty; expected at least one. Received: {name_a}={a!r}")


def _is_sequence(value):
    return isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, (str, bytes))


def accuracy(labels, predictions):
    """The fraction of predictions equal to their label.

    Args:
        labels: The true labels: a sequence of ints or strings (one per
            example), or a sequence of sequences (one label per token, e.g.
            tags); NumPy arrays work too.
        predictions: The predicted labels, nested as `labels`.

    Returns:
        A float in [0, 1] (a fraction, as Keras's accuracy metric and
        seqeval's `accuracy_score` report it). For sequences of sequences,
        every token counts once, as in seqeval.

    Raises:
        ValueError: when the lengths differ (the error names the first row
            that differs) or there are no labels.

    Example:

    ```python
    from keras_llm.evaluation import accuracy

    assert accuracy([1, 0, 2, 2], [1, 0, 0, 2]) == 0.75
    assert accuracy([["B-PER", "O"], ["O"]], [["B-PER", "B-LOC"], ["O"]]) == 2 / 3
    ```
    """
    _check_pair("labels", labels, "predictions", predictions)
    if _is_sequence(labels[0]):
        flat_labels, flat_predictions = [], []
        for i, (row, predicted) in enumerate(zip(labels, predictions)):
            if not _is_sequence(predicted) or len(row) != len(predicted):
                raise ValueError(
                    f"`labels[{i}]` and `predictions[{i}]` must have the same length. Received: "
                    f"{len(row)} labels and {len(predicted) if _is_sequence(predicted) else predicted!r}"
                )
            flat_labels += list(row)
            flat_predictions += list(predicted)
        labels, predictions = flat_labels, flat_predictions
        if not labels:
            raise ValueError("`labels` holds no labels (only empty rows).")
    return sum(bool(a == b) for a, b in zip(labels, predictions)) / len(labels)


def _entities(tags, row):
    """The (type, first, last) entities of one BIO tag sequence, by CoNLL's rules.

    As CoNLL's `conlleval` script (and seqeval's default mode) reads tags:
    `B-X` starts an entity, `I-X` continues an entity of type X and starts
    one otherwise (after `O`, or after another type: IOB1 and ill-formed IOB2
    are read leniently), `O` ends it.
    """
    entities, current = [], None  # current = [type, first]
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not (tag == "O" or re.fullmatch(r"[BI]-.+", tag)):
            raise ValueError(
                f"Tags must be 'O' or 'B-TYPE' / 'I-TYPE' (BIO, IOB2). Received: {tag!r} at "
                f"position {i} of sequence {row}"
            )
        prefix, kind = tag[0], tag[2:]
        if current is not None and (prefix != "I" or kind != current[0]):
            entities.append((current[0], current[1], i - 1))
            current = None
        if prefix != "O" and current is None:
            current = [kind, i]
    if current is not None:
        entities.append((current[0], current[1], len(tags) - 1))
    return entities


def entity_f1(true_tag_sequences, predicted_tag_sequences):
    """Entity-level precision, recall and F1 of BIO (IOB2) tag sequences, as CoNLL scores NER.

    An entity is a type and a span of tokens, read from the tags by CoNLL's
    rules (the `conlleval` script, and seqeval's default mode that Hugging
    Face's `run_ner.py` reports): `B-X` starts an entity of type X, `I-X`
    continues one (or starts one after `O` or after another type), `O` is
    outside. A predicted entity counts only if a true one has the same type
    and the same first and last token. The scores are micro-averaged over all
    entities of all sequences; a ratio with nothing to count is 0, as in
    seqeval.

    Args:
        true_tag_sequences: A sequence of tag sequences (strings `"O"`,
            `"B-TYPE"`, `"I-TYPE"`), one per sentence.
        predicted_tag_sequences: The predicted tags, one sequence of the same
            length per sentence.

    Returns:
        `{"precision", "recall", "f1"}`, floats in [0, 1] (fractions, as
        seqeval reports them).

    Raises:
        ValueError: on a tag of another form (IOBES tags are not read) or
            sequences of different lengths; the error names the sequence.

    Example:

    ```python
    from keras_llm.evaluation import entity_f1

    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"]]
    scores = entity_f1(true, predicted)  # PER found, LOC missed, ORG wrong
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    ```
    """
    _check_pair(
        "true_tag_sequences", true_tag_sequences, "predicted_tag_sequences", predicted_tag_sequences
    )
    true_count = predicted_count = correct = 0
    for row, (true, predicted) in enumerate(zip(true_tag_sequences, predicted_tag_sequences)):
        if not _is_sequence(true) or not _is_sequence(predicted) or len(true) != len(predicted):
            raise ValueError(
                f"`true_tag_sequences[{row}]` and `predicted_tag_sequences[{row}]` must be tag "
                f"sequences of the same length. Received: {true!r:.80} and {predicted!r:.80}"
            )
        true_entities = set(_entities(list(true), row))
        predicted_entities = set(_entities(list(predicted), row))
        true_count += len(true_entities)
        predicted_count += len(predicted_entities)
        correct += len(true_entities & predicted_entities)
    precision = correct / predicted_count if predicted_count else 0.0
    recall = correct / true_count if true_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _normalize_answer(text):
    """SQuAD v1.1's `normalize_answer`: lower-case, drop punctuation, articles, extra spaces."""
    text = text.lower()
    text = "".join(c for c in text if c not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)  # ASCII only, as the official script


def _token_f1(prediction, truth):
    """SQuAD v1.1's `f1_score`: the F1 of the normalized answers' word multisets."""
    predicted_tokens = _normalize_answer(prediction).split()
    true_tokens = _normalize_answer(truth).split()
    common = collections.Counter(predicted_tokens) & collections.Counter(true_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted_tokens)
    recall = same / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions, references_list):
    """SQuAD's exact match and F1, as its official v1.1 evaluation script computes them.

    Each answer is normalized (lower-cased; ASCII punctuation removed; the
    words "a", "an", "the" removed; runs of whitespace made one space).
    Exact match: the normalized prediction equals a normalized reference.
    F1: the F1 of the word multisets of the normalized prediction and a
    reference (0 when they share no word, so also when either is empty).
    Each prediction takes its best score over its references; the scores
    are the means over predictions. SQuAD v2's no-answer rules (an empty
    answer matching an empty reference) are not applied.

    Args:
        predictions: One predicted answer string per question.
        references_list: For each question, its acceptable answers: a list
            of strings (SQuAD's dev set has up to 6), or one string.

    Returns:
        `{"exact_match", "f1"}`, floats in [0, 100] (percent, as the
        official script and Hugging Face's squad metric report them).

    Example:

    ```python
    from keras_llm.evaluation import squad_scores

    scores = squad_scores(
        ["the Eiffel Tower", "in 1889", "Paris"],
        [["Eiffel Tower"], ["1889", "March 1889"], "Lyon"],
    )
    # EM: 1, 0, 0. F1: 1; "in 1889" vs "1889" is 2*(1/2*1)/(1/2+1) = 2/3; 0.
    assert round(scores["exact_match"], 4) == round(100 / 3, 4)
    assert round(scores["f1"], 4) == round(100 * (1 + 2 / 3) / 3, 4)
    ```
    """
    _check_pair("predictions", predictions, "references_list", references_list)
    exact = f1 = 0.0
    for i, (prediction, references) in enumerate(zip(predictions, references_list)):
        if isinstance(references, str):
            references = [references]
        if not isinstance(prediction, str) or not references or not all(
            isinstance(r, str) for r in references
        ):
            raise ValueError(
                f"Each prediction must be a string and each entry of `references_list` a "
                f"non-empty list of strings. Received: predictions[{i}]={prediction!r:.80}, "
                f"references_list[{i}]={references!r:.80}"
            )
        normalized = _normalize_answer(prediction)
        exact += max(float(normalized == _normalize_answer(r)) for r in references)
        f1 += max(_token_f1(prediction, r) for r in references)
    return {"exact_match": 100.0 * exact / len(predictions), "f1": 100.0 * f1 / len(predictions)}
