"""Evaluation of a style's adapter: does it fit held-out articles, and does it write in the style's voice?

``copydesk styles eval NAME [--version vN] [--against base|vM]`` (or ``--all``) measures:

* **perplexity** of the articles that training held out (``adapters/vN/heldout.jsonl``) given their prompts
  (completion tokens only, as in training) under the base model and under each adapter;
* **style fidelity** of drafts written by the base model and by each adapter (same prompts, same seeds) for
  the *shared evaluation briefs* (``<styles>/eval-briefs.yaml``): the same topic-neutral titles for every
  style, each rendered through the style's own prompt (system prompt; content type, audience and tone most
  common in its corpus). Topic therefore cannot tell the styles' drafts apart; only the voice can.

  - *profile distance*: the root-mean-square z-score of the drafts' stylometric features
    (:mod:`worker.lab.stylometry`) against the style's corpus, and ``1 - cosine`` between the drafts' mean
    MiniLM embedding and the corpus centroid (lower is closer to the house voice; the embedding also carries
    the topic, which is the same for both variants);
  - *attribution*: a softmax regression over voice features only (:data:`worker.lab.stylometry.VOICE_FEATURE_NAMES`:
    sentence and word shape, person, punctuation, contractions, function-word rates; no embedding, no content
    word) is trained on the corpus articles of every style, never on a draft and never on an article any
    evaluated adapter held out; the share of drafts it attributes to this style is reported for the base model
    and for each adapter, with an exact sign test over the paired drafts. The classifier's own accuracy is
    reported too: on the held-out articles and by leave-one-out over all corpus articles.

The report is written as JSON, Markdown and a PNG plot into ``adapters/vN/eval/`` (or ``--output``).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from worker.config import Settings
from worker.engine.adapters import ADAPTER_META, BASE, AdapterRef, check_adapter
from worker.errors import CopydeskError
from worker.intake.briefs import Brief
from worker.lab.stylometry import FEATURE_NAMES, feature_matrix, standardise, voice_matrix
from worker.lab.training import embed_texts
from worker.pipeline.cleaning import clean_draft
from worker.pipeline.prompts import PromptRenderer
from worker.scoring.memorisation import CorpusIndex, GuardLimits, guard_limits
from worker.styles.catalog import Style, StyleCatalog
from worker.styles.layout import (
    FEATURES_FILE,
    HELDOUT_FILE,
    TRAINING_FILE,
    adapter_ref,
    list_version_names,
    versions_dir,
)

logger = logging.getLogger(__name__)

BASE_LABEL = "base"
PROBE_TAG = "trained-on/"  # request keys of the memorisation probe's drafts
Guard = tuple[CorpusIndex, GuardLimits]  # a version's corpus index and its style's limits
EVAL_BRIEFS_FILE = "eval-briefs.yaml"
ProgressFn = Callable[[str], None]


class EvaluationError(CopydeskError):
    """A style version cannot be evaluated (no version, no held-out material, unusable adapter)."""

    exit_code = 11


@dataclass(frozen=True)
class EvalOptions:
    briefs: int = 24  # shared evaluation briefs to write drafts for (per variant); at most the file's count
    max_new_tokens: int = 192  # per draft (also capped by the style's own budget for the brief)
    output_dir: Path | None = None
    briefs_file: Path | None = None  # default: <styles_dir>/eval-briefs.yaml


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
class EvalReport:
    style: str
    version: str
    variants: list[str]
    data: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return self.data["table"]


# ------------------------------------------------------------------------------------------- inputs


def read_heldout(directory: Path) -> list[HeldOut]:
    path = directory / HELDOUT_FILE
    if not path.is_file():
        raise EvaluationError(f"{directory} has no {HELDOUT_FILE}: retrain the style to get held-out material")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            items.append(HeldOut(record["id"], Brief.model_validate(record["brief"]), record["article"]))
    if not items:
        raise EvaluationError(f"{path} is empty: nothing was held out")
    return items


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
    """Ids of the articles that a version's training held out."""
    meta = directory / ADAPTER_META
    if meta.is_file():
        ids = json.loads(meta.read_text(encoding="utf-8")).get("heldout_ids")
        if ids is not None:
            return set(ids)
    if (directory / HELDOUT_FILE).is_file():
        return {item.id for item in read_heldout(directory)}
    return set()


