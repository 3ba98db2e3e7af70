"""Evaluation of a style's adapter on held-out material: does it fit the articles, and does it write in the voice?

``copydesk styles eval NAME [--version vN] [--against base|vM]`` measures, on the articles that training
held out (``adapters/vN/heldout.jsonl``):

* **perplexity** of the held-out articles given their prompts (completion tokens only, as in training)
  under the base model and under each adapter;
* **style fidelity** of drafts generated for the held-out briefs by the base model and by each adapter
  (same prompts, same seeds):

  - *profile distance*: the root-mean-square z-score of the drafts' stylometric features
    (:mod:`worker.stylometry`) against the style's corpus, and ``1 - cosine`` between the drafts' mean
    MiniLM embedding and the corpus centroid (lower is closer to the house voice);
  - *classifier accuracy*: a softmax regression over MiniLM embeddings + stylometric features, trained on
    the corpora of all styles that have one, attributes each draft to a style; the share attributed to
    this style is reported (the held-out articles themselves give the ceiling).

The report is written as JSON, Markdown and a PNG plot into ``adapters/vN/eval/`` (or ``--output``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.adapters import BASE, AdapterRef, check_adapter
from worker.briefs import Brief
from worker.cleaning import clean_draft
from worker.config import Settings
from worker.errors import CopydeskError
from worker.prompts import PromptRenderer
from worker.styles import Style, StyleCatalog
from worker.stylometry import FEATURE_NAMES, feature_matrix, standardise
from worker.training import (
    FEATURES_FILE,
    HELDOUT_FILE,
    TRAINING_FILE,
    embed_texts,
    list_version_names,
    versions_dir,
)

logger = logging.getLogger(__name__)

BASE_LABEL = "base"
ProgressFn = Callable[[str], None]


class EvaluationError(CopydeskError):
    """A style version cannot be evaluated (no version, no held-out material, unusable adapter)."""

    exit_code = 11


@dataclass(frozen=True)
class EvalOptions:
    briefs: int = 4  # held-out briefs to generate drafts for
    max_new_tokens: int = 256  # per draft (also capped by the style's own budget for the brief)
    output_dir: Path | None = None


@dataclass
class HeldOut:
    id: str
    brief: Brief
    article: str


@dataclass
class StyleData:
    """A style's corpus as the classifier and the profile distance see it."""

    name: str
    source: str
    features: np.ndarray
    embeddings: np.ndarray
    heldout: np.ndarray  # bool mask
    ids: list[str] = field(default_factory=list)


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


def style_data(style: Style, language: str, embedder: Any) -> StyleData | None:
    """The corpus of ``style``: its served (else newest) version's features, else its ``corpus/`` folder."""
    versions = list_version_names(style)
    chosen = style.adapter if style.adapter in versions else (versions[-1] if versions else None)
    if chosen is not None and (data := read_features(versions_dir(style) / chosen, style.name)) is not None:
        return data
    folder = style.directory / "corpus"
    if folder.is_dir():
        from worker.corpus import load_corpus

        corpus = load_corpus(folder)
        if corpus.articles:
            texts = [a.body for a in corpus.articles]
            return StyleData(
                style.name,
                "corpus/ folder",
                feature_matrix(texts, language),
                np.asarray(embed_texts(texts, embedder), dtype=np.float64),
                np.zeros(len(texts), dtype=bool),
                [a.id for a in corpus.articles],
            )
    return None


# ------------------------------------------------------------------------------------------- classifier


