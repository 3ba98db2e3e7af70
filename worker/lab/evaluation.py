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

Drafts are written in the engine's exact fp32 mode by default (``--dtype``), two seeds per shared brief
(``--seeds``), and every figure comes with its 95 % interval; the paired per-draft change from the base model's
draft to the adapter's (same brief and seed) in P(style) and in profile distance, with bootstrap intervals and
a Wilcoxon signed-rank test, gives the verdict (:mod:`~worker.lab.eval_stats`). The report records the dtype,
the device and the CPU's features, so that two machines' reports can be compared.

The report is written as JSON, Markdown and a PNG plot into ``adapters/vN/eval/`` (or ``--output``).

This module drives an evaluation; the pieces live beside it: :mod:`~worker.lab.eval_inputs` (what is read),
:mod:`~worker.lab.voice_classifier` (attribution, sign test), :mod:`~worker.lab.eval_measures` (perplexity,
fidelity, memorisation), :mod:`~worker.lab.eval_stats` (intervals, paired tests, verdict) and
:mod:`~worker.lab.eval_report` (the report, its Markdown and plot).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.config import Settings
from worker.engine.adapters import BASE, check_adapter
from worker.engine.base_model import configured_model_id
from worker.errors import EvaluationError
from worker.lab.eval_inputs import (
    BASE_LABEL,
    EVAL_BRIEFS_FILE,
    Plan,
    default_version,
    eval_briefs,
    house_metadata,
    read_eval_topics,
    read_heldout,
    training_briefs,
    voice_corpus,
)
from worker.lab.eval_measures import draft_key, draft_requests, perplexity, probe_report
from worker.lab.eval_report import EvalReport, build_report, write_report
from worker.lab.options import EvalOptions
from worker.lab.voice_classifier import StyleClassifier, train_voice_classifier
from worker.pipeline.cleaning import clean_draft
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import Style, StyleCatalog
from worker.styles.layout import FEATURES_FILE, TRAINING_FILE, adapter_ref, list_version_names, versions_dir

logger = logging.getLogger(__name__)

PROBE_TAG = "trained-on/"  # request keys of the memorisation probe's drafts
ProgressFn = Callable[[str], None]
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ISA levels torch and oneDNN pick kernels by
# What forces a lower instruction set than the CPU's (torch's own kernels, oneDNN's, MKL's): recorded with the drafts.
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


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
    catalog = StyleCatalog.for_settings(settings)
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
    base_model = engine.source.model_id if engine is not None else configured_model_id(settings)
    catalog = StyleCatalog.load(settings.styles_dir, base_model)  # the default version: the one served on it
    topics, target_words = read_eval_topics(options.briefs_file or settings.styles_dir / EVAL_BRIEFS_FILE)
    topics = topics[: options.briefs]
    plans = [_plan(catalog.get(name), version, against) for name in style_names]
    engine = engine if engine is not None else _load_engine(settings, options.dtype, say)
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
        corpus = corpora.get(plan.style.name)
        _prepare(engine, renderer, plan, say)
        plan.house = house_metadata(corpus.briefs if corpus else [h.brief for h in plan.heldout])
        plan.briefs = eval_briefs(topics, plan.style.name, plan.house, target_words)
        plan.probe = training_briefs(corpus, options.briefs)
        plan.seeds = options.seeds
        requests += _requests(settings, renderer, plan, options.max_new_tokens)
    say(f"generating {len(requests)} draft(s)")
    outputs = {out.key: out.text for out in engine.generate(requests)}
    context = _Context(settings, classifier, check, embedder, options, engine.source.model_id, machine_record(engine))
    return [_style_report(context, plan, outputs, say) for plan in plans]


def _plan(style: Style, version: str | None, against: str | None) -> Plan:
    """One style's plan: the versions compared and the evaluated version's held-out material."""
    chosen, others = _resolve_versions(style, version, against)
    directory = versions_dir(style) / chosen
    training = (
        json.loads((directory / TRAINING_FILE).read_text(encoding="utf-8"))
        if (directory / TRAINING_FILE).is_file()
        else {}
    )
    if not (directory / FEATURES_FILE).is_file():
        raise EvaluationError(f"{directory} has no {FEATURES_FILE}: retrain the style to get its corpus profile")
    max_length = int(training.get("options", {}).get("max_length", 1024))
    return Plan(style, chosen, others, directory, read_heldout(directory), max_length)