def default_version(style: Style) -> str | None:
    """The served version, else the newest, else None."""
    versions = list_version_names(style)
    return style.adapter if style.adapter in versions else (versions[-1] if versions else None)


def voice_corpus(style: Style, language: str, version: str | None) -> VoiceCorpus | None:
    """The voice features of the articles in ``style``'s ``corpus/`` folder, with ``version``'s held-out flags."""
    folder = style.directory / "corpus"
    if not folder.is_dir():
        return None
    from worker.lab.corpus import load_corpus

    corpus = load_corpus(folder)
    if not corpus.articles:
        return None
    held = heldout_ids(versions_dir(style) / version) if version else set()
    ids = [article.id for article in corpus.articles]
    return VoiceCorpus(
        style.name,
        f"corpus/ folder, {version} held-out articles" if version else "corpus/ folder",
        ids,
        voice_matrix([article.body for article in corpus.articles], language),
        np.array([i in held for i in ids], dtype=bool),
        [article.brief for article in corpus.articles],
    )


# ------------------------------------------------------------------------------------------- classifier


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
    ) -> None:
        self.labels = list(labels)
        self.use_embeddings = use_embeddings
        self.l2, self.steps, self.rate = l2, steps, rate
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
        w = np.zeros((z.shape[1], k))
        for _ in range(self.steps):
            p = self._softmax(z @ w)
            gradient = z.T @ (p - onehot) / len(z) + self.l2 * np.vstack([w[:-1], np.zeros((1, k))])
            w -= self.rate * gradient
        self.weights = w
        return self

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


# ------------------------------------------------------------------------------------------- measures


def _perplexity(
    engine: Any, renderer: PromptRenderer, style: Style, items: Sequence[HeldOut], adapter: str, max_length: int
) -> float:
    """exp(mean NLL) of the held-out articles' completion tokens, given their prompts."""
    import torch

    tokenizer = engine.tokenizer
    total_nll, total_tokens = 0.0, 0
    for item in items:
        messages = renderer.render(item.brief, style).messages()
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": item.article}], tokenize=False
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
        if len(ids) <= len(prompt_ids):
            continue
        input_ids = torch.tensor([ids], device=engine.device)
        labels = input_ids.clone()
        labels[:, : len(prompt_ids)] = -100
        kwargs: dict[str, Any] = {"adapter_names": [adapter]} if engine.adapters.loaded else {}
        with torch.inference_mode():
            logits = engine.model(input_ids=input_ids, **kwargs).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]),
            shift_labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total_nll += float(nll)
        total_tokens += int((shift_labels != -100).sum())
    return math.exp(total_nll / total_tokens) if total_tokens else float("nan")


def _draft_requests(
    settings: Settings,
    renderer: PromptRenderer,
    style: Style,
    briefs: Sequence[Brief],
    refs: dict[str, AdapterRef | None],
    max_new_tokens: int,
    tag: str = "",
) -> list[Any]:
    """One request per brief and variant: same prompt, same seed, only the adapter differs."""
    from worker.engine.engine import GenerationRequest
    from worker.engine.sampling import RowSettings
    from worker.pipeline.pipeline import derive_seed
    from worker.pipeline.pipeline import max_new_tokens as budget

    generation = style.generation
    requests = []
    for label, ref in refs.items():
        for brief in briefs:
            row = RowSettings(
                generation.temperature,
                generation.top_p,
                generation.repetition_penalty,
                min(max_new_tokens, budget(brief, style)),
                derive_seed(settings.seed, brief.brief_id, 1, 0),
            )
            messages = renderer.render(brief, style).messages()
            key = f"{style.name}/{label}/{tag}{brief.brief_id}"
            requests.append(GenerationRequest(key, messages, row, ref))
    return requests