class StyleClassifier:
    """Softmax regression over [MiniLM embedding, stylometric features] (or the stylometric features alone),
    columns z-scored, L2-regularised, full-batch gradient descent. Numpy only, deterministic."""

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

    def _x(self, features: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        return np.hstack([embeddings, features]) if self.use_embeddings else features

    def fit(self, features: np.ndarray, embeddings: np.ndarray, y: np.ndarray) -> StyleClassifier:
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

    def probabilities(self, features: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        if self.weights is None or self.mean is None or self.std is None:
            raise RuntimeError("fit the classifier first")
        z = (self._x(features, embeddings) - self.mean) / self.std
        return self._softmax(np.hstack([z, np.ones((len(z), 1))]) @ self.weights)


def train_classifier(
    corpora: Sequence[StyleData], exclude_heldout_of: str, *, use_embeddings: bool = True
) -> StyleClassifier | None:
    """A classifier over every style with a corpus; the evaluated style's held-out articles are left out.

    With embeddings the classifier also sees *what* a text is about, and topics differ between styles; the
    stylometric-only classifier (``use_embeddings=False``) sees only *how* it is written."""
    usable = [c for c in corpora if len(c.features)]
    if len(usable) < 2:
        return None
    features, embeddings, labels = [], [], []
    for index, data in enumerate(usable):
        keep = ~data.heldout if data.name == exclude_heldout_of else np.ones(len(data.features), dtype=bool)
        features.append(data.features[keep])
        embeddings.append(data.embeddings[keep])
        labels.extend([index] * int(keep.sum()))
    classifier = StyleClassifier([c.name for c in usable], use_embeddings=use_embeddings)
    return classifier.fit(np.vstack(features), np.vstack(embeddings), np.array(labels))


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


def _generate(
    settings: Settings,
    engine: Any,
    renderer: PromptRenderer,
    style: Style,
    items: Sequence[HeldOut],
    refs: dict[str, AdapterRef | None],
    max_new_tokens: int,
) -> dict[str, list[str]]:
    """Drafts for every held-out brief under every variant: same prompt, same seed, only the adapter differs."""
    from worker.engine import GenerationRequest
    from worker.pipeline import derive_seed
    from worker.pipeline import max_new_tokens as budget
    from worker.sampling import RowSettings

    requests = []
    for label, ref in refs.items():
        for item in items:
            generation = style.generation
            row = RowSettings(
                generation.temperature,
                generation.top_p,
                generation.repetition_penalty,
                min(max_new_tokens, budget(item.brief, style)),
                derive_seed(settings.seed, item.brief.brief_id, 1, 0),
            )
            messages = renderer.render(item.brief, style).messages()
            requests.append(GenerationRequest(f"{label}/{item.id}", messages, row, ref))
    outputs = {out.key: out.text for out in engine.generate(requests)}
    return {label: [clean_draft(outputs[f"{label}/{item.id}"], item.brief.title) for item in items] for label in refs}


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


def _fidelity(
    texts: Sequence[str],
    data: StyleData,
    classifiers: dict[str, StyleClassifier | None],
    language: str,
    embedder: Any,
) -> dict[str, Any]:
    features = feature_matrix(list(texts), language)
    embeddings = np.asarray(embed_texts(list(texts), embedder), dtype=np.float64)
    result: dict[str, Any] = {
        "profile_distance": round(_rms_z(features, data.features), 4),
        "embedding_distance": round(_embedding_distance(embeddings, data.embeddings), 4),
        "features": {name: round(float(features[:, i].mean()), 3) for i, name in enumerate(FEATURE_NAMES)},
    }
    for key, classifier in classifiers.items():
        if classifier is None:
            continue
        probabilities = classifier.probabilities(features, embeddings)
        target = classifier.labels.index(data.name)
        predicted = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
        result[f"{key}_accuracy"] = round(float(np.mean([p == data.name for p in predicted])), 4)
        result[f"{key}_style_probability"] = round(float(probabilities[:, target].mean()), 4)
        result[f"{key}_attributed_to"] = predicted
    return result


# ------------------------------------------------------------------------------------------- driver


def _resolve_versions(style: Style, version: str | None, against: str | None) -> tuple[str, list[str]]:
    versions = list_version_names(style)
    chosen = version or style.adapter or (versions[-1] if versions else None)
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
    options = options or EvalOptions()
    say = progress or (lambda message: None)
    catalog = StyleCatalog.load(settings.styles_dir)
    style = catalog.get(style_name)
    chosen, others = _resolve_versions(style, version, against)
    directory = versions_dir(style) / chosen
    heldout = read_heldout(directory)
    training = (
        json.loads((directory / TRAINING_FILE).read_text(encoding="utf-8"))
        if (directory / TRAINING_FILE).is_file()
        else {}
    )
    max_length = int(training.get("options", {}).get("max_length", 1024))
    if engine is None:
        from worker.engine import Engine
        from worker.training import quiet_libraries

        quiet_libraries()
        say("loading the base model")
        engine = Engine.from_settings(settings)
    if embedder is None:
        from worker.embeddings import default_embedder

        embedder = default_embedder()
    refs: dict[str, AdapterRef | None] = {BASE_LABEL: None}
    for name in [chosen, *others]:
        ref = AdapterRef(style.name, name, versions_dir(style) / name)
        check_adapter(ref, engine.source.model_id)  # AdapterError: e.g. trained for another base model
        engine.load_adapter(ref)
        refs[name] = ref
    renderer = PromptRenderer(settings.templates_dir)

    say(f"perplexity of {len(heldout)} held-out article(s)")
    perplexity = {
        label: _perplexity(engine, renderer, style, heldout, ref.name if ref else BASE, max_length)
        for label, ref in refs.items()
    }
    subset = heldout[: max(1, options.briefs)]
    say(f"generating {len(subset) * len(refs)} draft(s)")
    drafts = _generate(settings, engine, renderer, style, subset, refs, options.max_new_tokens)

    say("measuring style fidelity")
    own = read_features(directory, style.name)  # the corpus of the version under evaluation
    if own is None:
        raise EvaluationError(f"{directory} has no {FEATURES_FILE}: retrain the style to get its corpus profile")
    others_data = (style_data(s, settings.language, embedder) for s in catalog.styles.values() if s.name != style.name)
    corpora = [own, *(d for d in others_data if d is not None)]
    classifier = train_classifier(corpora, style.name)
    classifiers = {
        "classifier": classifier,
        "stylometric_classifier": train_classifier(corpora, style.name, use_embeddings=False),
    }
    fidelity = {
        label: _fidelity(texts, own, classifiers, settings.language, embedder) for label, texts in drafts.items()
    }
    reference = _fidelity([h.article for h in subset], own, classifiers, settings.language, embedder)

    table = [
        {
            "variant": label,
            "perplexity": round(perplexity[label], 3),
            "profile_distance": fidelity[label]["profile_distance"],
            "embedding_distance": fidelity[label]["embedding_distance"],
            "classifier_accuracy": fidelity[label].get("classifier_accuracy"),
            "stylometric_accuracy": fidelity[label].get("stylometric_classifier_accuracy"),
        }
        for label in refs
    ]
    table.append(
        {
            "variant": "held-out articles",
            "perplexity": None,
            "profile_distance": reference["profile_distance"],
            "embedding_distance": reference["embedding_distance"],
            "classifier_accuracy": reference.get("classifier_accuracy"),
            "stylometric_accuracy": reference.get("stylometric_classifier_accuracy"),
        }
    )
    data = {
        "style": style.name,
        "version": chosen,
        "against": others[0] if others else BASE_LABEL,
        "base_model_id": engine.source.model_id,
        "heldout_articles": len(heldout),
        "drafts_per_variant": len(subset),
        "max_new_tokens": options.max_new_tokens,
        "classifier": (
            {"styles": classifier.labels, "sources": {c.name: c.source for c in corpora}}
            if classifier
            else {"note": "needs the corpora of at least two styles"}
        ),
        "perplexity": {label: round(value, 3) for label, value in perplexity.items()},
        "fidelity": fidelity,
        "reference": reference,
        "table": table,
        "drafts": {label: [text[:600] for text in texts] for label, texts in drafts.items()},
        "caveats": _caveats(style, chosen, others, heldout),
    }
    report = EvalReport(style.name, chosen, list(refs), data)
    report.files = write_report(report, options.output_dir or directory / "eval")
    return report


def _caveats(style: Style, chosen: str, others: Sequence[str], heldout: Sequence[HeldOut]) -> list[str]:
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
        notes.append(f"only {len(heldout)} held-out article(s): treat differences as indicative")
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
    ("classifier_accuracy", "classifier accuracy (MiniLM + stylometry)", 2),
    ("stylometric_accuracy", "classifier accuracy (stylometry only)", 2),
)


def report_markdown(report: EvalReport) -> str:
    data = report.data
    lines = [
        f"# {data['style']} {data['version']} against {data['against']}",
        "",
        f"Base model `{data['base_model_id']}`; {data['heldout_articles']} held-out article(s); "
        f"{data['drafts_per_variant']} draft(s) per variant, at most {data['max_new_tokens']} new tokens.",
        "",
        "| variant | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "| --- |" + " --- |" * len(COLUMNS),
    ]
    for row in data["table"]:
        cells = [_cell(row[key], digits) for key, _, digits in COLUMNS]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Lower perplexity and distances are better; accuracy is the share of drafts attributed to this style.",
    ]
    lines += [f"- {note}" for note in data["caveats"]]
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"against-{report.data['against']}"
    json_path, md_path, png_path = (directory / f"{stem}{suffix}" for suffix in (".json", ".md", ".png"))
    json_path.write_text(json.dumps(report.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(report_markdown(report), encoding="utf-8")
    plot_report(report, png_path)
    return {"json": str(json_path), "markdown": str(md_path), "plot": str(png_path)}


def plot_report(report: EvalReport, path: Path) -> None:
    """Four bar charts: held-out perplexity, stylometric and embedding distance to the corpus, classifier accuracy."""
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
        ("accuracy", "drafts attributed to the style (higher)"),
    ]
    for axis, (key, title) in zip(axes, panels, strict=True):
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelrotation=20, labelsize=8)
        if key == "accuracy":
            positions = np.arange(len(labels))
            for offset, (column, name) in enumerate(
                (("classifier_accuracy", "MiniLM + stylometry"), ("stylometric_accuracy", "stylometry only"))
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
