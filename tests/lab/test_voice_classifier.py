"""Tests of :mod:`worker.lab.voice_classifier`: the attribution classifier's own accuracy, and the sign test."""

from __future__ import annotations

import numpy as np
from corpus_fixtures import voice_body

from worker.lab.eval_inputs import VoiceCorpus
from worker.lab.stylometry import voice_matrix
from worker.lab.voice_classifier import StyleClassifier, sign_test, train_voice_classifier


def test_voice_classifier_reports_its_own_held_out_and_leave_one_out_accuracy() -> None:
    plain = [voice_body("plain", i) for i in range(8)]
    formal = [voice_body("formal", i) for i in range(8)]
    held = np.array([False] * 6 + [True] * 2)
    corpora = [
        VoiceCorpus("plain", "test", [f"p{i}" for i in range(8)], voice_matrix(plain), held),
        VoiceCorpus("formal", "test", [f"f{i}" for i in range(8)], voice_matrix(formal), np.zeros(8, dtype=bool)),
    ]
    classifier, check = train_voice_classifier(corpora)
    assert classifier is not None
    assert check["training_articles"] == 14 and check["heldout_articles"] == 2
    assert check["heldout_accuracy"] == 1.0 and check["loo_accuracy"] == 1.0
    assert classifier.predict(voice_matrix([plain[7], formal[3]])) == ["plain", "formal"]
    none, note = train_voice_classifier(corpora[:1])
    assert none is None and "at least two styles" in note["note"]


def test_sign_test_on_paired_drafts() -> None:
    assert sign_test([False] * 10, [True] * 10) == {"adapter_only": 10, "base_only": 0, "p_value": 0.002}
    assert sign_test([True, False], [True, False]) == {"adapter_only": 0, "base_only": 0, "p_value": 1.0}
    result = sign_test([False, False, True, True], [True, True, True, False])
    assert (result["adapter_only"], result["base_only"], result["p_value"]) == (2, 1, 1.0)


def test_style_classifier_separates_separable_styles() -> None:
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 1, (10, 3)), rng.normal(4, 1, (10, 3))])
    embeddings = np.vstack([rng.normal(0, 0.1, (10, 5)), rng.normal(1, 0.1, (10, 5))])
    labels = np.array([0] * 10 + [1] * 10)
    classifier = StyleClassifier(["a", "b"]).fit(features, embeddings, labels)
    probabilities = classifier.probabilities(features, embeddings)
    assert (probabilities.argmax(axis=1) == labels).all()
    assert np.allclose(probabilities.sum(axis=1), 1)
    voice_only = StyleClassifier(["a", "b"], use_embeddings=False).fit(features, None, labels)
    assert voice_only.predict(features) == ["a"] * 10 + ["b"] * 10


def test_balanced_classes_keep_a_large_archive_from_pulling_uncertain_drafts_its_way() -> None:
    rng = np.random.default_rng(1)
    features = np.vstack([rng.normal(0, 1, (90, 2)), rng.normal(1.5, 1, (10, 2))])
    labels = np.array([0] * 90 + [1] * 10)
    middle = np.array([[0.75, 0.75]])
    balanced = StyleClassifier(["big", "small"], use_embeddings=False).fit(features, None, labels)
    plain = StyleClassifier(["big", "small"], use_embeddings=False, balance_classes=False).fit(features, None, labels)
    assert plain.probabilities(middle)[0, 1] < 0.5 < balanced.probabilities(middle)[0, 1]
    weights = balanced.sample_weights(labels, 2)
    assert weights[0] == 100 / 180 and weights[-1] == 100 / 20

    even = np.array([0] * 10 + [1] * 10)
    same_size = [StyleClassifier(["a", "b"], use_embeddings=False, balance_classes=flag) for flag in (True, False)]
    fitted = [c.fit(features[:20], None, even) for c in same_size]
    assert np.array_equal(fitted[0].weights, fitted[1].weights)  # classes of one size: the fit is unchanged
