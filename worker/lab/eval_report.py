"""The evaluation report: its data (table with 95 % intervals, fidelity, sign tests, the paired changes and the
verdict, the machine, caveats), as JSON, Markdown and a PNG plot."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.config import Settings
from worker.files import write_atomic
from worker.lab.eval_inputs import BASE_LABEL, EVAL_BRIEFS_FILE, HeldOut, Plan, read_features
from worker.lab.eval_measures import fidelity
from worker.lab.eval_stats import Evidence, paired_change, verdict
from worker.lab.options import EvalOptions
from worker.lab.voice_classifier import StyleClassifier, sign_test
from worker.scoring.memorisation import CorpusIndex, guard_limits
from worker.styles.catalog import Style
from worker.styles.layout import versions_dir


@dataclass
class EvalReport:
    style: str
    version: str
    variants: list[str]
    data: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return self.data["table"]


def build_report(
    settings: Settings,
    plan: Plan,
    drafts: dict[str, list[str]],
    classifier: StyleClassifier | None,
    check: dict[str, Any],
    embedder: Any,
    options: EvalOptions,
    model_id: str,
    machine: dict[str, Any] | None = None,
) -> EvalReport:
    """The report of one style: each variant's drafts measured against the evaluated version's corpus."""
    style = plan.style
    own = read_features(plan.directory, style.name)  # the corpus of the version under evaluation
    assert own is not None  # checked before loading anything
    language = settings.language
    index = CorpusIndex.load(plan.directory)
    guard = (index, guard_limits(style.targets)) if index is not None else None
    groups = plan.draft_groups()
    measured = {
        label: fidelity(texts, own, classifier, language, embedder, guard, groups) for label, texts in drafts.items()
    }
    reference = fidelity([h.article for h in plan.heldout], own, classifier, language, embedder)
    attributed = "attribution_accuracy" in measured[BASE_LABEL]
    table = [_row(label, measured[label], plan.perplexity[label]) for label in plan.refs]
    table.append(_row("held-out articles", reference, None))
    paired = _paired_changes(measured, plan.refs, groups)
    data = {
        "style": style.name,
        "version": plan.chosen,
        "against": plan.others[0] if plan.others else BASE_LABEL,
        "base_model_id": model_id,
        "machine": machine or {},
        "heldout_articles": len(plan.heldout),
        "eval_briefs": _briefs_record(plan, options),
        "seeds_per_brief": plan.seeds,
        "drafts_per_variant": len(groups),
        "max_new_tokens": options.max_new_tokens,
        "seed": settings.seed,
        "classifier": check,
        "perplexity": {label: round(value, 3) for label, value in plan.perplexity.items()},
        "fidelity": measured,
        "reference": reference,
        "sign_test": _sign_tests(measured, plan.refs) if attributed else {},
        "paired": paired,
        "verdict": {label: verdict(_evidence(changes)) for label, changes in paired.items()},
        "table": table,
        "drafts": drafts,
        "caveats": _caveats(style, plan.chosen, plan.others, plan.heldout, check, attributed),
    }
    return EvalReport(style.name, plan.chosen, list(plan.refs), data)


def _sign_tests(measured: dict[str, dict[str, Any]], labels: Iterable[str]) -> dict[str, Any]:
    """Each adapter's paired drafts against the base model's."""
    base = measured[BASE_LABEL]["right"]
    return {label: sign_test(base, measured[label]["right"]) for label in labels if label != BASE_LABEL}


PAIRED_MEASURES = (  # per-draft value in the fidelity record, name in the report, higher is better
    ("style_probabilities", "style_probability", True),
    ("profile_distances", "profile_distance", False),
)
PAIRED_NAMES = {"style_probability": "P(style)", "profile_distance": "profile distance"}


def _paired_changes(
    measured: dict[str, dict[str, Any]], labels: Iterable[str], groups: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each adapter's per-draft change against the base model's draft for the same brief and seed."""
    base = measured[BASE_LABEL]
    return {
        label: {
            name: paired_change(base[key], measured[label][key], groups).as_dict()
            for key, name, _ in PAIRED_MEASURES
            if key in base
        }
        for label in labels
        if label != BASE_LABEL
    }


def _evidence(changes: dict[str, Any]) -> list[Evidence]:
    return [
        Evidence(PAIRED_NAMES[name], changes[name]["interval"], higher, changes[name]["wilcoxon"]["p_value"])
        for _, name, higher in PAIRED_MEASURES
        if name in changes
    ]


def _row(label: str, values: dict[str, Any], perplexity: float | None) -> dict[str, Any]:
    return {
        "variant": label,
        "perplexity": None if perplexity is None else round(perplexity, 3),
        "profile_distance": values["profile_distance"],
        "profile_distance_interval": values.get("profile_distance_interval"),
        "embedding_distance": values["embedding_distance"],
        "embedding_distance_interval": values.get("embedding_distance_interval"),
        "attribution_accuracy": values.get("attribution_accuracy"),
        "attribution_interval": values.get("attribution_interval"),
        "style_probability": values.get("style_probability"),
        "memorisation_trips": values.get("memorisation_trips"),
        "memorisation_interval": values.get("memorisation_interval"),
    }


