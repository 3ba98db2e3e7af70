"""Where scoring spends its time: each scoring component per draft, side by side in one run (issue 19, item 2).

Builds a batch of realistic drafts (default 64 briefs x 2 candidates = 128 drafts, as the pipeline scores them)
from real model output: the drafts each shipped style's evaluation wrote with the real model
(``styles/*/adapters/*/eval/*.json``), joined in order until a draft has ``--min-words`` words (the
evaluation drafts are ~120 words; articles are longer). Each draft gets a brief of ``bench/workload.py``'s
sample set, routed to its style, with that style's targets, rules and its served adapter's corpus index (the
memorisation guard), exactly as ``Pipeline._attempt`` builds ``DraftToScore``.

It then runs the real ``score_drafts`` on the whole batch (after one warm-up pass that loads the embedder
and fills per-word caches, as in a worker that has been running), with every function that
``worker.scoring.scorecard`` calls wrapped in a timer, and prints per component: ms per draft and its share
of the batch's scoring time. The near-duplicate check of ``worker.pipeline.runner`` (outside
``score_drafts``: it runs at store time) is timed beside it against each style's corpus as the stored
articles. ``--repeats N`` runs the measured pass N times and reports each component's median.
``--embedder-dtype`` picks the embedder's dtype (default: the one a worker's pipeline uses on this machine, bf16
where the engine writes in bf16; before session 16 the bench always measured float32). ``--cprofile`` prints the
top functions of one more pass by internal time. ``--embedder-ab N`` times the
embedding of the batch's briefs and chunks with sentence-transformers' own batching (what ``Embedder.encode``
did before issue 19) and with ``Embedder.encode``, alternating, N times each: the one change whose effect a busy
machine's noise would hide between two invocations.

``--generation-briefs N`` also runs ``bench/throughput.py``'s (b) alone (the real pipeline, real model) on N
briefs with ``--new-tokens`` and reports scoring's measured share of that run's wall time. Scoring's share is
also projected for drafts of this bench's length from session 5's measured generation speed.

    python bench/profile_scoring.py --threads 2 --repeats 3
    python bench/profile_scoring.py --threads 2 --embedder-ab 3 --generation-briefs 16 --new-tokens 128
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import sample_briefs

import worker.scoring.scorecard as scorecard_module
from worker.config import load_settings
from worker.intake.briefs import Brief
from worker.lab.corpus import load_corpus
from worker.pipeline.routing import route
from worker.scoring.embeddings import Embedder, default_embedder, embedder_dtype_for
from worker.scoring.markdown import strip_markdown
from worker.scoring.memorisation import CorpusIndex, CorpusIndexes, StoredArticles
from worker.scoring.scorecard import DraftToScore, score_drafts
from worker.scoring.topicality import brief_text, chunk_words
from worker.store import StoredText
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import adapter_ref

ROOT = Path(__file__).resolve().parent.parent
TOTAL = "total score_drafts"

# Session 5 (docs/benchmarks.md): bench/throughput.py (b), 64 briefs, 128 sequences, 256 new tokens, batch 128,
# on this AMX machine kind: 340.3 tok/s; queue/store/other 0.49 % of the wall time.
SESSION5_TOKENS_PER_SECOND = 340.3
SESSION5_OTHER_SHARE = 0.0049
TOKENS_PER_WORD = 1.5  # SmolLM2's tokenizer on these drafts, about (bench/throughput.py uses the same ratio)

# Component -> the names that worker.scoring.scorecard calls for it (module attributes, or Class.method).
COMPONENTS: dict[str, tuple[str, ...]] = {
    # Since issue 19 (item 2) a draft is parsed and split once (analyse_draft), sentences and their words included:
    # what "sentences" cost under sentiment and readability before is counted here after.
    "parse and split (blocks, plain text, words; after: sentences too)": (
        "parse_blocks",
        "strip_markdown",
        "prose_texts",
        "words",
        "analyse_draft",
    ),
    "readability (sentences, syllables)": ("count_text", "count_sentences", "readability_scores"),
    "sentiment (VADER per sentence)": ("sentences", "sentiment_score"),
    "formality": ("formality_score",),
    "structure": ("structure_score",),
    "length, repetition, keywords": ("length_score", "repetition_score", "keywords_score"),
    "style rules": ("style_rules_score",),
    "memorisation guard (8-grams, corpus)": ("CorpusIndex.closeness", "memorisation_score", "guard_limits"),
    "on_topic (MiniLM, one batched call)": ("on_topic_similarities", "on_topic_score"),
}


@dataclass
class Timers:
    seconds: dict[str, float]  # wall time
    cpu: dict[str, float]  # this process's CPU time (all its threads): less sensitive to a busy machine
    depth: int = 0  # only the outermost wrapped call counts (no double counting of nested ones)


def _wrap(timers: Timers, component: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        if timers.depth:
            return function(*args, **kwargs)
        timers.depth += 1
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            timers.seconds[component] += time.perf_counter() - started
            timers.cpu[component] += time.process_time() - cpu_started
            timers.depth -= 1

    return timed


@contextmanager
def instrumented(timers: Timers) -> Iterator[None]:
    """Wrap every function of ``COMPONENTS`` that exists in this version of the code; restore them after."""
    restore: list[tuple[Any, str, Any]] = []
    for component, names in COMPONENTS.items():
        for name in names:
            owner: Any = scorecard_module
            attribute = name
            if "." in name:
                owner, attribute = {"CorpusIndex": CorpusIndex}[name.split(".")[0]], name.split(".")[1]
            original = owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
            if original is None:
                continue
            restore.append((owner, attribute, original))
            setattr(owner, attribute, _wrap(timers, component, original))
    try:
        yield
    finally:
        for owner, attribute, original in reversed(restore):
            setattr(owner, attribute, original)


def model_drafts(style: str) -> list[str]:
    """The real model's drafts from every evaluation of ``style`` (distinct texts, file order)."""
    texts: list[str] = []
    for path in sorted((ROOT / "styles" / style / "adapters").glob("*/eval/*.json")):
        report = json.loads(path.read_text())
        for variant in sorted(report.get("drafts", {})):
            texts.extend(text for text in report["drafts"][variant] if isinstance(text, str) and text.strip())
    return list(dict.fromkeys(texts))