def _rms_z(features: np.ndarray, reference: np.ndarray) -> float:
    if not len(features):
        return float("nan")
    z = standardise(features, reference.mean(axis=0), reference.std(axis=0))
    return float(np.mean(np.sqrt(np.mean(z**2, axis=1))))


def _embedding_distance(embeddings: np.ndarray, reference: np.ndarray) -> float:
    if not len(embeddings):
        return float("nan")
    centroid = reference.mean(axis=0)
    mean = embeddings.mean(axis=0)
    return float(1 - mean @ centroid / (np.linalg.norm(mean) * np.linalg.norm(centroid) + 1e-12))


def _memorisation(texts: Sequence[str], embeddings: np.ndarray, guard: Guard | None) -> dict[str, Any]:
    """How many drafts the memorisation guard stops (the rate a served adapter trips it)."""
    if guard is None or not len(texts):
        return {}
    index, limits = guard
    closeness = [index.closeness(text, vector) for text, vector in zip(texts, embeddings, strict=True)]
    trips = [c.too_close(limits) for c in closeness]
    return {
        "memorisation_trips": round(float(np.mean(trips)), 4),
        "memorisation_tripped": sum(trips),
        "longest_copied_run": max(c.copied_words for c in closeness),
        "max_corpus_similarity": max((c.similarity or 0.0) for c in closeness),
    }


def training_briefs(corpus: VoiceCorpus | None, count: int) -> list[Brief]:
    """Up to ``count`` briefs of corpus articles the evaluated version trained on (not held out)."""
    if corpus is None:
        return []
    return [brief for brief, held in zip(corpus.briefs, corpus.heldout, strict=True) if not held][:count]


def _probe_report(plan: _Plan, drafts: dict[str, list[str]], embedder: Any) -> dict[str, Any]:
    """The memorisation guard on drafts for briefs the adapter was trained on, where copying would show."""
    index = CorpusIndex.load(plan.directory)
    if index is None or not plan.probe:
        return {"note": "no corpus index or no training briefs: not measured"}
    guard = (index, guard_limits(plan.style.targets))
    result: dict[str, Any] = {"briefs": len(plan.probe)}
    for label, texts in drafts.items():
        embeddings = np.asarray(embed_texts(texts, embedder), dtype=np.float32)
        result[label] = {**_memorisation(texts, embeddings, guard), "drafts": texts}
    return result


def _fidelity(
    texts: Sequence[str],
    data: StyleData,
    classifier: StyleClassifier | None,
    language: str,
    embedder: Any,
    guard: Guard | None = None,
) -> dict[str, Any]:
    features = feature_matrix(list(texts), language)
    embeddings = np.asarray(embed_texts(list(texts), embedder), dtype=np.float64)
    result: dict[str, Any] = {
        "profile_distance": round(_rms_z(features, data.features), 4),
        "embedding_distance": round(_embedding_distance(embeddings, data.embeddings), 4),
        "features": {name: round(float(features[:, i].mean()), 3) for i, name in enumerate(FEATURE_NAMES)},
        **_memorisation(texts, embeddings.astype(np.float32), guard),
    }
    if classifier is not None and data.name in classifier.labels and len(texts):
        probabilities = classifier.probabilities(voice_matrix(list(texts), language))
        predicted = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
        right = [p == data.name for p in predicted]
        result["attribution_accuracy"] = round(float(np.mean(right)), 4)
        result["style_probability"] = round(float(probabilities[:, classifier.labels.index(data.name)].mean()), 4)
        result["attributed_to"] = predicted
        result["attributed_counts"] = dict(Counter(predicted).most_common())
        result["right"] = right
    return result


# ------------------------------------------------------------------------------------------- driver