def _briefs_record(plan: Plan, options: EvalOptions) -> dict[str, Any]:
    return {
        "file": EVAL_BRIEFS_FILE if options.briefs_file is None else str(options.briefs_file),
        "count": len(plan.briefs),
        "titles": [b.title for b in plan.briefs],
        "target_words": plan.briefs[0].target_words if plan.briefs else None,
        "as": {key: str(getattr(value, "value", value)) for key, value in plan.house.items()},
    }


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
            "drafts not attributed: the voice classifier needs the corpus of this style and one other"
            " (a corpus/ folder, or the archive a version trained on)"
            if "note" not in check
            else f"drafts not attributed: {check['note']}"
        )
    elif check.get("loo_accuracy", 1.0) < 0.8:
        notes.append(
            f"the voice classifier itself is weak (leave-one-out accuracy {check['loo_accuracy']:.2f}): "
            "read its attributions with care"
        )
    return notes


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


INTERVALS = {
    "profile_distance": "profile_distance_interval",
    "embedding_distance": "embedding_distance_interval",
    "attribution_accuracy": "attribution_interval",
    "memorisation_trips": "memorisation_interval",
}


def table_cell(row: dict[str, Any], key: str, digits: int) -> str:
    """A table cell: the value, and its 95 % interval in brackets where it has one."""
    interval = row.get(INTERVALS.get(key, ""))
    text = _cell(row.get(key), digits)
    if text == "n/a" or not interval or any(b is None or math.isnan(b) for b in interval):
        return text
    return f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}"


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def paired_lines(data: dict[str, Any]) -> list[str]:
    """One line per adapter and paired measure, then the verdict: what ``styles eval`` prints."""
    lines = []
    for label, changes in data.get("paired", {}).items():
        for name, change in changes.items():
            low, high = change["interval"]
            test = change["wilcoxon"]
            lines.append(
                f"paired change {label} − base in {PAIRED_NAMES[name]}: mean {_signed(change['mean'], 3)} "
                f"[{_signed(low, 3)}, {_signed(high, 3)}], up {change['up']} / down {change['down']} of "
                f"{data['drafts_per_variant']}; Wilcoxon signed-rank {_p(test['p_value'])}"
            )
        judged = data["verdict"][label]
        lines.append(f"verdict, {label}: {judged['verdict']} ({judged['reason']})")
    return lines


def machine_summary(machine: dict[str, Any]) -> str:
    if not machine:
        return "Machine: not recorded."
    flags = machine.get("cpu_flags", {})
    has = ", ".join(name for name, present in flags.items() if present) or "none"
    lacks = ", ".join(name for name, present in flags.items() if not present)
    overrides = ", ".join(f"{k}={v}" for k, v in machine.get("isa_overrides", {}).items())
    return (
        f"Machine: {machine.get('dtype')} on {machine.get('device')}, torch {machine.get('torch')} "
        f"({machine.get('threads')} threads, CPU capability {machine.get('cpu_capability')}), "
        f"{machine.get('cpu_model') or 'unknown CPU'} (with {has}{f'; without {lacks}' if lacks else ''})"
        + (f"; ISA forced: {overrides}" if overrides else "")
        + "."
    )


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
        f"{data['max_new_tokens']} new tokens, {data.get('seeds_per_brief', 1)} seed(s) per brief from seed "
        f"{data['seed']}.",
        "",
        "| variant | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "| --- |" + " --- |" * len(COLUMNS),
    ]
    for row in data["table"]:
        cells = [table_cell(row, key, digits) for key, _, digits in COLUMNS]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Lower perplexity and distances are better; attribution is the share of drafts the voice classifier "
        "gives to this style, P(style) its mean probability. In brackets: 95 % intervals (Wilson for shares, "
        "bootstrap over briefs for distances).",
        "",
        *[f"- {line}" for line in paired_lines(data)],
        f"- {machine_summary(data.get('machine', {}))}",
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
    write_atomic(json_path, json.dumps(report.data, indent=2, ensure_ascii=False) + "\n")
    write_atomic(md_path, report_markdown(report))
    plot_report(report, png_path)
    return {"json": str(json_path), "markdown": str(md_path), "plot": str(png_path)}


def _error_bars(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray | None:
    """``(2, rows)``: how far each row's 95 % interval of ``key`` reaches below and above its value (0: none)."""
    interval_key = INTERVALS.get(key)
    if interval_key is None:
        return None
    bars = np.zeros((2, len(rows)))
    for index, row in enumerate(rows):
        value, interval = row.get(key), row.get(interval_key)
        if value is not None and interval and not any(b is None or math.isnan(b) for b in interval):
            bars[:, index] = (max(0.0, value - interval[0]), max(0.0, interval[1] - value))
    return bars


def plot_report(report: EvalReport, path: Path) -> None:
    """Four bar charts: held-out perplexity, stylometric and embedding distance to the corpus, attribution; each
    share and distance with its 95 % interval as an error bar."""
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
                bars = _error_bars(rows, column)
                axis.bar(positions + (offset - 0.5) * 0.38, heights, width=0.38, label=name, yerr=bars, capsize=3)
            axis.set_xticks(positions, labels)
            axis.set_ylim(0, 1.15)
            axis.legend(fontsize=7, loc="upper right")
            continue
        bars = _error_bars(rows, key)
        shown = [
            (label, h, colour, i) for i, (label, h, colour) in enumerate(zip(labels, values(key), colours, strict=True))
        ]
        shown = [item for item in shown if not math.isnan(item[1])]
        errors = None if bars is None else bars[:, [item[3] for item in shown]]
        axis.bar(
            [item[0] for item in shown],
            [item[1] for item in shown],
            color=[item[2] for item in shown],
            yerr=errors,
            capsize=3,
        )
        for index, (_, height, _, _) in enumerate(shown):
            axis.text(index, height, f"{height:.2f}", ha="center", va="bottom", fontsize=8)
        if not shown:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
    figure.suptitle(f"{report.data['style']} {report.data['version']} vs {report.data['against']}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
