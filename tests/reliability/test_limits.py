"""Limits: a brief asking for 100,000 words is capped, and a job of 10,000 briefs is accepted in bounded memory.

The word count is checked where it is capped (:class:`worker.intake.briefs.Brief`) for every input format, over
generated integers, and where it becomes a token budget (:func:`worker.pipeline.pipeline.max_new_tokens`, for every
shipped style), and then through a real generation with the tiny model. The 10,000-brief job is submitted with
the real ``copydesk submit`` in a subprocess (SQLite store, kombu's filesystem broker so that publishing costs
no memory of its own), for a JSONL and a CSV file, and again with 1,000 records: the growth of the process's
peak memory during the submit must not follow the number of briefs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hostile_helpers import CaseCounter, dump_records, load_items, write_test_style
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger import Ledger
from model_fixtures import one_torch_thread, tiny_model_dir

from worker.config import PROJECT_ROOT, Settings
from worker.engine.engine import Engine
from worker.intake.briefs import MAX_TARGET_WORDS, MIN_TARGET_WORDS, Brief
from worker.intake.loading import SourcedBrief
from worker.pipeline.pipeline import Pipeline, max_new_tokens
from worker.store import Store
from worker.styles.catalog import GenerationSettings, Style, StyleCatalog

__all__ = ["one_torch_thread", "tiny_model_dir"]  # fixtures used by name

AREA = "limits"


def token_cap_of(field_info: Any) -> int:
    return next(m.le for m in field_info.metadata if hasattr(m, "le") and m.le is not None)


# ------------------------------------------------------------------------------------------ 100,000 words


def test_a_brief_asking_for_100000_words_is_capped(
    ledger: Ledger, tmp_path: Path, tiny_model_dir: Path, one_torch_thread: None
) -> None:
    row = ledger.row(
        AREA,
        "a brief asking for 100,000 words",
        injection="hand-made: 100,000 (also 10^18, -5, '100000', 100000.0) in JSONL, CSV, JSON and YAML; "
        "hypothesis: 300 integers up to ±10^40; one real generation with the tiny model",
        checked=f"target_words capped to {MIN_TARGET_WORDS}-{MAX_TARGET_WORDS}; the new-token budget "
        "min(style cap <= 4096, ceil(words x tokens_per_word) + 24) for every shipped style; the generated "
        "draft stays within its budget",
    )
    counter = CaseCounter()
    cap = token_cap_of(GenerationSettings.model_fields["max_new_tokens"])
    shipped = list(StyleCatalog.load(PROJECT_ROOT / "styles").styles.values())
    assert shipped
    greedy = Style(
        name="greedy", description="d", generation=GenerationSettings(tokens_per_word=50.0, max_new_tokens=cap)
    )
    styles = [*shipped, greedy]

    def check_budget(brief: Brief) -> None:
        assert MIN_TARGET_WORDS <= brief.target_words <= MAX_TARGET_WORDS, brief.target_words
        for style in styles:
            budget = max_new_tokens(brief, style)
            assert budget <= style.generation.max_new_tokens <= cap, (style.name, budget)
            expected = math.ceil(brief.target_words * style.generation.tokens_per_word) + 24
            assert budget == min(style.generation.max_new_tokens, expected), (style.name, budget)

    # Every file format, hand-made values.
    for value, capped in [
        (100_000, MAX_TARGET_WORDS),
        (10**18, MAX_TARGET_WORDS),
        (-5, MIN_TARGET_WORDS),
        ("100000", MAX_TARGET_WORDS),
        (100000.0, MAX_TARGET_WORDS),
    ]:
        for suffix in (".jsonl", ".csv", ".json", ".yaml"):
            with counter.case():
                path = dump_records(
                    tmp_path / f"words{suffix}", [{"id": "long", "title": "Everything", "target_words": value}]
                )
                items = load_items(path)
                counter.records += 1
                assert len(items) == 1 and isinstance(items[0], SourcedBrief), items
                assert items[0].brief.target_words == capped, items
                check_budget(items[0].brief)

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(words=st.integers(-(10**40), 10**40) | st.integers(0, 3000) | st.sampled_from([100_000, 10**6, 2**63]))
    def case(words: int) -> None:
        with counter.case():
            counter.records += 1
            brief = Brief(title="Everything about everything", target_words=words)
            assert brief.target_words == min(max(words, MIN_TARGET_WORDS), MAX_TARGET_WORDS)
            check_budget(brief)

    try:
        case()
        # A real generation: the style's cap of 64 tokens holds for a brief that asked for 100,000 words.
        with counter.case():
            styles_dir = tmp_path / "styles"
            write_test_style(styles_dir, "quick", max_new_tokens=64)
            settings_ = Settings(
                home=tmp_path / "home",
                model=str(tiny_model_dir),
                dtype="float32",
                device="cpu",
                styles_dir=styles_dir,
                default_style="quick",
                max_attempts=1,
            )
            pipeline = Pipeline(settings_, Engine.from_settings(settings_))
            [outcome] = pipeline.run([Brief(id="huge", title="The whole history of tea", target_words=100_000)])
            counter.records += 1
            assert outcome.error is None and outcome.result is not None, outcome.error
            provenance = outcome.result.provenance
            assert provenance["generation"]["max_new_tokens"] == 64, provenance
            assert provenance["tokens"]["new"] <= 64, provenance
            assert all(c.new_tokens <= 64 for c in outcome.result.candidates)
    finally:
        row.add(runs=1, faults=counter.cases, briefs=counter.records, lost=0, duplicates=0, crashes=counter.crashes)
    assert counter.crashes == 0, counter.crash_examples


# ------------------------------------------------------------------------------------------ 10,000 briefs

SUBMIT_WRAPPER = """
import ctypes, gc, json, os, sys, threading
import worker.cli.main, worker.cli.queue, worker.queue.submit, worker.store  # imports first
import worker.intake.loading, worker.queue.celery_app

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


