"""Scoring stage: tables over the text corpus in tests/data/texts, then edge cases."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.config import PROJECT_ROOT
from worker.intake.briefs import Brief
from worker.lab.corpus import load_corpus
from worker.scoring.markdown import parse_blocks, prose_texts, strip_markdown
from worker.scoring.memorisation import (
    NGRAM_WORDS,
    Closeness,
    CorpusIndex,
    guard_limits,
    memorisation_score,
    ngram_hashes,
)
from worker.scoring.readability import readability_scores
from worker.scoring.scorecard import INFORMATIONAL, DraftToScore, Scorecard, score_drafts
from worker.scoring.scores import Score, round_value
from worker.scoring.structure import structure_score
from worker.scoring.style_rules import style_rules_score
from worker.scoring.text import count_text, sentences, syllables, words
from worker.scoring.tone import formality_score, sentiment_score
from worker.scoring.topicality import on_topic_score
from worker.scoring.wording import REPETITION_N, keywords_score, length_score, repetition_value
from worker.styles.catalog import StyleCatalog, StyleRules, Targets
from worker.styles.score_names import FAILS_EMPTY, GATE_NAMES, SCORE_NAMES

TEXTS = Path(__file__).parent.parent / "data" / "texts"

BRIEFS = {
    "howto_repot_houseplant": Brief(
        title="How to repot a houseplant",
        content_type="how-to",
        keywords=["potting mix", "drainage hole", "root ball"],
        tags=["gardening"],
        target_words=250,
    ),
    "deepdive_page_cache": Brief(
        title="How the Linux page cache works",
        content_type="explainer",
        keywords=["page cache", "writeback", "reclaim"],
        target_words=250,
    ),
    "listicle_morning_habits": Brief(
        title="Tiny habits for brighter mornings",
        content_type="listicle",
        keywords=["morning", "habit"],
        target_words=180,
    ),
    "news_bike_lanes": Brief(
        title="City council approves protected bike lanes",
        content_type="news",
        keywords=["bike lanes", "city council", "parking"],
        target_words=180,
    ),
    "review_travel_kettle": Brief(
        title="Review of the Voyager travel kettle",
        content_type="review",
        keywords=["travel kettle", "verdict"],
        target_words=200,
    ),
    "degenerate_loop": Brief(
        title="How to learn a new skill",
        content_type="explainer",
        keywords=["practice", "feedback", "deliberate practice"],
        target_words=300,
    ),
    "chat_artifacts_composting": Brief(
        title="Composting at home",
        content_type="explainer",
        keywords=["compost", "kitchen scraps"],
        target_words=200,
    ),
    "empty_ish": Brief(title="Saving energy at home", content_type="explainer", target_words=200),
}

# Style-like target sets the corpus is measured against.
TARGETS = {
    "default": Targets(),
    "plain": Targets(reading_ease=(60, 100), grade=(1, 8)),
    "technical": Targets(reading_ease=(-60, 40), grade=(12, 30), formality=(0.7, 1.0)),
    "upbeat": Targets(reading_ease=(60, 100), grade=(1, 8), sentiment=(0.25, 1.0), formality=(0.0, 0.4)),
    "news": Targets(sentiment=(-0.3, 0.3), formality=(0.6, 1.0)),
}
NO_RULES = StyleRules()
TEXT_GATES = tuple(gate for gate in GATE_NAMES if gate != "on_topic")


def load(name: str) -> str:
    return (TEXTS / f"{name}.md").read_text(encoding="utf-8")


def card_for(
    name: str,
    targets: str | Targets = "default",
    rules: StyleRules = NO_RULES,
    *,
    markdown: str | None = None,
    brief: Brief | None = None,
    language: str = "en",
) -> Scorecard:
    draft = DraftToScore(
        load(name) if markdown is None else markdown,
        brief or BRIEFS[name],
        TARGETS[targets] if isinstance(targets, str) else targets,
        rules,
    )
    return score_drafts([draft], language=language, embedder=None)[0]


def simple_brief(content_type: str = "explainer", keywords: Sequence[str] = (), words: int = 50) -> Brief:
    return Brief(title="Test", content_type=content_type, keywords=list(keywords), target_words=words)


def test_corpus_is_complete() -> None:
    assert sorted(path.stem for path in TEXTS.glob("*.md")) == sorted(BRIEFS)


# --- tables over the corpus ------------------------------------------------------------------------------

P, F = True, False
GATE_COLUMNS = ("readability", "grade", "sentiment", "formality", "structure", "length", "repetition", "keywords")

# text, targets, expected pass per column (None: not asserted, the value sits too close to a bound)
PASS_TABLE = [
    ("howto_repot_houseplant", "default", (F, F, P, P, P, P, P, P)),  # too easy for the default range
    ("howto_repot_houseplant", "plain", (P, P, P, P, P, P, P, P)),
    ("deepdive_page_cache", "default", (F, F, P, F, P, P, P, P)),  # hard and very formal
    ("deepdive_page_cache", "technical", (P, P, P, P, P, P, P, P)),
    ("listicle_morning_habits", "default", (F, F, P, F, P, P, P, P)),  # chatty
    ("listicle_morning_habits", "upbeat", (P, P, P, P, P, P, P, P)),
    ("news_bike_lanes", "default", (P, P, P, P, P, P, P, P)),
    ("news_bike_lanes", "news", (P, P, P, P, P, P, P, P)),
    ("news_bike_lanes", "upbeat", (None, F, F, F, P, P, P, P)),  # not upbeat, not chatty
    ("review_travel_kettle", "default", (P, P, P, P, P, P, P, P)),
    ("degenerate_loop", "default", (F, None, P, P, F, F, F, F)),
    ("chat_artifacts_composting", "default", (F, F, P, P, F, P, P, P)),
    ("empty_ish", "default", (F, F, F, F, F, F, F, F)),
]


@pytest.mark.parametrize(("name", "targets", "expected"), PASS_TABLE)
def test_pass_fail_table(name: str, targets: str, expected: tuple[bool | None, ...]) -> None:
    card = card_for(name, targets)
    for column, want in zip(GATE_COLUMNS, expected, strict=True):
        if want is not None:
            score = card.scores[column]
            assert score.passed is want, f"{name}/{targets}: {column} = {score.value} ({score.detail})"
    assert card.scores["style_rules"].passed is (name != "empty_ish")
    assert set(card.scores) == set(SCORE_NAMES)


# text, score, plausible range (inclusive)
RANGE_TABLE = [
    ("howto_repot_houseplant", "readability", 80, 100),
    ("howto_repot_houseplant", "grade", 1, 6),
    ("howto_repot_houseplant", "formality", 0.55, 0.8),
    ("howto_repot_houseplant", "length", 0.8, 1.0),
    ("howto_repot_houseplant", "repetition", 0.0, 0.02),
    ("deepdive_page_cache", "readability", -60, 30),
    ("deepdive_page_cache", "grade", 15, 30),
    ("deepdive_page_cache", "gunning_fog", 17, 35),
    ("deepdive_page_cache", "smog", 15, 30),
    ("deepdive_page_cache", "formality", 0.8, 1.0),
    ("listicle_morning_habits", "sentiment", 0.25, 0.7),
    ("listicle_morning_habits", "formality", 0.0, 0.35),
    ("news_bike_lanes", "readability", 50, 75),
    ("news_bike_lanes", "sentiment", -0.2, 0.3),
    ("news_bike_lanes", "formality", 0.6, 0.9),
    ("review_travel_kettle", "readability", 65, 85),
    ("review_travel_kettle", "structure", 1, 1),
    ("degenerate_loop", "repetition", 0.7, 1.0),
    ("degenerate_loop", "keywords", 0.3, 0.4),
    ("chat_artifacts_composting", "formality", 0.35, 0.65),
    ("empty_ish", "length", 0.0, 0.01),
]


@pytest.mark.parametrize(("name", "score", "low", "high"), RANGE_TABLE)
def test_plausible_ranges(name: str, score: str, low: float, high: float) -> None:
    value = card_for(name).scores[score].value
    assert low <= value <= high, f"{name}: {score} = {value}"


def test_relative_order_across_the_corpus() -> None:
    cards = {name: card_for(name) for name in BRIEFS if name != "empty_ish"}

    def value(name: str, score: str) -> float:
        return cards[name].scores[score].value

    assert value("listicle_morning_habits", "formality") < value("review_travel_kettle", "formality")
    assert value("review_travel_kettle", "formality") < value("news_bike_lanes", "formality")
    assert value("news_bike_lanes", "formality") < value("deepdive_page_cache", "formality")
    assert value("listicle_morning_habits", "sentiment") > value("news_bike_lanes", "sentiment")
    assert value("news_bike_lanes", "sentiment") > value("deepdive_page_cache", "sentiment")
    assert min(cards, key=lambda name: value(name, "readability")) == "deepdive_page_cache"
    assert max(cards, key=lambda name: value(name, "repetition")) == "degenerate_loop"


def test_clean_howto_outranks_degenerate_text() -> None:
    howto = card_for("howto_repot_houseplant", "plain")
    degenerate = card_for("degenerate_loop", "plain")
    empty = card_for("empty_ish", "plain")
    assert howto.quality > degenerate.quality > empty.quality
    assert 0.0 <= empty.quality <= howto.quality <= 1.0
    assert howto.passes(TEXT_GATES)
    assert not degenerate.passes(TEXT_GATES)


# --- empty text -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("markdown", ["", "   \n\n", "# Title only\n", "```\ncode only\n```\n", "---\n"])
def test_empty_drafts_fail_every_gate_without_raising(markdown: str) -> None:
    card = card_for("empty_ish", markdown=markdown)
    for name, score in card.scores.items():
        assert score.passed is (name in INFORMATIONAL or name == "memorisation"), f"{name}: {score.detail}"
    assert card.failing(GATE_NAMES) == [gate for gate in GATE_NAMES if gate != "memorisation"]  # nothing copied
    json.dumps(card.to_dict())  # still JSON-able


# --- markdown stripping -----------------------------------------------------------------------------------


def test_markdown_syntax_does_not_change_readability_or_sentiment() -> None:
    plain = "The plant grows well in bright light. Water it once a week and enjoy the lovely leaves."
    marked = (
        "The **plant** grows _well_ in [bright light](https://x.y). Water it `once` a week and enjoy the "
        "*lovely* leaves."
    )
    a, b = card_for("empty_ish", markdown=plain), card_for("empty_ish", markdown=marked)
    for name in ("readability", "grade", "sentiment", "formality", "length"):
        assert a.scores[name].value == b.scores[name].value, name


def test_headings_and_code_do_not_count_as_prose() -> None:
    prose = "Water the plant once a week. Keep it in bright light."
    heading = "# Caring For Extraordinarily Complicated Houseplants"
    decorated = f"{heading}\n\n{prose}\n\n```\nsupercalifragilistic()\n```\n"
    a, b = card_for("empty_ish", markdown=prose), card_for("empty_ish", markdown=decorated)
    assert a.scores["readability"].value == b.scores["readability"].value
    assert b.scores["length"].value > a.scores["length"].value  # heading words count towards length


# --- sentiment, formality, language ------------------------------------------------------------------------


def test_sentiment_follows_the_text() -> None:
    happy = card_for("empty_ish", markdown="I love this wonderful, delightful kettle. It is great!")
    sad = card_for("empty_ish", markdown="This awful kettle broke. It is a terrible, sad waste of money.")
    assert happy.scores["sentiment"].value > 0.5
    assert sad.scores["sentiment"].value < -0.5
    assert happy.scores["sentiment"].passed and not sad.scores["sentiment"].passed


def test_language_is_explicit_and_stateless() -> None:
    markdown = load("news_bike_lanes")
    english = card_for("news_bike_lanes", language="en")
    german = card_for("news_bike_lanes", language="de")
    english_again = card_for("news_bike_lanes", language="en")
    assert german.scores["readability"].value != english.scores["readability"].value
    assert english_again.to_dict() == english.to_dict()
    assert markdown  # the same text each time
    # VADER and the formality word lists are English-only: informational for other languages
    for name in ("sentiment", "formality"):
        assert german.scores[name].passed
        assert "English-only" in german.scores[name].detail


@pytest.mark.parametrize("spelling", ["en_US", "en-GB", "EN"])
def test_language_spellings_of_english(spelling: str) -> None:
    card = card_for("listicle_morning_habits", "upbeat", language=spelling)
    assert card.scores["formality"].detail.startswith("0.")  # a gate, not the informational note
    assert card.scores["sentiment"].passed and card.scores["formality"].passed
    assert card.scores["readability"].high == pytest.approx(121.22)


def test_readability_range_follows_the_language() -> None:
    assert card_for("news_bike_lanes", language="de").scores["readability"].high == pytest.approx(120.5)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_any_text_scores_without_raising(markdown: str) -> None:
    card = card_for("empty_ish", markdown=markdown, brief=simple_brief(keywords=["x"]))
    assert set(card.scores) == set(SCORE_NAMES)
    json.dumps(card.to_dict(), allow_nan=False)
    assert 0.0 <= card.quality <= 1.0


def test_scoring_never_fetches_nltk_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("scoring tried to download NLTK data")

    monkeypatch.setattr(nltk, "download", refuse)
    syllables.cache_clear()
    assert card_for("review_travel_kettle").scores["readability"].value > 0


# --- length, repetition, keywords --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "tolerance", "passed"),
    [(50, 0.1, True), (55, 0.1, True), (56, 0.1, False), (45, 0.1, True), (44, 0.1, False), (25, 0.5, True)],
)
def test_length_tolerance(words: int, tolerance: float, passed: bool) -> None:
    markdown = " ".join(f"word{i}" for i in range(words)) + "."
    card = card_for("empty_ish", Targets(length_tolerance=tolerance), markdown=markdown, brief=simple_brief())
    assert card.scores["length"].value == pytest.approx(words / 50)
    assert card.scores["length"].passed is passed


@pytest.mark.parametrize(
    ("keywords", "value"),
    [
        (["cat"], 0.0),  # "concatenate" and "cats" do not contain the word "cat"
        (["Cat", "dog"], 0.5),  # "dog." at the end of a sentence still counts
        (["bike lanes"], 1.0),  # across a line break and in other case
        (["C++"], 1.0),
        (["e-mail"], 1.0),
        (["mail"], 1.0),  # a hyphen is a word boundary: "e-mail" contains the word "mail"
        (["mails"], 0.0),
        ([], 1.0),
    ],
)
def test_keywords_are_word_boundary_aware(keywords: list[str], value: float) -> None:
    markdown = "We concatenate cats with a dog.\nBike\nLanes and C++ by e-mail, not email."
    card = card_for("empty_ish", markdown=markdown, brief=simple_brief(keywords=keywords))
    assert card.scores["keywords"].value == value
    assert card.scores["keywords"].passed is (value >= Targets().min_keyword_coverage)


# --- style rules --------------------------------------------------------------------------------------------


def test_style_rules_violations_are_counted_and_listed() -> None:
    rules = StyleRules(
        banned_terms=["as an AI language model", "I hope this helps"],
        preferred_terms={"garden waste": "green waste", "rubbish": "waste"},
        required_disclaimer="Always wear gloves.",
        heading_case="title",  # "Composting at Home" is fine
    )
    score = card_for("chat_artifacts_composting", rules=rules).scores["style_rules"]
    assert not score.passed
    assert score.value == 5
    assert "heading" not in score.detail
    for expected in (
        "banned term 'as an AI language model' used 1x",
        "banned term 'I hope this helps' used 1x",
        "'garden waste' used 1x instead of 'green waste'",
        "'rubbish' used 1x instead of 'waste'",
        "required disclaimer missing",
    ):
        assert expected in score.detail
    assert score.detail.index("banned") < score.detail.index("instead") < score.detail.index("disclaimer")


def test_clean_text_has_no_style_rule_violations() -> None:
    markdown = "## Why *it* matters\n\nUse green waste, never the other word.\n\n_Always wear  gloves._\n"
    rules = StyleRules(
        banned_terms=["rubbish"],
        preferred_terms={"green": "green waste"},  # the preferred form contains the avoided one
        required_disclaimer="always wear gloves.",
        heading_case="sentence",
    )
    score = card_for("empty_ish", rules=rules, markdown=markdown).scores["style_rules"]
    assert (score.value, score.passed, score.detail) == (0.0, True, "no violations")


# --- Scorecard ----------------------------------------------------------------------------------------------


def test_scorecard_round_trip_through_json() -> None:
    card = card_for("howto_repot_houseplant")
    data = json.loads(json.dumps(card.to_dict()))
    assert Scorecard.from_dict(data) == card
    assert set(data["readability"]) == {"value", "low", "high", "passed", "detail"}


def test_scorecard_from_dict_rejects_malformed_records() -> None:
    with pytest.raises(ValueError, match="grade"):
        Scorecard.from_dict({"grade": {"value": "high", "passed": True}})
    with pytest.raises(ValueError, match="length"):
        Scorecard.from_dict({"length": {"passed": True}})


def make_card(passed: dict[str, bool], on_topic: float = 0.5) -> Scorecard:
    scores = {name: Score(name, 1.0, None, None, ok, "") for name, ok in passed.items()}
    scores["on_topic"] = Score("on_topic", on_topic, -1.0, 1.0, True, "")
    return Scorecard(scores)


def test_failing_keeps_gate_order_and_counts_missing_scores() -> None:
    card = make_card({"readability": False, "length": True, "repetition": False, "keywords": False})
    assert card.failing(["repetition", "length", "readability", "structure"]) == [
        "repetition",
        "readability",
        "structure",
    ]
    assert card.failing(["keywords", "repetition"]) == ["keywords", "repetition"]
    assert card.passes(["length", "on_topic"])
    assert not card.passes(["length", "keywords"])
    assert card.passes([])


def test_quality_counts_passing_gates_then_breaks_ties_on_topic() -> None:
    more_passes = make_card({"readability": True, "length": True, "repetition": False}, on_topic=-1.0)
    fewer_passes = make_card({"readability": True, "length": False, "repetition": False}, on_topic=1.0)
    assert more_passes.quality > fewer_passes.quality
    on = make_card({"readability": True, "length": False}, on_topic=0.8)
    off = make_card({"readability": True, "length": False}, on_topic=0.2)
    assert on.quality > off.quality
    assert make_card({"gunning_fog": False}).quality == pytest.approx(0.95 + 0.05 * 0.5)  # not a gate
    assert Scorecard({}).quality == 0.0


# --- score_drafts -------------------------------------------------------------------------------------------


class BagOfLettersEmbedder:
    """A deterministic stand-in for the sentence embedder that records its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), 26), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text.lower():
                if "a" <= char <= "z":
                    vectors[row, ord(char) - ord("a")] += 1
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


