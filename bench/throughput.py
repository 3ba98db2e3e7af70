"""Throughput benchmark: naive loop vs copydesk's batched, mixed-style pipeline vs llama.cpp.

Runs side by side in one invocation on the same briefs, prompts and token budgets:

  (a) naive      one brief at a time, fp32, plain ``model.generate`` (sampling), no scoring, no store;
  (b) copydesk   the real pipeline at its best settings: briefs of several styles mixed in batches,
                 bf16 where the CPU has bf16 units, scoring and store included;
  (c) llama.cpp  llama-cpp-python on the same GGUF file and prompts: one sequence at a time, and N
                 sequences decoded in parallel in one llama_batch (optional: install the ``bench`` extra;
                 it compiles for ~7 minutes).

Reports generated tokens per second, finished articles per hour, the shares of scoring and of queue/store
overhead in the pipeline's wall time, peak memory, and the ratios b/a and b/c (c = llama.cpp's best).

    python bench/throughput.py --briefs 16 --new-tokens 96 --naive-briefs 4 --llama-parallel 16

Steady state (since session 19): before its timed run, (b) runs ``--warm-briefs`` more briefs of the sample (the next
ones; it cycles through 66 articles, so most repeat the timed briefs' texts under other ids: nothing is kept from one
batch to the next) as one untimed batch, as a worker that has been running has (the first full batch pays one-offs:
see :func:`warm_up`), and (a) one short untimed generation on its fresh model. The warm-up's own figures are reported
as ``warm_up_batch`` with ``ratio_first_batch_over_a``: close to what earlier sessions measured as b, though timed
around ``pipeline.run`` (generation and scoring, no store or files) on those other briefs.

On a CPU without bf16 units (b) runs float32 on the batch's fast paths (``dtype: auto``'s choice there). To measure
that on a CPU with bf16 units, force the AVX2 profile and that choice, with llama.cpp built without AVX-512
(docs/benchmarks.md, "fp32 on the fast paths"):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    COPYDESK_DTYPE=float32 COPYDESK_EXACT_ROWS=false PYTHONPATH=<llama-cpp-python built for AVX2> \
    python bench/throughput.py ...

With ``--repeats N`` every mode runs N times, interleaved (b, a, c1, c2, then again), and each reports the
run with its median tok/s, plus every run's tok/s under ``runs_tokens_per_second``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llama_parallel
from workload import chat_prompts, naive_generate, sample_briefs

import worker.pipeline.pipeline as pipeline_module
from worker.config import Settings, load_settings
from worker.engine.base_model import packaged_gguf, resolve_base_model
from worker.engine.engine import Engine
from worker.engine.placement import batch_size_for
from worker.intake.briefs import Brief
from worker.lab.evaluation import machine_record
from worker.pipeline.pipeline import Pipeline
from worker.pipeline.routing import route
from worker.pipeline.runner import write_briefs
from worker.scoring.embeddings import default_embedder, embedder_dtype_for
from worker.store import Store


def copydesk(settings: Settings, briefs: list[Brief], warm_briefs: list[Brief]) -> dict[str, float]:
    """(b) The real pipeline: mixed styles, batched, scored, stored; each style's candidates, one attempt."""
    engine = Engine.from_settings(settings)
    pipeline = Pipeline(settings, engine, embedder=default_embedder(embedder_dtype_for(engine.dtype_name)))
    # Warm-up on one brief of each style: every adapter loaded once, as in a worker that has been running
    # (loading an adapter is a one-off per process, not a cost per article).
    first_of_style: dict[str, Brief] = {}
    for brief in briefs:
        first_of_style.setdefault(route(brief, pipeline.catalog, settings.default_style).style, brief)
    pipeline.run(list(first_of_style.values()))
    first_batch = warm_up(pipeline, engine, warm_briefs) if warm_briefs else None
    store = Store(settings.effective_store_url)
    store.migrate()
    for brief in briefs:
        store.add_brief(brief)
    spent = {"generate": 0.0, "score": 0.0}
    generate, score = engine.generate, pipeline_module.score_drafts

    def timed(name: str, function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return call

    engine.generate = timed("generate", generate)  # type: ignore[method-assign]
    pipeline_module.score_drafts = timed("score", score)
    started = time.perf_counter()
    try:
        outcomes = write_briefs(
            [b.brief_id for b in briefs], store=store, pipeline=pipeline, owner="bench", lease_seconds=3600
        )
    finally:
        pipeline_module.score_drafts = score
    seconds = time.perf_counter() - started
    tokens = sum(c["new_tokens"] for b in briefs for c in store.list_candidates(b.brief_id))
    articles = sum(1 for o in outcomes if o.article is not None)
    other = seconds - spent["generate"] - spent["score"]
    return {
        "seconds": round(seconds, 1),
        "articles": articles,
        "sequences": sum(len(store.list_candidates(b.brief_id)) for b in briefs),
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "articles_per_hour": round(articles * 3600 / seconds, 1),
        "generate_seconds": round(spent["generate"], 1),
        "score_share_of_generation": round(spent["score"] / spent["generate"], 4),
        "score_share_of_wall": round(spent["score"] / seconds, 4),
        "queue_store_other_share_of_wall": round(other / seconds, 4),
        "dtype": engine.dtype_name,
        "exact_rows": engine.exact_rows,
        "batch_size": batch_size_for(settings),
        "warm_up_batch": first_batch,
    }


def warm_up(pipeline: Pipeline, engine: Engine, briefs: list[Brief]) -> dict[str, float]:
    """One full batch of more briefs through the pipeline (no store) before the timed run, so that (b) measures a
    worker in its steady state: the first full batch of a process, or of one whose memory other work has taken
    meanwhile (the other modes here), pays one-offs a running worker has paid (its heap's first growth to the batch's
    size: ~700,000 page faults, ~6 s of system time on a 2-core AMX machine; the kernels for each new batch shape).
    Returns that batch's figures: what a worker's first batch gets."""
    tokens = 0
    generate = engine.generate

    def counting(requests: Any) -> Any:
        nonlocal tokens
        outputs = generate(requests)
        tokens += sum(o.new_tokens for o in outputs)
        return outputs

    engine.generate = counting  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        pipeline.run(briefs)
    finally:
        engine.generate = generate  # type: ignore[method-assign]
    seconds = time.perf_counter() - started
    return {"briefs": len(briefs), "seconds": round(seconds, 1), "tokens_per_second": round(tokens / seconds, 1)}


def llama_cpp(prompts: list[str], new_tokens: int, parallel: int, threads: int | None) -> dict[str, Any] | None:
    """(c) llama.cpp on the same GGUF (None when llama-cpp-python is not installed)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    return llama_parallel.run(packaged_gguf(), prompts, new_tokens, parallel, threads=threads)


def fresh_settings(args: argparse.Namespace) -> Settings:
    home = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    sizes = {} if args.batch_size is None else {"batch_size": args.batch_size}  # None: env, file or the engine's
    return load_settings(home=home, max_attempts=1, threads=args.threads, **sizes)


def median_run(results: list[Any]) -> dict[str, Any] | None:
    """The run with the median tok/s (the lower middle one for an even count), with every run's tok/s."""
    measured = [r for r in results if r is not None]
    if not measured:
        return None
    ordered = sorted(measured, key=lambda r: r["tokens_per_second"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_tokens_per_second": [r["tokens_per_second"] for r in measured]}


def ratios(modes: dict[str, Any]) -> dict[str, float]:
    """b/a, the median (b) run's warm-up batch over a, and b over llama.cpp's faster mode (where it ran)."""
    b = modes["b_copydesk"]["tokens_per_second"]
    naive = modes["a_naive"]["tokens_per_second"]
    result = {"ratio_b_over_a": round(b / naive, 2)}
    first = modes["b_copydesk"].get("warm_up_batch")
    if first:
        result["ratio_first_batch_over_a"] = round(first["tokens_per_second"] / naive, 2)
    llama = [modes[k] for k in ("c_llama_cpp_single", "c_llama_cpp_parallel") if modes.get(k)]
    if llama:
        result["ratio_b_over_c_best"] = round(b / max(r["tokens_per_second"] for r in llama), 2)
    return result


def llama_cpp_system_info() -> str | None:
    """The ISA llama.cpp was built for and uses (``llama_print_system_info``), or ``None`` without the extra."""
    try:
        from llama_cpp import llama_cpp as lib
    except ImportError:
        return None
    return bytes(lib.llama_print_system_info()).decode("utf-8", "replace").strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=96, help="token budget per sequence, all modes")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the engine's (128 in bf16, 32 in fp32)")
    parser.add_argument("--naive-briefs", type=int, default=4, help="the naive loop runs on the first N briefs")
    parser.add_argument("--llama-single-briefs", type=int, default=4, help="llama.cpp single stream: first N")
    parser.add_argument("--llama-parallel", type=int, default=16, help="llama.cpp parallel sequences")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for every mode; 0 = all cores")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode; the median run is reported")
    parser.add_argument(
        "--warm-briefs",
        type=int,
        default=None,
        help="(b) first runs this many other briefs as one batch, untimed (default: --briefs; 0: none, as before "
        "session 19), so that it measures a running worker; their figures are reported as warm_up_batch",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    target_words = max(30, int((args.new_tokens - 24) / 1.5))
    settings = fresh_settings(args)
    warm_count = args.briefs if args.warm_briefs is None else args.warm_briefs
    every_brief = sample_briefs(args.briefs + warm_count, target_words)  # the warm-up's are the next ones
    briefs, warm_briefs = every_brief[: args.briefs], every_brief[args.briefs :]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(settings).directory)
    prompts = chat_prompts(settings, briefs, tokenizer)
    report: dict[str, Any] = {
        "briefs": args.briefs,
        "new_tokens": args.new_tokens,
        "cpu_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg()[0],
        "machine": machine_record(None),  # the CPU's model and features, torch's capability, ISA overrides
        "llama_cpp_system_info": llama_cpp_system_info(),
    }
    threads = args.threads or None
    parallel_prompts = (prompts * args.llama_parallel)[: max(args.llama_parallel, len(prompts))]
    runs: dict[str, list[Any]] = {"b_copydesk": [], "a_naive": [], "c_llama_cpp_single": [], "c_llama_cpp_parallel": []}
    for _ in range(max(1, args.repeats)):
        runs["b_copydesk"].append(copydesk(fresh_settings(args), briefs, warm_briefs))  # its own store each time
        runs["a_naive"].append(naive_generate(settings, prompts[: args.naive_briefs], args.new_tokens, warm_up=True))
        runs["c_llama_cpp_single"].append(llama_cpp(prompts[: args.llama_single_briefs], args.new_tokens, 1, threads))
        runs["c_llama_cpp_parallel"].append(llama_cpp(parallel_prompts, args.new_tokens, args.llama_parallel, threads))
    report["repeats"] = max(1, args.repeats)
    report.update({mode: median_run(results) for mode, results in runs.items()})
    report.update(ratios(report))
    report["load_average_at_end"] = os.getloadavg()[0]
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
