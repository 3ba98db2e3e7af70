"""A new style from an archive in one step: ``styles/NAME/style.yaml`` with a system prompt naming the voice
(to be edited), targets from the corpus profile, routing weights from the archive's own content types,
categories and tags (and audiences and tones where its front matter gives them), and the shipped gates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from worker.errors import StyleError
from worker.files import write_atomic
from worker.lab.corpus import Corpus, load_corpus, require_articles
from worker.names import check_safe_name
from worker.styles.catalog import STYLE_FILE, Style

ROUTED = 10  # the most frequent values of each kind that get a routing weight


def routing_weights(values: list[str], limit: int = ROUTED) -> dict[str, float]:
    """Weights from 1 (rare) to 3 (the most frequent value) for the ``limit`` most frequent values."""
    counts = Counter(value.strip().lower() for value in values if value.strip())
    if not counts:
        return {}
    top = counts.most_common(limit)
    most = top[0][1]
    return {value: round(1 + 2 * count / most, 1) for value, count in top}


def _routing(corpus: Corpus) -> dict[str, Any]:
    briefs = [article.brief for article in corpus.articles]
    given = [article.given for article in corpus.articles]
    return {
        "content_types": routing_weights([str(brief.content_type) for brief in briefs]),
        "categories": routing_weights([brief.category for brief in briefs if brief.category]),
        "tags": routing_weights([tag for brief in briefs for tag in brief.tags]),
        "audiences": routing_weights([b.audience for b, g in zip(briefs, given, strict=True) if "audience" in g]),
        "tones": routing_weights([b.tone for b, g in zip(briefs, given, strict=True) if "tone" in g]),
        "priority": 0,
    }


# Where the words of a generated system prompt change, on the medians of a corpus profile's features.
SHORT_SENTENCE, LONG_SENTENCE = 12, 18  # words per sentence
EVERYDAY_EASE, PLAIN_EASE = 70, 50  # Flesch reading ease, on textstat's scale for the language
MOSTLY_LISTS, SOME_LISTS = 0.5, 0.15  # list items per prose block
FEW_HEADINGS = 0.2  # headings per 100 words
USES_PERSON = 1.0  # "you" / "we" words per 100 words
UPBEAT = 0.2  # sentiment
FORMAL, RELAXED = 0.7, 0.55  # formality
NO_EXCLAMATIONS, SOME_EXCLAMATIONS = 0.05, 0.15  # exclamations per sentence


def _sentences(words: float) -> str:
    size = "short" if words < SHORT_SENTENCE else "long" if words > LONG_SENTENCE else "medium-length"
    return f"{size} sentences (about {round(words)} words)"


def _vocabulary(ease: float) -> str:
    if ease >= EVERYDAY_EASE:
        return "everyday words"
    return "plain but precise words" if ease >= PLAIN_EASE else "technical vocabulary"


def _layout(list_share: float) -> str:
    if list_share >= MOSTLY_LISTS:
        return "mostly lists and numbered steps"
    return (
        "paragraphs, with a list only for parallel items"
        if list_share >= SOME_LISTS
        else "paragraphs rather than lists"
    )


def _headings(per_100_words: float) -> str:
    if per_100_words <= FEW_HEADINGS:
        return "few headings"
    return f"a heading about every {max(10, round(100 / per_100_words, -1)):.0f} words"


def _people(second_person: float, first_person: float) -> str:
    used = [
        label
        for label, rate in (("'you' for the reader", second_person), ("'we' or 'I'", first_person))
        if rate >= USES_PERSON
    ]
    return " and ".join(used) if used else "no 'I', 'we' or 'you'"


def _register(formality: float) -> str | None:
    return (
        "a formal register"
        if formality >= FORMAL
        else "a relaxed, conversational register"
        if formality <= RELAXED
        else None
    )


def _exclamations(rate: float) -> str | None:
    if rate < NO_EXCLAMATIONS:
        return "no exclamation marks"
    return "an exclamation mark now and then" if rate >= SOME_EXCLAMATIONS else None


def voice_traits(profile: dict[str, Any]) -> list[str]:
    """The voice in plain words, from the medians of a corpus profile's features
    (:func:`worker.lab.stylometry.profile_texts`): what a system prompt can ask a model for. Register and
    exclamation marks are named only when they stand out."""
    median = {name: summary["median"] for name, summary in profile["features"].items()}
    traits = [
        _sentences(median["words_per_sentence"]),
        _vocabulary(median["reading_ease"]),
        _layout(median["list_share"]),
        _headings(median["headings_per_100_words"]),
        _people(median["second_person"], median["first_person"]),
        "an upbeat tone" if median["sentiment"] >= UPBEAT else "a neutral tone",
        _register(median["formality"]),
        _exclamations(median["exclamations"]),
    ]
    return [trait for trait in traits if trait is not None]


def _system_prompt(name: str, corpus: Corpus, profile: dict[str, Any]) -> str:
    authors = {author for article in corpus.articles for author in article.extra.get("authors", [])}
    kinds = Counter(str(article.brief.content_type) for article in corpus.articles).most_common(2)
    written = f", written by {len(authors)} authors" if len(authors) > 1 else ""
    return (
        f"You write in the voice of the {name} archive ({len(corpus.articles)} articles{written}; mostly "
        f"{' and '.join(kind for kind, _ in kinds)} pieces): {'; '.join(voice_traits(profile))}. Follow the "
        "brief. (Generated by `copydesk styles new` from the archive's profile: edit this to name the voice.)"
    )


def new_style_document(name: str, corpus: Corpus, language: str = "en") -> dict[str, Any]:
    """The ``style.yaml`` content of a new style trained on ``corpus`` (validated as a :class:`Style`)."""
    from worker.lab.stylometry import profile_texts, targets_from_profile

    profile = profile_texts([article.body for article in corpus.articles], language)
    document = {
        "name": name,
        "description": f"Voice learned from the archive {corpus.root.name} ({len(corpus.articles)} articles).",
        "system_prompt": _system_prompt(name, corpus, profile),
        "routing": _routing(corpus),
        "targets": targets_from_profile(profile),
        "gates": list(Style.model_fields["gates"].default_factory()),  # type: ignore[misc]
    }
    Style.model_validate(document)
    return document


def create_style(styles_dir: Path, name: str, corpus_dir: Path, language: str = "en") -> Path:
    """Write ``styles_dir/NAME/style.yaml`` from the archive; refuses a name that already exists."""
    check_safe_name("style name", name)
    folder = styles_dir / name
    if folder.exists():
        raise StyleError(f"style {name!r} already exists ({folder}); choose another name")
    corpus = load_corpus(corpus_dir)
    require_articles(corpus)
    document = new_style_document(name, corpus, language)
    folder.mkdir(parents=True)
    path = folder / STYLE_FILE
    write_atomic(path, yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110))
    return path