def test_score_drafts_embeds_everything_in_one_call() -> None:
    embedder = BagOfLettersEmbedder()
    names = ["howto_repot_houseplant", "news_bike_lanes", "empty_ish"]
    drafts = [DraftToScore(load(name), BRIEFS[name], Targets(), NO_RULES) for name in names]
    drafts.append(DraftToScore(load("news_bike_lanes"), BRIEFS["news_bike_lanes"], Targets(), NO_RULES))
    cards = score_drafts(drafts, language="en", embedder=embedder)  # type: ignore[arg-type]
    assert len(embedder.calls) == 1
    encoded = embedder.calls[0]
    assert len(encoded) == len(set(encoded))  # the repeated brief and draft are encoded once
    assert "How to repot a houseplant\npotting mix, drainage hole, root ball\ngardening" in encoded
    assert all("similarity" in card.scores["on_topic"].detail for card in cards)
    assert cards[1].to_dict() == cards[3].to_dict()
    assert not cards[2].scores["on_topic"].passed  # empty draft
    assert "empty draft" in cards[2].scores["on_topic"].detail


def test_identical_brief_and_draft_are_on_topic() -> None:
    brief = simple_brief(keywords=["kettle"])
    draft = DraftToScore("Test\n\nkettle", brief, Targets(min_on_topic=0.99), NO_RULES)
    (card,) = score_drafts([draft], language="en", embedder=BagOfLettersEmbedder())  # type: ignore[arg-type]
    assert card.scores["on_topic"].value == pytest.approx(1.0)
    assert card.scores["on_topic"].passed


