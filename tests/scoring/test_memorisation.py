"""Tests of :mod:`worker.scoring.memorisation`: the guard against drafts copied from a style's training corpus (as a
gate that makes the pipeline regenerate) and the near-duplicate flag against stored articles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from model_fixtures import copy_dir, one_torch_thread
from safetensors.torch import save_file

from worker.config import PROJECT_ROOT, Settings
from worker.engine.engine import Engine
from worker.intake.briefs import Brief
from worker.pipeline.pipeline import BriefOutcome, Pipeline
from worker.pipeline.runner import _flag_near_duplicate
from worker.results import ArticleResult, ArticleStatus
from worker.scoring import memorisation
from worker.scoring.memorisation import (
    NEAR_DUPLICATE,
    NGRAM_WORDS,
    Closeness,
    CorpusIndex,
    GuardLimits,
    StoredArticles,
    found_in,
    longest_run,
    ngram_hashes,
)
from worker.scoring.scorecard import DraftToScore, score_drafts
from worker.store import Store
from worker.styles.catalog import StyleRules, Targets
from worker.styles.layout import FEATURES_FILE, NGRAMS_FILE

__all__ = ["one_torch_thread"]  # fixture used by name

LIMITS = GuardLimits(max_copied_words=40, max_similarity=0.9, max_copied_share=0.2)
CORPUS = [
    "Descaling a kettle takes ten minutes and a little white vinegar. Fill the kettle halfway with equal parts "
    "water and vinegar, bring it to the boil, then switch it off and let it stand for an hour. Pour the mixture "
    "away, rinse the kettle three times with clean water, and boil one more kettle of plain water to clear any "
    "taste of vinegar before you make tea again.",
    "A circuit breaker trips when a circuit draws more current than it was built for. Before you reset it, "
    "unplug the appliances on that circuit, then push the switch firmly to off and back to on.",
]
ORIGINAL = (
    "Bread stays fresh longest at room temperature in a paper bag or a bread box. The fridge dries it out "
    "faster, but the freezer keeps sliced bread good for weeks; toast the slices straight from frozen."
)
COPY = "Here is my guide. " + " ".join(CORPUS[0].split()[:60]) + " That is all."


@pytest.fixture(autouse=True)
def _no_cached_ngram_sets() -> Iterator[None]:
    """Each test starts without the 8-gram sets an earlier test cached in this process."""
    memorisation.ngram_set.cache_clear()
    yield
    memorisation.ngram_set.cache_clear()


def test_ngram_hashes_are_stable_and_ignore_case_and_punctuation() -> None:
    a = ngram_hashes("One two three four five six seven eight nine")
    assert len(a) == 2 and a.dtype == np.int64
    assert np.array_equal(a, ngram_hashes("one, TWO three... four five six seven eight nine!"))
    assert (
        len(ngram_hashes("too short to have an 8-gram")) == 0
        or len(ngram_hashes("seven words are not enough here")) == 0
    )
    assert longest_run(np.array([True, False, True, True, True, False])) == 3
    assert longest_run(np.array([], dtype=bool)) == 0


def test_a_copied_passage_is_too_close_and_an_original_text_is_not() -> None:
    index = CorpusIndex.build(CORPUS)
    copy = index.closeness(COPY)
    assert copy.copied_words >= 60 and copy.copied_share > 0.8
    assert copy.too_close(LIMITS)
    original = index.closeness(ORIGINAL)
    assert (original.copied_words, original.copied_share) == (0, 0.0)
    assert not original.too_close(LIMITS)


def test_similarity_alone_is_a_topic_not_a_copy() -> None:
    same_topic = Closeness(copied_words=0, copied_share=0.0, similarity=0.97, nearest="descale-a-kettle")
    assert not same_topic.too_close(LIMITS)
    paraphrase = Closeness(copied_words=20, copied_share=0.3, similarity=0.95, nearest="descale-a-kettle")
    assert paraphrase.too_close(LIMITS)
    assert not Closeness(20, 0.3, 0.5, "other").too_close(LIMITS)
    assert "similarity 0.95 to descale-a-kettle" in paraphrase.describe()


def test_index_round_trips_with_the_versions_embeddings(tmp_path: Path) -> None:
    assert CorpusIndex.load(tmp_path) is None  # a version trained before the guard existed
    CorpusIndex.build(CORPUS).save(tmp_path / NGRAMS_FILE)
    embeddings = np.eye(2, 4, dtype=np.float32)
    save_file(
        {"embeddings": torch.from_numpy(embeddings)},
        str(tmp_path / FEATURES_FILE),
        metadata={"ids": json.dumps(["kettle", "breaker"])},
    )
    index = CorpusIndex.load(tmp_path)
    assert index is not None and index.ids == ("kettle", "breaker")
    closeness = index.closeness(COPY, np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32))
    assert (closeness.similarity, closeness.nearest) == (1.0, "breaker")
    assert closeness.copied_words >= 60


def test_the_memorisation_gate_fails_a_copy_in_the_scorecard() -> None:
    index = CorpusIndex.build(CORPUS)
    brief = Brief(title="Descale a kettle")
    drafts = [
        DraftToScore(f"# Descale a kettle\n\n{text}\n", brief, Targets(), StyleRules(), index)
        for text in (COPY, ORIGINAL)
    ]
    copy, original = score_drafts(drafts, language="en", embedder=None)
    assert not copy.scores["memorisation"].passed
    assert "too close to the training corpus" in copy.scores["memorisation"].detail
    assert original.scores["memorisation"].passed
    unguarded = score_drafts([DraftToScore(COPY, brief, Targets(), StyleRules())], language="en", embedder=None)[0]
    assert unguarded.scores["memorisation"].passed and "not measured" in unguarded.scores["memorisation"].detail


# ------------------------------------------------------------------------------------- in the pipeline


@pytest.fixture
def guarded_world(tmp_path: Path) -> tuple[Settings, Path]:
    """The shipped plain-howto style with its served adapter, one candidate per attempt, the memorisation
    guard as its only gate, and no corpus index yet."""
    shipped = PROJECT_ROOT / "styles" / "plain-howto"
    data = yaml.safe_load((shipped / "style.yaml").read_text())
    assert data["adapter"], "plain-howto serves an adapter"
    data["generation"]["candidates"] = 1
    data["gates"] = []  # only the memorisation guard, which every style has
    data["targets"]["max_copied_words"] = 10
    directory = tmp_path / "styles" / "plain-howto"
    version = copy_dir(shipped / "adapters" / data["adapter"], directory / "adapters" / data["adapter"])
    (version / NGRAMS_FILE).unlink(missing_ok=True)
    (directory / "style.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    settings = Settings(home=tmp_path / "home", styles_dir=tmp_path / "styles", max_attempts=2, device="cpu")
    return settings, version


@pytest.mark.real_model
def test_a_draft_copying_the_corpus_is_regenerated(
    guarded_world: tuple[Settings, Path], one_torch_thread: None
) -> None:
    """The real model and adapter: a draft found in the adapter's corpus index fails the gate and the next
    attempt writes another."""
    settings, version = guarded_world
    engine = Engine.from_settings(settings)
    brief = Brief(id="copycat", title="How to keep bread fresh", content_type="how-to", target_words=50)
    (first,) = Pipeline(settings, engine).run([brief])
    assert first.result is not None and first.result.provenance["attempts_used"] == 1  # no index: not measured
    assert "not measured" in first.result.scores["memorisation"]["detail"]
    drafted = first.result.body_markdown
    assert len(drafted.split()) > 20, drafted
    # The adapter's "training corpus" now holds exactly what it wrote: the same brief and seed write it again.
    CorpusIndex.build([drafted]).save(version / NGRAMS_FILE)
    (second,) = Pipeline(settings, engine).run([brief])
    result = second.result
    assert result is not None
    attempts = {c.attempt: c for c in result.candidates}
    assert attempts[1].text == drafted and attempts[1].failing_gates == ["memorisation"]
    assert "too close to the training corpus" in attempts[1].scores["memorisation"]["detail"]
    assert result.provenance["attempts_used"] == 2
    assert attempts[2].selected and "memorisation" not in attempts[2].failing_gates


# ------------------------------------------------------------------------------------- stored articles


def stored_article(store: Store, brief_id: str, body: str) -> None:
    brief = Brief(id=brief_id, title=f"Title of {brief_id}")
    store.add_brief(brief, source="test")
    store.claim_brief(brief_id, owner="me", lease_seconds=60, max_attempts=3)
    result = ArticleResult(brief_id, ArticleStatus.NEEDS_REVIEW, brief.title, body, "plain", None, {}, [], {})
    store.save_article(result, owner="me")


def test_a_near_duplicate_of_a_stored_article_is_flagged_not_blocked(store: Store) -> None:
    stored_article(store, "kettle-1", "# Kettle\n\n" + CORPUS[0])
    stored = StoredArticles(store)
    outcome = BriefOutcome(
        Brief(id="kettle-2", title="Kettle again"),
        ArticleResult("kettle-2", ArticleStatus.NEEDS_REVIEW, "Kettle", COPY, "plain", None, {"length": {}}, [], {}),
    )
    _flag_near_duplicate(stored, outcome)
    assert outcome.result is not None
    flag = outcome.result.scores[NEAR_DUPLICATE]
    assert not flag["passed"] and flag["value"] >= 0.8
    assert "stored article" in flag["detail"] and "near-duplicate" in flag["detail"]
    assert "length" in outcome.result.scores and outcome.result.status == ArticleStatus.NEEDS_REVIEW

    fresh = BriefOutcome(
        Brief(id="bread", title="Bread"),
        ArticleResult("bread", ArticleStatus.NEEDS_REVIEW, "Bread", ORIGINAL, "plain", None, {}, [], {}),
    )
    _flag_near_duplicate(stored, fresh)
    assert fresh.result is not None and fresh.result.scores[NEAR_DUPLICATE]["passed"]
    other_style = StoredArticles(store).nearest("tech", "kettle-3", COPY)
    assert other_style is None  # only articles of the same style are compared
    own = StoredArticles(store).nearest("plain", "kettle-1", CORPUS[0])
    assert own is None  # an article is not a duplicate of its own earlier revision


def reference_run(flags: list[bool]) -> int:
    best = current = 0
    for hit in flags:
        current = current + 1 if hit else 0
        best = max(best, current)
    return best


def test_binary_search_and_run_length_agree_with_isin_and_a_loop() -> None:
    generator = np.random.default_rng(19)
    for size in (0, 1, 2, 7, 50, 400):
        known = generator.integers(-(2**62), 2**62, size=size, dtype=np.int64)
        index = CorpusIndex(known)  # unsorted, with repeats: the index sorts it once
        assert np.array_equal(index.hashes, np.unique(known))
        drafts = generator.integers(-(2**62), 2**62, size=300, dtype=np.int64)
        if size:
            copied = generator.random(300) < 0.5  # about half the draft's 8-grams come from the corpus
            drafts[copied] = generator.choice(known, size=int(copied.sum()))
        matched = found_in(drafts, index.hashes)
        assert np.array_equal(matched, np.isin(drafts, known))
        assert longest_run(matched) == reference_run(matched.tolist())
    for flags in ([], [False], [True], [True, True, False, True], [False, True, True, True]):
        assert longest_run(np.array(flags, dtype=bool)) == reference_run(flags)


def texts_hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, every text ``ngram_hashes`` hashes, in order."""
    hashed: list[str] = []
    original = memorisation.ngram_hashes

    def counting(text: str, n: int = NGRAM_WORDS) -> np.ndarray:
        hashed.append(text)
        return original(text, n)

    monkeypatch.setattr(memorisation, "ngram_hashes", counting)
    return hashed


