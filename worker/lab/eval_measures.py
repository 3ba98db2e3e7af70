"""What an evaluation measures: held-out perplexity, the drafts' requests (one per brief, seed and variant), and
a set of drafts' distance to the style's corpus profile, attribution by the voice classifier and memorisation
guard trips, each with its 95 % interval (:mod:`worker.lab.eval_stats`) and its per-draft values for pairing."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from worker.config import Settings
from worker.engine.adapters import AdapterRef
from worker.intake.briefs import Brief
from worker.lab.eval_inputs import HeldOut, Plan, StyleData
from worker.lab.eval_stats import mean_interval, weighted_interval, wilson_interval
from worker.lab.stylometry import FEATURE_NAMES, feature_matrix, standardise, voice_matrix
from worker.lab.voice_classifier import StyleClassifier
from worker.pipeline.prompts import PromptRenderer
from worker.scoring.memorisation import CorpusIndex, GuardLimits, guard_limits
from worker.scoring.topicality import embed_texts
from worker.styles.catalog import Style

Guard = tuple[CorpusIndex, GuardLimits]  # a version's corpus index and its style's limits


def perplexity(
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


def draft_key(style: str, label: str, brief_id: str, seed_index: int, tag: str = "") -> str:
    """The request key of one draft: style, variant, brief and seed index."""
    return f"{style}/{label}/{tag}{brief_id}#{seed_index}"


def draft_requests(
    settings: Settings,
    renderer: PromptRenderer,
    style: Style,
    briefs: Sequence[Brief],
    refs: dict[str, AdapterRef | None],
    max_new_tokens: int,
    tag: str = "",
    seeds: int = 1,
) -> list[Any]:
    """One request per brief, seed and variant: same prompt, same seed, only the adapter differs.

    Seed ``k`` of a brief is the seed of the pipeline's candidate ``k`` for it (first attempt), so seed 0 is the
    seed a one-seed evaluation always used."""
    from worker.engine.engine import GenerationRequest
    from worker.engine.sampling import RowSettings
    from worker.pipeline.pipeline import derive_seed
    from worker.pipeline.pipeline import max_new_tokens as budget

    generation = style.generation
    requests = []
    for label, ref in refs.items():
        for brief in briefs:
            messages = renderer.render(brief, style).messages()
            for seed_index in range(seeds):
                row = RowSettings(
                    generation.temperature,
                    generation.top_p,
                    generation.repetition_penalty,
                    min(max_new_tokens, budget(brief, style)),
                    derive_seed(settings.seed, brief.brief_id, 1, seed_index),
                )
                key = draft_key(style.name, label, brief.brief_id, seed_index, tag)
                requests.append(GenerationRequest(key, messages, row, ref))
    return requests


def rms_z(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each draft's root-mean-square z-score against the reference (its profile distance)."""
    if not len(features):
        return np.zeros(0)
    z = standardise(features, reference.mean(axis=0), reference.std(axis=0))
    return np.sqrt(np.mean(z**2, axis=1))


def cosine_distance(vector: np.ndarray, centroid: np.ndarray) -> float:
    return float(1 - vector @ centroid / (np.linalg.norm(vector) * np.linalg.norm(centroid) + 1e-12))


def _embedding_distance(embeddings: np.ndarray, reference: np.ndarray) -> float:
    if not len(embeddings):
        return float("nan")
    return cosine_distance(embeddings.mean(axis=0), reference.mean(axis=0))


def _rounded(interval: tuple[float, float], digits: int = 4) -> list[float]:
    return [round(bound, digits) for bound in interval]


def _memorisation(texts: Sequence[str], embeddings: np.ndarray, guard: Guard | None) -> dict[str, Any]:
    """How many drafts the memorisation guard stops (the rate a served adapter trips it)."""
    if guard is None or not len(texts):
        return {}
    index, limits = guard
    closeness = [index.closeness(text, vector) for text, vector in zip(texts, embeddings, strict=True)]
    trips = [c.too_close(limits) for c in closeness]
    return {
        "memorisation_trips": round(float(np.mean(trips)), 4),
        "memorisation_interval": _rounded(wilson_interval(sum(trips), len(trips))),
        "memorisation_tripped": sum(trips),
        "longest_copied_run": max(c.copied_words for c in closeness),
        "max_corpus_similarity": max((c.similarity or 0.0) for c in closeness),
    }


def probe_report(plan: Plan, drafts: dict[str, list[str]], embedder: Any) -> dict[str, Any]:
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


def fidelity(
    texts: Sequence[str],
    data: StyleData,
    classifier: StyleClassifier | None,
    language: str,
    embedder: Any,
    guard: Guard | None = None,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """A set of drafts against a style's corpus, each figure with its 95 % interval; ``groups`` (one per draft,
    e.g. the brief) are what the bootstrap resamples together (default: each draft alone)."""
    features = feature_matrix(list(texts), language)
    embeddings = np.asarray(embed_texts(list(texts), embedder), dtype=np.float64)
    distances = rms_z(features, data.features)
    centroid = data.embeddings.mean(axis=0)
    result: dict[str, Any] = {
        "profile_distance": round(float(distances.mean()), 4) if len(distances) else float("nan"),
        "profile_distance_interval": _rounded(mean_interval(distances, groups)),
        "profile_distances": [round(float(d), 6) for d in distances],
        "embedding_distance": round(_embedding_distance(embeddings, data.embeddings), 4),
        "embedding_distance_interval": _rounded(
            weighted_interval(embeddings, lambda mean: cosine_distance(mean, centroid), groups)
        ),
        "features": {name: round(float(features[:, i].mean()), 3) for i, name in enumerate(FEATURE_NAMES)},
        **_memorisation(texts, embeddings.astype(np.float32), guard),
    }
    if classifier is not None and data.name in classifier.labels and len(texts):
        result.update(_attribution(classifier, voice_matrix(list(texts), language), data.name))
    return result


def _attribution(classifier: StyleClassifier, voice: np.ndarray, style: str) -> dict[str, Any]:
    """Which style the voice classifier gives each draft, the share it gives this one, and P(style) per draft."""
    probabilities = classifier.probabilities(voice)
    predicted = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
    right = [p == style for p in predicted]
    own = probabilities[:, classifier.labels.index(style)]
    return {
        "attribution_accuracy": round(float(np.mean(right)), 4),
        "attribution_interval": _rounded(wilson_interval(sum(right), len(right))),
        "style_probability": round(float(own.mean()), 4),
        "style_probabilities": [round(float(p), 6) for p in own],
        "attributed_to": predicted,
        "attributed_counts": dict(Counter(predicted).most_common()),
        "right": right,
    }
