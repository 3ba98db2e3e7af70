"""What an evaluation reads: a version's held-out articles and corpus features, the shared evaluation briefs,
each style's corpus as the voice classifier sees it, and the plan of one style's evaluation."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import ValidationError

from worker.config import PROJECT_ROOT
from worker.engine.adapters import ADAPTER_META, AdapterRef
from worker.errors import EvaluationError, validation_problems
from worker.intake.briefs import Brief
from worker.lab.stylometry import voice_matrix
from worker.styles.catalog import Style
from worker.styles.layout import FEATURES_FILE, HELDOUT_FILE, list_version_names, versions_dir
from worker.styles.served import version_base
from worker.styles.versions import read_json_object

if TYPE_CHECKING:
    from worker.lab.corpus import Corpus

BASE_LABEL = "base"
EVAL_BRIEFS_FILE = "eval-briefs.yaml"

logger = logging.getLogger(__name__)


@dataclass
class HeldOut:
    id: str
    brief: Brief
    article: str


@dataclass(frozen=True)
class EvalTopic:
    id: str
    title: str


@dataclass
class StyleData:
    """A style's corpus as the profile distance sees it."""

    name: str
    source: str
    features: np.ndarray
    embeddings: np.ndarray
    heldout: np.ndarray  # bool mask
    ids: list[str] = field(default_factory=list)


@dataclass
class VoiceCorpus:
    """A style's corpus articles as the voice classifier sees them."""

    name: str
    source: str
    ids: list[str]
    voice: np.ndarray  # (articles, len(VOICE_FEATURE_NAMES))
    heldout: np.ndarray  # bool mask: held out by the style's evaluated (else served, else newest) version
    briefs: list[Brief] = field(default_factory=list)


@dataclass
class Plan:
    """One style's evaluation between loading and reporting."""

    style: Style
    chosen: str
    others: list[str]
    directory: Path
    heldout: list[HeldOut]
    max_length: int
    refs: dict[str, AdapterRef | None] = field(default_factory=dict)
    house: dict[str, Any] = field(default_factory=dict)
    briefs: list[Brief] = field(default_factory=list)
    probe: list[Brief] = field(default_factory=list)  # briefs of articles the version trained on
    perplexity: dict[str, float] = field(default_factory=dict)
    seeds: int = 1  # drafts per shared brief and variant, each with its own seed

    def draft_groups(self) -> list[str]:
        """The brief of each shared draft, in the drafts' order (brief by brief, seed by seed)."""
        return [brief.brief_id for brief in self.briefs for _ in range(self.seeds)]


def read_heldout(directory: Path) -> list[HeldOut]:
    path = directory / HELDOUT_FILE
    if not path.is_file():
        raise EvaluationError(f"{directory} has no {HELDOUT_FILE}: retrain the style to get held-out material")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            items.append(_heldout_item(path, number, line))
    if not items:
        raise EvaluationError(f"{path} is empty: nothing was held out")
    return items


def _heldout_item(path: Path, number: int, line: str) -> HeldOut:
    """One line of a version's held-out file; a malformed one is an error naming the file, line and field."""
    where = f"{path} line {number}"
    try:
        record = json.loads(line)
    except ValueError as error:
        raise EvaluationError(f"{where}: not JSON ({error})") from error
    if not isinstance(record, dict):
        raise EvaluationError(f"{where}: not a JSON object")
    for name in ("id", "article"):
        if not isinstance(record.get(name), str):
            raise EvaluationError(f"{where}: field {name!r} is missing or not a string")
    try:
        brief = Brief.model_validate(record.get("brief"))
    except ValidationError as error:
        raise EvaluationError(f"{where}: field 'brief': {validation_problems(error, whole='brief')}") from error
    return HeldOut(record["id"], brief, record["article"])


def read_features(directory: Path, name: str) -> StyleData | None:
    from safetensors import safe_open

    path = directory / FEATURES_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="numpy") as handle:
        ids = json.loads((handle.metadata() or {}).get("ids", "[]"))
        return StyleData(
            name,
            f"{directory.name} corpus features",
            handle.get_tensor("features").astype(np.float64),
            handle.get_tensor("embeddings").astype(np.float64),
            handle.get_tensor("heldout").astype(bool),
            ids,
        )