def _resolve_versions(style: Style, version: str | None, against: str | None) -> tuple[str, list[str]]:
    versions = list_version_names(style)
    chosen = version or default_version(style)
    if chosen is None:
        raise EvaluationError(
            f"style {style.name!r} has no adapter version yet: train one with `copydesk styles train`"
        )
    others = [] if against in (None, BASE_LABEL) else [against]
    for name in [chosen, *others]:
        if name not in versions:
            raise EvaluationError(
                f"style {style.name!r} has no version {name!r} (versions: {', '.join(versions) or 'none'})"
            )
    if chosen in others:
        raise EvaluationError(f"--against {against} is the version under evaluation; pick another version or base")
    return chosen, others


@dataclass
class _Plan:
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


def evaluate_style(
    settings: Settings,
    style_name: str,
    *,
    version: str | None = None,
    against: str | None = None,
    options: EvalOptions | None = None,
    engine: Any = None,
    embedder: Any = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Evaluate ``version`` (default: the served one, else the newest) against the base model or ``against``."""
    (report,) = evaluate_styles(
        settings,
        [style_name],
        version=version,
        against=against,
        options=options,
        engine=engine,
        embedder=embedder,
        progress=progress,
    )
    return report


def evaluable_styles(settings: Settings) -> list[str]:
    """Every style that has an adapter version (what ``styles eval --all`` evaluates)."""
    catalog = StyleCatalog.load(settings.styles_dir)
    return [name for name in catalog.names if list_version_names(catalog.get(name))]


def evaluate_styles(
    settings: Settings,
    style_names: Sequence[str],
    *,
    version: str | None = None,
    against: str | None = None,
    options: EvalOptions | None = None,
    engine: Any = None,
    embedder: Any = None,
    progress: ProgressFn | None = None,
) -> list[EvalReport]:
    """Evaluate several styles with one model load, one classifier and one batched generation call."""
    options = options or EvalOptions()
    say = progress or (lambda message: None)
    if not style_names:
        raise EvaluationError("no style to evaluate: train an adapter version first")
    if len(style_names) > 1 and (version is not None or against not in (None, BASE_LABEL)):
        raise EvaluationError("--version and --against apply to one style; evaluate it on its own")
    catalog = StyleCatalog.load(settings.styles_dir)
    topics, target_words = read_eval_topics(options.briefs_file or settings.styles_dir / EVAL_BRIEFS_FILE)
    topics = topics[: max(1, options.briefs)]
    plans = []
    for name in style_names:
        style = catalog.get(name)
        chosen, others = _resolve_versions(style, version, against)
        directory = versions_dir(style) / chosen
        training = (
            json.loads((directory / TRAINING_FILE).read_text(encoding="utf-8"))
            if (directory / TRAINING_FILE).is_file()
            else {}
        )
        if not (directory / FEATURES_FILE).is_file():
            raise EvaluationError(f"{directory} has no {FEATURES_FILE}: retrain the style to get its corpus profile")
        plans.append(
            _Plan(
                style,
                chosen,
                others,
                directory,
                read_heldout(directory),
                int(training.get("options", {}).get("max_length", 1024)),
            )
        )
    if engine is None:
        from worker.engine.engine import Engine
        from worker.lab.training import quiet_libraries

        quiet_libraries()
        say("loading the base model")
        engine = Engine.from_settings(settings)
    if embedder is None:
        from worker.scoring.embeddings import default_embedder

        embedder = default_embedder()

    say("training the voice classifier on every style's corpus")
    evaluated = {plan.style.name: plan.chosen for plan in plans}
    corpora = {
        s.name: voice_corpus(s, settings.language, evaluated.get(s.name, default_version(s)))
        for s in catalog.styles.values()
    }
    classifier, check = train_voice_classifier([c for c in corpora.values() if c is not None])

    renderer = PromptRenderer(settings.templates_dir)
    requests = []
    for plan in plans:
        style = plan.style
        plan.refs = {BASE_LABEL: None}
        for name in [plan.chosen, *plan.others]:
            ref = adapter_ref(style, name)
            check_adapter(ref, engine.source.model_id)  # AdapterError: e.g. trained for another base model
            engine.load_adapter(ref)
            plan.refs[name] = ref
        say(f"{style.name}: perplexity of {len(plan.heldout)} held-out article(s)")
        plan.perplexity = {
            label: _perplexity(engine, renderer, style, plan.heldout, ref.name if ref else BASE, plan.max_length)
            for label, ref in plan.refs.items()
        }
        corpus = corpora.get(style.name)
        plan.house = house_metadata(corpus.briefs if corpus else [h.brief for h in plan.heldout])
        plan.briefs = eval_briefs(topics, style.name, plan.house, target_words)
        requests += _draft_requests(settings, renderer, style, plan.briefs, plan.refs, options.max_new_tokens)
        plan.probe = training_briefs(corpus, options.briefs)
        requests += _draft_requests(
            settings, renderer, style, plan.probe, plan.refs, options.max_new_tokens, tag=PROBE_TAG
        )
    say(f"generating {len(requests)} draft(s)")
    outputs = {out.key: out.text for out in engine.generate(requests)}

    reports = []
    for plan in plans:
        say(f"{plan.style.name}: measuring style fidelity")
        drafts, probe = (
            {
                label: [clean_draft(outputs[f"{plan.style.name}/{label}/{tag}{b.brief_id}"], b.title) for b in briefs]
                for label in plan.refs
            }
            for tag, briefs in (("", plan.briefs), (PROBE_TAG, plan.probe))
        )
        report = _report(settings, plan, drafts, classifier, check, embedder, options, engine.source.model_id)
        report.data["memorisation_probe"] = _probe_report(plan, probe, embedder)
        report.files = write_report(report, options.output_dir or plan.directory / "eval")
        reports.append(report)
    return reports


def _report(
    settings: Settings,
    plan: _Plan,
    drafts: dict[str, list[str]],
    classifier: StyleClassifier | None,
    check: dict[str, Any],
    embedder: Any,
    options: EvalOptions,
    model_id: str,
) -> EvalReport:
    style = plan.style
    own = read_features(plan.directory, style.name)  # the corpus of the version under evaluation
    assert own is not None  # checked before loading anything
    language = settings.language
    index = CorpusIndex.load(plan.directory)
    guard = (index, guard_limits(style.targets)) if index is not None else None
    fidelity = {label: _fidelity(texts, own, classifier, language, embedder, guard) for label, texts in drafts.items()}
    reference = _fidelity([h.article for h in plan.heldout], own, classifier, language, embedder)
    attributed = "attribution_accuracy" in fidelity[BASE_LABEL]
    tests = (
        {
            label: sign_test(fidelity[BASE_LABEL]["right"], fidelity[label]["right"])
            for label in plan.refs
            if label != BASE_LABEL
        }
        if attributed
        else {}
    )

    def row(label: str, values: dict[str, Any], perplexity: float | None) -> dict[str, Any]:
        return {
            "variant": label,
            "perplexity": None if perplexity is None else round(perplexity, 3),
            "profile_distance": values["profile_distance"],
            "embedding_distance": values["embedding_distance"],
            "attribution_accuracy": values.get("attribution_accuracy"),
            "style_probability": values.get("style_probability"),
            "memorisation_trips": values.get("memorisation_trips"),
        }

    table = [row(label, fidelity[label], plan.perplexity[label]) for label in plan.refs]
    table.append(row("held-out articles", reference, None))
    data = {
        "style": style.name,
        "version": plan.chosen,
        "against": plan.others[0] if plan.others else BASE_LABEL,
        "base_model_id": model_id,
        "heldout_articles": len(plan.heldout),
        "eval_briefs": {
            "file": EVAL_BRIEFS_FILE if options.briefs_file is None else str(options.briefs_file),
            "count": len(plan.briefs),
            "titles": [b.title for b in plan.briefs],
            "target_words": plan.briefs[0].target_words if plan.briefs else None,
            "as": {key: str(getattr(value, "value", value)) for key, value in plan.house.items()},
        },
        "drafts_per_variant": len(plan.briefs),
        "max_new_tokens": options.max_new_tokens,
        "seed": settings.seed,
        "classifier": check,
        "perplexity": {label: round(value, 3) for label, value in plan.perplexity.items()},
        "fidelity": fidelity,
        "reference": reference,
        "sign_test": tests,
        "table": table,
        "drafts": drafts,
        "caveats": _caveats(style, plan.chosen, plan.others, plan.heldout, check, attributed),
    }
    return EvalReport(style.name, plan.chosen, list(plan.refs), data)


def _caveats(
    style: Style,
    chosen: str,
    others: Sequence[str],
    heldout: Sequence[HeldOut],
    check: dict[str, Any],
    attributed: bool,
) -> list[str]:
    notes = []
    ids = {h.id for h in heldout}
    for other in others:
        data = read_features(versions_dir(style) / other, style.name)
        if data is None:
            continue
        trained_on = {i for i, held in zip(data.ids, data.heldout, strict=True) if not held}
        seen = ids & trained_on
        if seen:
            notes.append(
                f"{other} was trained on {len(seen)} of {chosen}'s held-out article(s): its figures are optimistic"
            )
    if len(heldout) < 5:
        notes.append(f"only {len(heldout)} held-out article(s): treat perplexity differences as indicative")
    if not attributed:
        notes.append(
            "drafts not attributed: the voice classifier needs the corpus/ folder of this style and one other"
            if "note" not in check
            else f"drafts not attributed: {check['note']}"
        )
    elif check.get("loo_accuracy", 1.0) < 0.8:
        notes.append(
            f"the voice classifier itself is weak (leave-one-out accuracy {check['loo_accuracy']:.2f}): "
            "read its attributions with care"
        )
    return notes


# ------------------------------------------------------------------------------------------- output


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


COLUMNS = (
    ("perplexity", "perplexity (held-out)", 2),
    ("profile_distance", "profile distance", 3),
    ("embedding_distance", "embedding distance", 3),
    ("attribution_accuracy", "attributed to the style (voice classifier)", 2),
    ("style_probability", "mean P(style)", 2),
    ("memorisation_trips", "memorisation guard trips", 2),
)


def classifier_summary(check: dict[str, Any]) -> str:
    if "note" in check:
        return f"Voice classifier: not trained ({check['note']})."
    held = (
        f"accuracy {check['heldout_accuracy']:.2f} on the {check['heldout_articles']} held-out article(s); "
        if check.get("heldout_accuracy") is not None
        else ""
    )
    return (
        f"Voice classifier (voice features only, no embedding): trained on {check['training_articles']} corpus "
        f"articles of {len(check['styles'])} styles ({', '.join(check['styles'])}); {held}leave-one-out accuracy "
        f"{check['loo_accuracy']:.2f} over all {check['loo_articles']} articles."
    )


def report_markdown(report: EvalReport) -> str:
    data = report.data
    briefs = data["eval_briefs"]
    shape = ", ".join(f"{key} {value}" for key, value in briefs["as"].items())
    lines = [
        f"# {data['style']} {data['version']} against {data['against']}",
        "",
        f"Base model `{data['base_model_id']}`; perplexity on {data['heldout_articles']} held-out article(s); "
        f"drafts for the {briefs['count']} shared evaluation briefs ({briefs['file']}: the same titles for every "
        f"style, here as {shape}, about {briefs['target_words']} words) per variant, at most "
        f"{data['max_new_tokens']} new tokens, seed {data['seed']}.",
        "",
        "| variant | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "| --- |" + " --- |" * len(COLUMNS),
    ]
    for row in data["table"]:
        cells = [_cell(row[key], digits) for key, _, digits in COLUMNS]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Lower perplexity and distances are better; attribution is the share of drafts the voice classifier "
        "gives to this style, P(style) its mean probability.",
        "",
    ]
    for label, values in data["fidelity"].items():
        if "attributed_counts" in values:
            counts = ", ".join(f"{name} {count}" for name, count in values["attributed_counts"].items())
            lines.append(f"- {label} drafts attributed to: {counts}")
    for label, test in data["sign_test"].items():
        lines.append(
            f"- paired drafts, {label} vs base: only {label}'s attributed right {test['adapter_only']}, only "
            f"base's {test['base_only']}; exact sign test p = {test['p_value']:.3f}"
        )
    lines.append(f"- {classifier_summary(data['classifier'])}")
    lines += probe_lines(data.get("memorisation_probe", {}))
    lines += [f"- {note}" for note in data["caveats"]]
    return "\n".join(lines) + "\n"


def probe_lines(probe: dict[str, Any]) -> list[str]:
    if "briefs" not in probe:
        return [f"- memorisation probe: {probe['note']}"] if "note" in probe else []
    parts = [
        f"{label} {values['memorisation_tripped']}/{probe['briefs']} (longest verbatim run "
        f"{values['longest_copied_run']} words, highest similarity to one corpus article "
        f"{values['max_corpus_similarity']:.2f})"
        for label, values in probe.items()
        if isinstance(values, dict)
    ]
    return [
        f"- memorisation probe, drafts for {probe['briefs']} briefs of articles the version trained on: "
        f"guard trips {'; '.join(parts)}"
    ]


def write_report(report: EvalReport, directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"against-{report.data['against']}"
    json_path, md_path, png_path = (directory / f"{stem}{suffix}" for suffix in (".json", ".md", ".png"))
    json_path.write_text(json.dumps(report.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(report_markdown(report), encoding="utf-8")
    plot_report(report, png_path)
    return {"json": str(json_path), "markdown": str(md_path), "plot": str(png_path)}


def plot_report(report: EvalReport, path: Path) -> None:
    """Four bar charts: held-out perplexity, stylometric and embedding distance to the corpus, attribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.data["table"]
    labels = [row["variant"] for row in rows]
    colours = [*["#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c"][: len(labels) - 1], "#6a3d9a"]

    def values(key: str) -> list[float]:
        return [float("nan") if row[key] is None else float(row[key]) for row in rows]

    figure, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    panels = [
        ("perplexity", "held-out perplexity (lower is better)"),
        ("profile_distance", "stylometric distance to corpus (lower)"),
        ("embedding_distance", "embedding distance to corpus (lower)"),
        ("attribution", "drafts attributed to the style (higher)"),
    ]
    for axis, (key, title) in zip(axes, panels, strict=True):
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelrotation=20, labelsize=8)
        if key == "attribution":
            positions = np.arange(len(labels))
            for offset, (column, name) in enumerate(
                (("attribution_accuracy", "share attributed"), ("style_probability", "mean P(style)"))
            ):
                heights = np.nan_to_num(values(column), nan=0.0)
                axis.bar(positions + (offset - 0.5) * 0.38, heights, width=0.38, label=name)
            axis.set_xticks(positions, labels)
            axis.set_ylim(0, 1.15)
            axis.legend(fontsize=7, loc="upper right")
            continue
        shown = [(label, h, colour) for label, h, colour in zip(labels, values(key), colours, strict=True)]
        shown = [item for item in shown if not math.isnan(item[1])]
        axis.bar([item[0] for item in shown], [item[1] for item in shown], color=[item[2] for item in shown])
        for index, (_, height, _) in enumerate(shown):
            axis.text(index, height, f"{height:.2f}", ha="center", va="bottom", fontsize=8)
        if not shown:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
    figure.suptitle(f"{report.data['style']} {report.data['version']} vs {report.data['against']}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