def test_a_new_article_is_hashed_once_for_nearest_and_add(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    stored_article(store, "kettle-1", "# Kettle\n\n" + CORPUS[0])
    stored = StoredArticles(store)
    stored.nearest("plain", "other", ORIGINAL)  # reads the stored article of the style
    hashed = texts_hashed(monkeypatch)
    duplicate = stored.nearest("plain", "kettle-2", COPY)
    stored.add("plain", "a-2", "kettle-2", "Kettle again", COPY)
    assert hashed == [COPY]
    assert duplicate is not None and duplicate.article_id != "a-2" and duplicate.share >= 0.8
    again = stored.nearest("plain", "kettle-3", COPY)  # the article just added is compared with too
    assert again is not None and again.share == 1.0 and again.article_id == "a-2"


def test_a_process_hashes_each_stored_text_once_across_tasks(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    stored_article(store, "kettle-1", "# Kettle\n\n" + CORPUS[0])
    hashed = texts_hashed(monkeypatch)
    first = StoredArticles(store).nearest("plain", "kettle-2", COPY)  # one task
    second = StoredArticles(store).nearest("plain", "kettle-3", COPY)  # the next task in the same process
    assert first == second and first is not None and first.share >= 0.8
    assert sorted(hashed) == sorted(["# Kettle\n\n" + CORPUS[0], COPY])  # each text once, not once per task
    store.edit_article(
        "kettle-1",
        actor="ed",
        title="Kettle",
        body_markdown="# Kettle\n\n" + ORIGINAL,
        scores={},
        failing_gates=[],
        expected_revision=1,
    )  # an edited text is another text
    edited = StoredArticles(store).nearest("plain", "kettle-4", COPY)
    assert edited is not None and edited.share < first.share