def test_without_embedder_on_topic_is_informational() -> None:
    card = card_for("howto_repot_houseplant")
    score = card.scores["on_topic"]
    assert score.passed
    assert "not measured" in score.detail
    assert score_drafts([], language="en", embedder=None) == []


def test_scores_report_their_metric_ranges() -> None:
    scores = card_for("review_travel_kettle").scores
    assert (scores["sentiment"].low, scores["sentiment"].high) == (-1.0, 1.0)
    assert (scores["readability"].low, scores["readability"].high) == (None, pytest.approx(121.22))
    for name in ("formality", "structure", "repetition", "keywords"):
        assert (scores[name].low, scores[name].high) == (0.0, 1.0)
    assert scores["readability"].detail == f"{scores['readability'].value:.2f} within target 50.00..80.00"


# --- the batch path against the per-draft path, on real model drafts --------------------------------------

STYLES = PROJECT_ROOT / "styles"


def real_drafts(per_style: int) -> list[DraftToScore]:
    """Drafts the real model wrote in each shipped style's evaluations, with that style's targets, rules and its
    served adapter's corpus index; and per style one draft that copies two of its corpus articles (the guard)."""
    catalog = StyleCatalog.load(STYLES)
    drafts: list[DraftToScore] = []
    for name in catalog.names:
        style = catalog.get(name)
        corpus = CorpusIndex.load(style.adapter_dir) if style.adapter_dir is not None else None
        texts: list[str] = []
        for path in sorted((STYLES / name / "adapters").glob("*/eval/*.json")):
            for variant in json.loads(path.read_text())["drafts"].values():
                texts.extend(text for text in variant if text not in texts)
        articles = [article.body for article in load_corpus(style.directory / "corpus").articles[:2]]
        texts = [*texts[:per_style], "# Copied\n\n" + "\n\n".join(articles)]
        brief = Brief(title="Keeping bread fresh", content_type="how-to", keywords=["bread"], target_words=150)
        drafts.extend(DraftToScore(text, brief, style.targets, style.rules, corpus) for text in texts)
    return drafts