def joined_drafts(pool: list[str], count: int, min_words: int, start: int) -> tuple[list[str], int]:
    """``count`` drafts, each of consecutive pool drafts joined until it has ``min_words`` words; and the
    pool position after them."""
    drafts, position = [], start
    for _ in range(count):
        parts: list[str] = []
        while sum(len(part.split()) for part in parts) < min_words:
            parts.append(pool[position % len(pool)])
            position += 1
        drafts.append("\n\n".join(parts))
    return drafts, position


@dataclass(frozen=True)
class Draft:
    style: str
    scored: DraftToScore


def build_batch(briefs: list[Brief], candidates: int, min_words: int) -> tuple[list[Draft], StyleCatalog]:
    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="profile-scoring-")))
    catalog = StyleCatalog.for_settings(settings)
    indexes = CorpusIndexes()  # one per pipeline, as in Pipeline
    pools = {name: model_drafts(name) for name in catalog.names}
    position: dict[str, int] = defaultdict(int)
    batch: list[Draft] = []
    for brief in briefs:
        style = catalog.get(route(brief, catalog, settings.default_style).style)
        version = style.version_for(brief.brief_id)
        corpus = indexes.get(adapter_ref(style, version).directory if version else None)
        texts, position[style.name] = joined_drafts(pools[style.name], candidates, min_words, position[style.name])
        batch.extend(Draft(style.name, DraftToScore(t, brief, style.targets, style.rules, corpus)) for t in texts)
    return batch, catalog


class _CorpusAsStore:
    """Stands in for the store's ``recent_article_texts``: each style's corpus articles as its stored articles."""

    def __init__(self, catalog: StyleCatalog) -> None:
        self.catalog = catalog
        self._articles: dict[str, list[StoredText]] = {}

    def recent_article_texts(self, *, style: str, limit: int) -> list[StoredText]:
        if style not in self._articles:
            corpus = load_corpus(self.catalog.get(style).directory / "corpus")
            self._articles[style] = [StoredText(a.id, a.brief.brief_id, a.brief.title, a.body) for a in corpus.articles]
        return self._articles[style][:limit]


