"""Attribution: a softmax regression over voice features that tells the styles apart, trained on their corpus
articles, and the exact sign test over paired drafts (base model vs adapter)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.lab.eval_inputs import VoiceCorpus


class StyleClassifier:
    """Softmax regression over feature columns (optionally with MiniLM embeddings in front), columns z-scored,
    L2-regularised, full-batch gradient descent. Numpy only, deterministic."""

    def __init__(
        self,
        labels: Sequence[str],
        *,
        use_embeddings: bool = True,
        l2: float = 1e-2,
        steps: int = 400,
        rate: float = 0.5,
        balance_classes: bool = True,
    ) -> None:
        self.labels = list(labels)
        self.use_embeddings = use_embeddings
        self.l2, self.steps, self.rate = l2, steps, rate
        self.balance_classes = balance_classes
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def _x(self, features: np.ndarray, embeddings: np.ndarray | None) -> np.ndarray:
        if not self.use_embeddings:
            return features
        if embeddings is None:
            raise ValueError("this classifier uses embeddings: pass them")
        return np.hstack([embeddings, features])

    def fit(self, features: np.ndarray, embeddings: np.ndarray | None, y: np.ndarray) -> StyleClassifier:
        x = self._x(features, embeddings)
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        z = np.hstack([(x - self.mean) / self.std, np.ones((len(x), 1))])
        k = len(self.labels)
        onehot = np.eye(k)[y]
        weight = self.sample_weights(y, k)[:, None]
        w = np.zeros((z.shape[1], k))
        for _ in range(self.steps):
            p = self._softmax(z @ w)
            gradient = z.T @ ((p - onehot) * weight) / len(z) + self.l2 * np.vstack([w[:-1], np.zeros((1, k))])
            w -= self.rate * gradient
        self.weights = w
        return self

    def sample_weights(self, y: np.ndarray, k: int) -> np.ndarray:
        """Each article's weight in the loss: with ``balance_classes``, ``n / (k * n_class)``, so that every
        style counts as much as the others however many articles its archive has (a real blog of 240 posts
        beside corpora of 30 would otherwise pull every uncertain draft its way); exactly 1 when the classes
        are the same size."""
        if not self.balance_classes:
            return np.ones(len(y))
        counts = np.bincount(y, minlength=k).astype(float)
        return len(y) / (k * np.maximum(counts, 1.0))[y]

    @staticmethod
    def _softmax(logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def probabilities(self, features: np.ndarray, embeddings: np.ndarray | None = None) -> np.ndarray:
        if self.weights is None or self.mean is None or self.std is None:
            raise RuntimeError("fit the classifier first")
        z = (self._x(features, embeddings) - self.mean) / self.std
        return self._softmax(np.hstack([z, np.ones((len(z), 1))]) @ self.weights)

    def predict(self, features: np.ndarray, embeddings: np.ndarray | None = None) -> list[str]:
        return [self.labels[i] for i in self.probabilities(features, embeddings).argmax(axis=1)]


VOICE_L2 = 0.1  # strong enough for ~90 features and a few dozen articles; leave-one-out accuracy is reported


def train_voice_classifier(corpora: Sequence[VoiceCorpus]) -> tuple[StyleClassifier | None, dict[str, Any]]:
    """The attribution classifier: voice features only, trained on every style's corpus articles except the
    ones held out by the evaluated versions; with its own accuracy on those held-out articles and by
    leave-one-out over all articles (how far its attributions can be trusted)."""
    usable = [c for c in corpora if len(c.ids)]
    if len(usable) < 2:
        return None, {"note": "needs the corpus/ folders of at least two styles"}
    labels = [c.name for c in usable]
    x = np.vstack([c.voice for c in usable])
    y = np.concatenate([np.full(len(c.ids), index) for index, c in enumerate(usable)])
    held = np.concatenate([c.heldout for c in usable])

    def fit(mask: np.ndarray) -> StyleClassifier:
        return StyleClassifier(labels, use_embeddings=False, l2=VOICE_L2).fit(x[mask], None, y[mask])

    classifier = fit(~held)
    held_right = classifier.probabilities(x[held]).argmax(axis=1) == y[held] if held.any() else np.zeros(0)
    loo_right = []
    for index in range(len(x)):
        mask = np.ones(len(x), dtype=bool)
        mask[index] = False
        loo_right.append(int(fit(mask).probabilities(x[index : index + 1]).argmax()) == y[index])
    check = {
        "styles": labels,
        "sources": {c.name: c.source for c in usable},
        "features": "voice (worker.lab.stylometry.VOICE_FEATURE_NAMES)",
        "training_articles": int((~held).sum()),
        "training_articles_by_style": {c.name: int((~c.heldout).sum()) for c in usable},
        "class_weights": "balanced (each style counts equally in the fit)",
        "heldout_articles": int(held.sum()),
        "heldout_accuracy": round(float(np.mean(held_right)), 4) if held.any() else None,
        "loo_articles": len(x),
        "loo_accuracy": round(float(np.mean(loo_right)), 4),
        "loo_accuracy_by_style": {
            c.name: round(float(np.mean([r for r, label in zip(loo_right, y, strict=True) if label == i])), 4)
            for i, c in enumerate(usable)
        },
    }
    return classifier, check


def sign_test(base_right: Sequence[bool], adapter_right: Sequence[bool]) -> dict[str, Any]:
    """Exact two-sided sign test over paired drafts (same brief, same seed): does the adapter's draft get
    attributed to the style when the base model's does not more often than the other way round?"""
    adapter_only = sum(1 for b, a in zip(base_right, adapter_right, strict=True) if a and not b)
    base_only = sum(1 for b, a in zip(base_right, adapter_right, strict=True) if b and not a)
    n = adapter_only + base_only
    tail = sum(math.comb(n, k) for k in range(min(adapter_only, base_only) + 1)) / 2**n if n else 1.0
    return {"adapter_only": adapter_only, "base_only": base_only, "p_value": round(min(1.0, 2 * tail), 4)}