def reference_closeness(corpus: CorpusIndex, markdown: str, embedding: np.ndarray | None) -> Closeness:
    """The guard as first written: np.isin over the whole corpus, and a Python loop for the longest run."""
    hashes = ngram_hashes(markdown)
    copied, share = 0, 0.0
    if len(hashes) and len(corpus.hashes):
        matched = np.isin(hashes, corpus.hashes)
        best = current = 0
        for hit in matched.tolist():
            current = current + 1 if hit else 0
            best = max(best, current)
        copied, share = (best + NGRAM_WORDS - 1 if best else 0), float(matched.mean())
    similarity, nearest = None, None
    if embedding is not None and corpus.embeddings is not None:
        cosines = corpus.embeddings @ embedding
        similarity, nearest = round(float(cosines[int(cosines.argmax())]), 4), corpus.ids[int(cosines.argmax())]
    return Closeness(copied, round(share, 4), similarity, nearest)


def reference_card(draft: DraftToScore, language: str) -> dict[str, dict[str, object]]:
    """One draft scored the way score_draft did before it parsed once: each metric from the public functions,
    every text re-parsed and re-split where it was."""
    blocks = parse_blocks(draft.markdown)
    text = strip_markdown(draft.markdown)
    tokens = words(text)
    prose = prose_texts(blocks)
    targets = draft.targets
    lowered = [token.lower() for token in tokens]
    value = round_value(repetition_value(lowered))
    grams = Counter(tuple(lowered[i : i + REPETITION_N]) for i in range(len(lowered) - REPETITION_N + 1))
    top = grams.most_common(1)
    example = f"; most repeated: {' '.join(top[0][0])!r} x{top[0][1]}" if top and top[0][1] > 1 else ""
    detail = f"{value:.0%} of word {REPETITION_N}-grams repeated (max {targets.max_repetition:.0%}){example}"
    repetition = Score("repetition", value, 0.0, 1.0, value <= targets.max_repetition, detail)
    closeness = reference_closeness(draft.corpus, draft.markdown, None) if draft.corpus is not None else None
    scores = [
        *readability_scores(count_text(prose, language), targets, language),
        sentiment_score(sentences(prose), targets, language),
        formality_score(prose, targets, language),
        structure_score(blocks, draft.brief.content_type),
        length_score(len(tokens), draft.brief.target_words, targets.length_tolerance),
        repetition,
        keywords_score(text, draft.brief.keywords, targets.min_keyword_coverage),
        on_topic_score(None, targets.min_on_topic),
        style_rules_score(blocks, text, draft.rules),
        memorisation_score(closeness, guard_limits(targets)),
    ]
    card = {score.name: score.to_dict() for score in scores}
    if not any(words(part) for part in prose):
        for name in FAILS_EMPTY:
            if card[name]["passed"]:
                card[name] = {**card[name], "passed": False, "detail": f"empty draft; {card[name]['detail']}"}
    return card