def near_duplicates(store: _CorpusAsStore, batch: list[Draft]) -> float:
    """Seconds for write_briefs' near-duplicate check of every draft: the nearest stored article of its style
    (read once per style and call, as in write_briefs; that read is not timed), then remembering it."""
    stored = StoredArticles(store)  # type: ignore[arg-type]
    for draft in batch:
        stored._articles(draft.style)
    started = time.perf_counter()
    for number, draft in enumerate(batch):
        brief = draft.scored.brief
        stored.nearest(draft.style, brief.brief_id, draft.scored.markdown)
        stored.add(draft.style, f"new-{number}", brief.brief_id, brief.title, draft.scored.markdown)
    return time.perf_counter() - started


def measured_pass(batch: list[DraftToScore], embedder: Embedder) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of each component in one ``score_drafts`` call on the whole batch."""
    timers = Timers(defaultdict(float), defaultdict(float))
    with instrumented(timers):
        started, cpu_started = time.perf_counter(), time.process_time()
        score_drafts(batch, language="en", embedder=embedder)
        total, cpu_total = time.perf_counter() - started, time.process_time() - cpu_started
    rows = {name: (timers.seconds[name], timers.cpu[name]) for name in COMPONENTS if name in timers.seconds}
    other = (total - sum(wall for wall, _ in rows.values()), cpu_total - sum(cpu for _, cpu in rows.values()))
    rows["other (scorecard glue, unattributed)"] = other
    rows[TOTAL] = (total, cpu_total)
    return rows


def embedder_ab(batch: list[DraftToScore], rounds: int, embedder: Embedder) -> dict[str, list[float]]:
    """Wall seconds to embed the batch's briefs and chunks (what on_topic encodes), alternating sentence-transformers'
    own batching (32 texts grouped by length in characters: Embedder.encode before issue 19) with
    Embedder.encode (groups of 32 by length in word pieces), ``rounds`` times each, in this one process."""
    texts = list(
        dict.fromkeys(
            [brief_text(draft.brief) for draft in batch]
            + [chunk for draft in batch for chunk in chunk_words(strip_markdown(draft.markdown))]
        )
    )
    options = {"normalize_embeddings": True, "convert_to_numpy": True, "show_progress_bar": False}
    timings: dict[str, list[float]] = {"sentence-transformers, 32 by characters": [], "Embedder.encode": []}
    for _ in range(rounds):
        for name, encode in (
            (
                "sentence-transformers, 32 by characters",
                lambda: embedder._model.encode(texts, batch_size=32, **options),
            ),
            ("Embedder.encode", lambda: embedder.encode(texts)),
        ):
            started = time.perf_counter()
            encode()
            timings[name].append(round(time.perf_counter() - started, 2))
    return timings


def cprofile_pass(batch: list[DraftToScore], top: int, embedder: Embedder) -> str:
    profile = cProfile.Profile()
    profile.enable()
    score_drafts(batch, language="en", embedder=embedder)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def generation_share(briefs: int, new_tokens: int, threads: int) -> dict[str, Any]:
    """bench/throughput.py's (b) alone: the real pipeline on ``briefs`` briefs, scoring's measured share."""
    import throughput

    args = argparse.Namespace(batch_size=None, threads=threads)
    target_words = max(30, int((new_tokens - 24) / 1.5))
    return throughput.copydesk(throughput.fresh_settings(args), sample_briefs(briefs, target_words))


def table(rows: dict[str, tuple[float, float]], drafts: int, words: float) -> str:
    total, cpu_total = rows[TOTAL]
    lines = [
        f"{drafts} drafts, {words:.0f} words per draft on average",
        "| component | wall ms per draft | share of wall | CPU ms per draft |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (wall, cpu) in rows.items():
        if name != TOTAL:
            lines.append(f"| {name} | {1000 * wall / drafts:.2f} | {wall / total:.1%} | {1000 * cpu / drafts:.2f} |")
    lines.append(f"| **{TOTAL}** | **{1000 * total / drafts:.2f}** | 100% | **{1000 * cpu_total / drafts:.2f}** |")
    return "\n".join(lines)


def embedder_dtype(choice: str) -> str:
    """The embedder's dtype: as chosen, or (``pipeline``) the one a worker's pipeline picks here (its settings'
    engine dtype and device, ``COPYDESK_DTYPE`` and ``COPYDESK_DEVICE``)."""
    if choice != "pipeline":
        return choice
    from worker.config import load_settings
    from worker.engine.placement import pick_device, pick_dtype

    settings = load_settings()
    engine_dtype = pick_dtype(settings.dtype, pick_device(settings.device))
    return embedder_dtype_for(str(engine_dtype).removeprefix("torch."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=2, help="drafts per brief (the styles' default: 2)")
    parser.add_argument("--min-words", type=int, default=250, help="join model drafts until this many words")
    parser.add_argument("--repeats", type=int, default=3, help="measured passes; each component's median")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--cprofile", type=int, default=0, help="print the top N functions of one more pass")
    parser.add_argument("--embedder-ab", type=int, default=0, help="rounds of the embedder's old and new batching")
    parser.add_argument("--generation-briefs", type=int, default=0, help="also run throughput.py's (b) alone")
    parser.add_argument("--new-tokens", type=int, default=128, help="token budget of that (b) run")
    parser.add_argument(
        "--embedder-dtype",
        choices=["pipeline", "float32", "bfloat16"],
        default="pipeline",
        help="pipeline: what a worker here scores with (bf16 where its engine writes in bf16)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    briefs = sample_briefs(args.briefs, 300)
    drafts, catalog = build_batch(briefs, args.candidates, args.min_words)
    batch = [draft.scored for draft in drafts]
    words = statistics.mean(len(d.markdown.split()) for d in batch)
    embedder = default_embedder(embedder_dtype(args.embedder_dtype))
    started = time.perf_counter()
    score_drafts(batch, language="en", embedder=embedder)  # warm-up: models loaded, caches filled
    warm_up = time.perf_counter() - started
    passes = [measured_pass(batch, embedder) for _ in range(max(1, args.repeats))]
    rows = {
        name: (statistics.median(p[name][0] for p in passes), statistics.median(p[name][1] for p in passes))
        for name in passes[0]
    }
    store = _CorpusAsStore(catalog)
    dup_seconds = statistics.median(near_duplicates(store, drafts) for _ in range(max(1, args.repeats)))
    report: dict[str, Any] = {
        "cpu_threads": torch.get_num_threads(),
        "embedder_dtype": embedder.dtype,
        "load_average": os.getloadavg()[0],
        "warm_up_pass_s": round(warm_up, 2),
        "passes_wall_s": [round(p[TOTAL][0], 3) for p in passes],
        "passes_cpu_s": [round(p[TOTAL][1], 3) for p in passes],
    }
    print(table(rows, len(batch), words))
    print(
        f"| near-duplicates at store time (runner; not in score_drafts) | {1000 * dup_seconds / len(batch):.2f} | — |"
    )
    per_draft = rows[TOTAL][0] / len(batch)
    generation_per_draft = words * TOKENS_PER_WORD / SESSION5_TOKENS_PER_SECOND
    projected = per_draft / (per_draft + generation_per_draft * (1 + SESSION5_OTHER_SHARE))
    report["projected_share_of_wall_at_session5_speed"] = round(projected, 4)
    if args.embedder_ab:
        report["embedder_ab_wall_s"] = embedder_ab(batch, args.embedder_ab, embedder)
    if args.generation_briefs:
        run = report["b_run"] = generation_share(args.generation_briefs, args.new_tokens, args.threads)
        # Generation per draft of this bench's length at the speed (b) measured just now, with (b)'s own
        # share of queue/store/other on top: what scoring's share would be in a batch of such drafts.
        generation = words * TOKENS_PER_WORD / run["tokens_per_second"]
        other = run["queue_store_other_share_of_wall"]
        share = per_draft / (per_draft + generation * (1 + other))
        report["projected_share_of_wall_at_b_run_speed"] = round(share, 4)
    print(json.dumps(report, indent=2))
    if args.cprofile:
        print(cprofile_pass(batch, args.cprofile, embedder))


if __name__ == "__main__":
    main()
