"""Do `copydesk styles eval` verdicts hold across machines, ISA profiles and precisions?

Reads the reports (``adapters/vN/eval/against-base.json``) that ``styles eval --all`` wrote in two or more
styles folders — one per run: this machine's default, a forced lower ISA, bf16 — and prints per style and run
the machine, attribution, both paired changes with their 95 % intervals and Wilcoxon p, and the verdict;
then, against the first run, how many drafts are the same text and whether every verdict agrees.

    # the runs (a copy of styles/ per extra run, so the reports do not overwrite each other)
    copydesk styles eval --all
    cp -r styles /tmp/styles-avx2 && COPYDESK_STYLES_DIR=/tmp/styles-avx2 ATEN_CPU_CAPABILITY=avx2 \\
        ONEDNN_MAX_CPU_ISA=AVX2 copydesk styles eval --all
    python bench/eval_agreement.py default=styles avx2=/tmp/styles-avx2 [--json out.json]

Nothing here generates text: it only reads reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPORT_GLOB = "*/adapters/v*/eval/against-base.json"


def read_run(styles_dir: Path) -> dict[str, dict[str, Any]]:
    """The reports of one run by ``style vN`` (reports without a verdict predate the paired measures: skipped)."""
    reports = {}
    for path in sorted(styles_dir.glob(REPORT_GLOB)):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "verdict" in data:
            reports[f"{data['style']} {data['version']}"] = data
    return reports


def same_drafts(first: dict[str, Any], other: dict[str, Any]) -> tuple[int, int]:
    """How many drafts (every variant, by position: same brief, seed and variant) are the same text."""
    same = total = 0
    for label, texts in first["drafts"].items():
        theirs = other["drafts"].get(label, [])
        total += len(texts)
        same += sum(a == b for a, b in zip(texts, theirs, strict=False))
    return same, total


def machine_label(data: dict[str, Any]) -> str:
    machine = data.get("machine") or {}
    forced = ",".join(f"{k}={v}" for k, v in (machine.get("isa_overrides") or {}).items())
    return f"{machine.get('dtype', '?')} {machine.get('cpu_capability', '?')}" + (f" ({forced})" if forced else "")


def _change(change: dict[str, Any]) -> str:
    low, high = change["interval"]
    p = change["wilcoxon"]["p_value"]
    return f"{change['mean']:+.3f} [{low:+.3f}, {high:+.3f}] {'p<0.001' if p < 0.001 else f'p={p:.3f}'}"


def row(run: str, data: dict[str, Any], first: dict[str, Any] | None) -> dict[str, Any]:
    """One table row: a run's figures for one style, and its drafts against the first run's."""
    adapter = data["version"]
    base_row, adapter_row = (next(r for r in data["table"] if r["variant"] == v) for v in ("base", adapter))
    changes = data["paired"][adapter]
    same, total = same_drafts(first, data) if first is not None else (None, None)
    return {
        "run": run,
        "machine": machine_label(data),
        "drafts_per_variant": data["drafts_per_variant"],
        "attributed": f"{base_row['attribution_accuracy']:.2f} -> {adapter_row['attribution_accuracy']:.2f}",
        "p_style": _change(changes["style_probability"]),
        "profile_distance": _change(changes["profile_distance"]),
        "verdict": data["verdict"][adapter]["verdict"],
        "same_drafts": None if same is None else f"{same}/{total}",
    }


def compare(runs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Rows per style present in every run, and whether each style's verdict is the same in all of them."""
    names = list(runs)
    shared = sorted(set.intersection(*(set(reports) for reports in runs.values())))
    styles = {}
    for key in shared:
        first = runs[names[0]][key]
        rows = [row(name, runs[name][key], None if i == 0 else first) for i, name in enumerate(names)]
        styles[key] = {"rows": rows, "verdicts_agree": len({r["verdict"] for r in rows}) == 1}
    missing = sorted(set.union(*(set(reports) for reports in runs.values())) - set(shared))
    return {"runs": names, "styles": styles, "missing_in_some_run": missing}


COLUMNS = (
    "run",
    "machine",
    "drafts_per_variant",
    "attributed",
    "p_style",
    "profile_distance",
    "verdict",
    "same_drafts",
)
HEADERS = (
    "run",
    "dtype, CPU capability",
    "drafts/variant",
    "attributed base -> adapter",
    "paired ΔP(style) [95 %], Wilcoxon",
    "paired Δprofile distance [95 %], Wilcoxon",
    "verdict",
    "drafts identical to the first run",
)


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for key, style in result["styles"].items():
        lines += [f"### {key}", "", "| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
        lines += [
            "| " + " | ".join(str(r[c] if r[c] is not None else "—") for c in COLUMNS) + " |" for r in style["rows"]
        ]
        lines += ["", f"verdicts agree: {'yes' if style['verdicts_agree'] else '**no**'}", ""]
    if result["missing_in_some_run"]:
        lines.append(f"not in every run (not compared): {', '.join(result['missing_in_some_run'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="+", metavar="LABEL=STYLES_DIR", help="one styles folder per run, first is the reference"
    )
    parser.add_argument("--json", type=Path, help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        label, _, folder = spec.partition("=")
        if not folder:
            parser.error(f"{spec!r}: give LABEL=STYLES_DIR")
        runs[label] = read_run(Path(folder))
    result = compare(runs)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0 if all(style["verdicts_agree"] for style in result["styles"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