def test_batch_scores_equal_the_per_draft_reference_on_real_drafts() -> None:
    drafts = real_drafts(per_style=16)
    drafts.append(DraftToScore("# Only a heading\n\n```\ncode\n```", drafts[0].brief, Targets(), NO_RULES))
    cards = score_drafts(drafts, language="en", embedder=None)
    copied = [card for card in cards if not card.scores["memorisation"].passed]
    assert len(copied) == 3  # each style's corpus copy is caught, the model's own drafts are not
    for draft, card in zip(drafts, cards, strict=True):
        assert card.to_dict() == reference_card(draft, "en")


def test_on_topic_in_a_batch_equals_each_draft_scored_alone() -> None:
    from worker.scoring.embeddings import default_embedder

    embedder = default_embedder()
    drafts = real_drafts(per_style=3)
    together = score_drafts(drafts, language="en", embedder=embedder)
    for draft, card in zip(drafts, together, strict=True):
        (alone,) = score_drafts([draft], language="en", embedder=embedder)
        batch, single = card.to_dict(), alone.to_dict()
        # The same text's vector in another batch differs by float rounding (~1e-7) at most.
        assert batch.pop("on_topic")["value"] == pytest.approx(single.pop("on_topic")["value"], abs=1e-4)
        assert batch == single