def _load_engine(settings: Settings, dtype: str, say: ProgressFn) -> Any:
    """The engine in the evaluation's dtype (float32 by default: the engine's exact mode), whatever serving uses."""
    from worker.engine.engine import Engine
    from worker.lab.training import quiet_libraries

    quiet_libraries()
    say(f"loading the base model ({dtype})")
    # float32 is the exact mode whatever serving's COPYDESK_EXACT_ROWS says; auto and bf16 take the fast paths.
    return Engine.from_settings(settings.model_copy(update={"dtype": dtype, "exact_rows": dtype == "float32"}))


def cpu_features(cpuinfo: str) -> dict[str, Any]:
    """The CPU's model name and which of :data:`CPU_FLAGS` ``/proc/cpuinfo`` lists."""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return {"cpu_model": model or None, "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS}}


def machine_record(engine: Any | None) -> dict[str, Any]:
    """What the drafts' numerics depend on: the engine's dtype and device, torch, threads and the CPU's features and
    ISA limits. ``engine=None`` (a bench that records its engines' dtypes itself) leaves dtype and device out."""
    import torch

    from worker.engine.placement import read_cpuinfo  # torch: imported on use, as above

    engine_fields: dict[str, Any] = {}
    if engine is not None:
        engine_fields = {
            "dtype": str(getattr(engine, "dtype", "unknown")).removeprefix("torch."),
            "device": str(getattr(engine, "device", "unknown")),
            "exact_rows": getattr(engine, "exact_rows", None),
        }
    return {
        **engine_fields,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **cpu_features(read_cpuinfo()),
        "isa_overrides": {name: os.environ[name] for name in ISA_VARIABLES if name in os.environ},
    }


def _prepare(engine: Any, renderer: PromptRenderer, plan: Plan, say: ProgressFn) -> None:
    """Load the plan's adapters (checked against the base model) and measure each variant's perplexity."""
    style = plan.style
    plan.refs = {BASE_LABEL: None}
    for name in [plan.chosen, *plan.others]:
        ref = adapter_ref(style, name)
        check_adapter(ref, engine.source.model_id)  # AdapterError: e.g. trained for another base model
        engine.load_adapter(ref)
        plan.refs[name] = ref
    say(f"{style.name}: perplexity of {len(plan.heldout)} held-out article(s)")
    plan.perplexity = {
        label: perplexity(engine, renderer, style, plan.heldout, ref.name if ref else BASE, plan.max_length)
        for label, ref in plan.refs.items()
    }


def _requests(settings: Settings, renderer: PromptRenderer, plan: Plan, max_new_tokens: int) -> list[Any]:
    """Drafts for the shared briefs (each seed) and for the memorisation probe's briefs (one seed), per variant."""
    shared = draft_requests(settings, renderer, plan.style, plan.briefs, plan.refs, max_new_tokens, seeds=plan.seeds)
    probe = draft_requests(settings, renderer, plan.style, plan.probe, plan.refs, max_new_tokens, tag=PROBE_TAG)
    return shared + probe


@dataclass(frozen=True)
class _Context:
    """What every style's report shares."""

    settings: Settings
    classifier: StyleClassifier | None
    check: dict[str, Any]
    embedder: Any
    options: EvalOptions
    model_id: str
    machine: dict[str, Any]


def _style_report(context: _Context, plan: Plan, outputs: dict[str, str], say: ProgressFn) -> EvalReport:
    say(f"{plan.style.name}: measuring style fidelity")
    name = plan.style.name
    drafts, probe = (
        {
            label: [
                clean_draft(outputs[draft_key(name, label, b.brief_id, seed, tag)], b.title)
                for b in briefs
                for seed in range(seeds)
            ]
            for label in plan.refs
        }
        for tag, briefs, seeds in (("", plan.briefs, plan.seeds), (PROBE_TAG, plan.probe, 1))
    )
    report = build_report(
        context.settings,
        plan,
        drafts,
        context.classifier,
        context.check,
        context.embedder,
        context.options,
        context.model_id,
        context.machine,
    )
    report.data["memorisation_probe"] = probe_report(plan, probe, context.embedder)
    report.files = write_report(report, context.options.output_dir or plan.directory / "eval")
    return report