def read_eval_topics(path: Path) -> tuple[list[EvalTopic], int]:
    """The shared evaluation briefs (``eval-briefs.yaml``): ``briefs: [{id, title}]`` and ``target_words``."""
    if not path.is_file():
        raise EvaluationError(f"no shared evaluation briefs at {path} (see docs/styles.md, Evaluation)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        topics = [EvalTopic(str(item["id"]), str(item["title"])) for item in data.get("briefs") or []]
        target_words = int(data.get("target_words", 120))
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvaluationError(f"{path} is not a list of evaluation briefs ({{id, title}}): {exc}") from exc
    if not topics:
        raise EvaluationError(f"{path} lists no evaluation briefs")
    duplicates = sorted(i for i, n in Counter(t.id for t in topics).items() if n > 1)
    if duplicates:
        raise EvaluationError(f"{path}: duplicate brief id(s) {', '.join(duplicates)}")
    return topics, target_words


def house_metadata(briefs: Sequence[Brief]) -> dict[str, Any]:
    """Content type, audience and tone most common among a style's corpus briefs (ties: the first seen)."""
    if not briefs:
        return {}

    def most_common(values: Sequence[Any]) -> Any:
        return Counter(values).most_common(1)[0][0]

    return {
        "content_type": most_common([b.content_type for b in briefs]),
        "audience": most_common([b.audience for b in briefs]),
        "tone": most_common([b.tone for b in briefs]),
    }


def eval_briefs(topics: Sequence[EvalTopic], style: str, house: dict[str, Any], target_words: int) -> list[Brief]:
    """The shared topics as one style's briefs: same titles and length for every style, the style's metadata."""
    return [
        Brief(id=f"eval-{topic.id}", title=topic.title, target_words=target_words, style=style, **house)
        for topic in topics
    ]


def heldout_ids(directory: Path) -> set[str]:
    """Ids of the articles that a version's training held out (a malformed record counts as none recorded)."""
    ids = read_json_object(directory / ADAPTER_META).get("heldout_ids")
    if isinstance(ids, list):
        return {str(item) for item in ids}
    if (directory / HELDOUT_FILE).is_file():
        return {item.id for item in read_heldout(directory)}
    return set()


def default_version(style: Style) -> str | None:
    """The version served on the loaded base model, else the newest trained on it, else the newest, else None."""
    versions = list_version_names(style)
    if style.adapter in versions:
        return style.adapter
    own = [v for v in versions if version_base(style.directory, v) in (None, style.base_model)]
    return (own or versions)[-1] if versions else None


@dataclass(frozen=True)
class CorpusSource:
    """Where a style's corpus articles are read from, said for the report; ``sha256`` is the content hash a
    version recorded for it (checked against what is read there now)."""

    folder: Path
    where: str
    sha256: str | None = None
    articles: int | None = None  # how many articles the recorded hash covers (fewer: --max-articles chose them)


def recorded_corpus(directory: Path) -> CorpusSource | None:
    """The corpus folder the version in ``directory`` records it was trained on (``corpus.source``; relative to
    the project when inside it, as :func:`~worker.lab.version_files.portable_path` writes it), when it is a
    folder here."""
    corpus = read_json_object(directory / ADAPTER_META).get("corpus")
    source = corpus.get("source") if isinstance(corpus, dict) else None
    if not isinstance(source, str) or not source:
        return None
    folder = (Path(source) if Path(source).is_absolute() else PROJECT_ROOT / source).resolve()
    if not folder.is_dir():
        logger.warning("%s was trained on %s, which is not a folder here: no corpus for it", directory, folder)
        return None
    sha256, articles = corpus.get("sha256"), corpus.get("articles")  # a dict here: it gave the source
    recorded_hash = sha256 if isinstance(sha256, str) else None
    count = articles if isinstance(articles, int) else None
    return CorpusSource(folder, f"{directory.name}'s training corpus {folder}", recorded_hash, count)


def corpus_folder(style: Style, version: str | None) -> CorpusSource | None:
    """Where a style's corpus articles are: its ``corpus/`` folder, else the folder that ``version`` was trained
    on (``styles train --corpus DIR``, e.g. an archive kept outside the styles folder)."""
    folder = style.directory / "corpus"
    if folder.is_dir():
        return CorpusSource(folder, "corpus/ folder")
    return recorded_corpus(versions_dir(style) / version) if version else None


def _checked(source: CorpusSource, corpus: Corpus) -> str:
    """``source.where``, saying when the articles read there are not the ones the version recorded: a subset
    (``--max-articles``; its hash covers the chosen articles only, so it is not compared) or a changed archive."""
    if source.articles is not None and source.articles != len(corpus.articles):
        return f"{source.where} (trained on {source.articles} of its {len(corpus.articles)} articles)"
    if source.sha256 is not None and corpus.content_hash() != source.sha256:
        logger.warning("%s changed since it was trained on: held-out flags may not match", source.folder)
        return f"{source.where} (changed since it was trained: held-out flags may not match)"
    return source.where


def voice_corpus(style: Style, language: str, version: str | None) -> VoiceCorpus | None:
    """The voice features of the articles of ``style``'s corpus (:func:`corpus_folder`), with ``version``'s
    held-out flags."""
    source = corpus_folder(style, version)
    if source is None:
        return None
    from worker.lab.corpus import load_corpus

    corpus = load_corpus(source.folder)
    if not corpus.articles:
        return None
    where = _checked(source, corpus)
    held = heldout_ids(versions_dir(style) / version) if version else set()
    ids = [article.id for article in corpus.articles]
    return VoiceCorpus(
        style.name,
        f"{where}, {version} held-out articles" if version else where,
        ids,
        voice_matrix([article.body for article in corpus.articles], language),
        np.array([i in held for i in ids], dtype=bool),
        [article.brief for article in corpus.articles],
    )


def training_briefs(corpus: VoiceCorpus | None, count: int) -> list[Brief]:
    """Up to ``count`` briefs of corpus articles the evaluated version trained on (not held out)."""
    if corpus is None:
        return []
    return [brief for brief, held in zip(corpus.briefs, corpus.heldout, strict=True) if not held][:count]