gc.collect()
try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give the import transients back, so the baseline is tight
except (OSError, AttributeError):
    pass
before = peak = rss()
stop = threading.Event()


def sample():
    global peak
    while not stop.is_set():
        peak = max(peak, rss())
        stop.wait(0.005)


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
code = 0
try:
    worker.cli.main.app(sys.argv[2:], standalone_mode=False)
except SystemExit as exc:
    code = exc.code or 0
stop.set()
sampler.join()
peak = max(peak, rss())
with open(sys.argv[1], "w") as handle:
    json.dump({"before": before, "peak": peak, "code": code}, handle)
"""

NOTES = "Keep it practical, with one worked example per section and a short checklist at the end. " * 16  # ~1.5 KB


def write_big_file(path: Path, count: int) -> Path:
    records = (
        {
            "id": f"bulk-{n}",
            "title": f"How to do task number {n}",
            "category": "bulk",
            "tags": ["bulk", f"t{n % 7}"],
            "target_words": 300,
            "notes": NOTES,
        }
        for n in range(count)
    )
    with path.open("w", encoding="utf-8", newline="") as handle:
        if path.suffix == ".jsonl":
            for record in records:
                handle.write(json.dumps(record) + "\n")
        else:
            writer = csv.writer(handle)
            writer.writerow(["id", "title", "category", "tags", "target_words", "notes"])
            for r in records:
                writer.writerow(
                    [r["id"], r["title"], r["category"], ";".join(r["tags"]), r["target_words"], r["notes"]]
                )
    return path


def submit_in_subprocess(root: Path, path: Path) -> dict[str, Any]:
    """``copydesk submit PATH --json`` in a fresh process with its own store and filesystem broker."""
    work = root / f"submit-{path.stem}-{path.suffix[1:]}"
    (work / "data_in").mkdir(parents=True)
    (work / "data_out").mkdir()
    (work / "copydesk.toml").write_text("# limits test\n")
    store_url = f"sqlite:///{work / 'copydesk.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COPYDESK_", "CELERY_"))}
    env.update(
        {
            "COPYDESK_HOME": str(work / "home"),
            "COPYDESK_CONFIG": str(work / "copydesk.toml"),
            "COPYDESK_STORE_URL": store_url,
            "COPYDESK_BROKER_URL": "filesystem://",  # data_in/data_out in the working directory
            "HF_HUB_OFFLINE": "1",
        }
    )
    wrapper = work / "wrapper.py"
    wrapper.write_text(SUBMIT_WRAPPER)
    figures = work / "figures.json"
    done = subprocess.run(
        [sys.executable, str(wrapper), str(figures), "submit", str(path), "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    measured = json.loads(figures.read_text()) if figures.exists() else {"code": done.returncode}
    summary = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}
    with Store(store_url) as store:
        job = store.get_job(summary["job_id"]) if summary else None
    return {
        "returncode": done.returncode,
        "stderr": done.stderr[-3000:],
        "summary": summary,
        "job": job,
        "messages": len(os.listdir(work / "data_out")),
        "growth_mib": (measured.get("peak", 0) - measured.get("before", 0)) / 2**20,
        "file_mib": path.stat().st_size / 2**20,
    }


def test_a_job_of_10000_briefs_is_accepted_in_bounded_memory(ledger: Ledger, tmp_path: Path) -> None:
    row = ledger.row(
        AREA,
        "a job of 10,000 briefs",
        injection="10,000-record JSONL and CSV files (~1.6 KB a record) and 1,000-record ones, each submitted with "
        "`copydesk submit` in a subprocess (SQLite store, filesystem broker)",
        checked="accepted: every brief queued in the store as one job, one message each, no invalid record; "
        "peak RSS growth of the submit: under 3x that of 1,000 briefs, and the 9,000 extra briefs cost under 1/4 "
        "of their size in the file",
    )
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    lost = duplicates = crashes = briefs = 0
    try:
        for suffix in (".jsonl", ".csv"):
            for count in (1_000, 10_000):
                path = write_big_file(tmp_path / f"bulk{count}{suffix}", count)
                run = runs[(suffix, count)] = submit_in_subprocess(tmp_path, path)
                briefs += count
                if run["returncode"] != 0:
                    crashes += 1
                    continue
                queued = run["job"].counts.queued if run["job"] else 0
                lost += max(0, count - queued)
                duplicates += max(0, run["messages"] - count)
        figures = "; ".join(
            f"{suffix[1:]} {count:,}: +{run['growth_mib']:.1f} MiB for a {run['file_mib']:.1f} MiB file"
            for (suffix, count), run in runs.items()
        )
        row.checked += f" (measured: {figures})"
    finally:
        row.add(
            runs=len(runs),
            faults=sum(1 for (_, count) in runs if count == 10_000),
            briefs=briefs,
            lost=lost,
            duplicates=duplicates,
            crashes=crashes,
        )
    for (suffix, count), run in runs.items():
        assert run["returncode"] == 0, (suffix, count, run["stderr"])
        summary = run["summary"]
        assert summary["enqueued"] == count and summary["invalid"] == 0 and summary["published"], summary
        assert run["job"].counts.total == count and run["job"].counts.queued == count, run["job"]
        assert run["messages"] == count, (suffix, count, run["messages"])
    for suffix in (".jsonl", ".csv"):
        small, big = runs[(suffix, 1_000)], runs[(suffix, 10_000)]
        # Holding the briefs would cost at least their text: 9,000 more briefs must cost far less than 9,000 records.
        extra = big["growth_mib"] - small["growth_mib"]
        assert extra < (big["file_mib"] - small["file_mib"]) / 4, (suffix, small, big)
        assert big["growth_mib"] < 3 * max(small["growth_mib"], 1.0), (suffix, small["growth_mib"], big["growth_mib"])
    assert (lost, duplicates, crashes) == (0, 0, 0)
