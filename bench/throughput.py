"""Throughput benchmark: naive loop vs copydesk's batched, mixed-style pipeline vs llama.cpp.

Runs side by side in one invocation on the same briefs, prompts and token budgets:

  (a) naive      one brief at a time, fp32, plain ``model.generate`` (sampling), no scoring, no store;
  (b) copydesk   the real pipeline at its best settings: briefs of several styles mixed in batches,
                 bf16 where the CPU has bf16 units, scoring and store included;
  (c) llama.cpp  llama-cpp-python on the same GGUF file: one sequence at a time (optional: install the
                 ``bench`` extra; it compiles for ~7 minutes).

Reports generated tokens per second, finished articles per hour, peak memory, and the ratios b/a and b/c.

    python bench/throughput.py --briefs 16 --new-tokens 128
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

from worker.base_model import packaged_gguf, resolve_base_model
from worker.briefs import Brief
from worker.config import Settings, load_settings
from worker.embeddings import default_embedder
from worker.engine import Engine
from worker.loading import load_brief_files
from worker.pipeline import Pipeline
from worker.prompts import PromptRenderer
from worker.routing import route
from worker.runner import write_briefs
from worker.store import Store
from worker.styles import StyleCatalog

ROOT = Path(__file__).resolve().parent.parent


def sample_briefs(count: int, target_words: int) -> list[Brief]:
    loaded = [item.brief for item in load_brief_files([ROOT / "briefs" / "samples.yaml"]).briefs]
    return [
        loaded[i % len(loaded)].model_copy(
            update={"id": f"bench-{i:03d}-{loaded[i % len(loaded)].brief_id}", "target_words": target_words}
        )
        for i in range(count)
    ]


def chat_prompts(settings: Settings, briefs: list[Brief], tokenizer: Any) -> list[str]:
    catalog = StyleCatalog.load(settings.styles_dir)
    renderer = PromptRenderer(settings.templates_dir)
    prompts = []
    for brief in briefs:
        style = catalog.get(route(brief, catalog, settings.default_style).style)
        messages = renderer.render(brief, style).messages()
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return prompts


def naive(settings: Settings, prompts: list[str], new_tokens: int) -> dict[str, float]:
    """(a) One prompt at a time, fp32, plain generate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = resolve_base_model(settings).directory
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    tokens = 0
    started = time.perf_counter()
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=new_tokens, do_sample=True, temperature=0.7, top_p=0.9)
        tokens += out.shape[1] - encoded["input_ids"].shape[1]
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "generated_tokens": tokens, "tokens_per_second": round(tokens / seconds, 1)}


def copydesk(settings: Settings, briefs: list[Brief]) -> dict[str, float]:
    """(b) The real pipeline: mixed styles, batched, scored, stored; one candidate, one attempt."""
    engine = Engine.from_settings(settings)
    pipeline = Pipeline(settings, engine, embedder=default_embedder())
    pipeline.run(briefs[:1])  # warm-up
    store = Store(settings.effective_store_url)
    store.migrate()
    for brief in briefs:
        store.add_brief(brief)
    started = time.perf_counter()
    outcomes = write_briefs(
        [b.brief_id for b in briefs], store=store, pipeline=pipeline, owner="bench", lease_seconds=3600
    )
    seconds = time.perf_counter() - started
    tokens = sum(c["new_tokens"] for b in briefs for c in store.list_candidates(b.brief_id))
    articles = sum(1 for o in outcomes if o.article is not None)
    return {
        "seconds": round(seconds, 1),
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "articles_per_hour": round(articles * 3600 / seconds, 1),
        "dtype": engine.dtype_name,
        "batch_size": settings.batch_size,
    }


def llama_cpp(prompts: list[str], new_tokens: int) -> dict[str, float] | None:
    """(c) llama.cpp single-stream on the same GGUF (None when llama-cpp-python is not installed)."""
    try:
        import llama_cpp.llama_cpp as low_level
        from llama_cpp import Llama
    except ImportError:
        return None
    default_params = low_level.llama_model_default_params

    def without_extra_buffers() -> Any:
        # On AMX CPUs the extra (repacking) buffer type dies with SIGILL on batched Q4_1 matmuls.
        params = default_params()
        params.use_extra_bufts = False
        return params

    low_level.llama_model_default_params = without_extra_buffers
    llm = Llama(model_path=str(packaged_gguf()), n_ctx=2048, n_threads=os.cpu_count() or 2, verbose=False)
    tokens = 0
    started = time.perf_counter()
    for prompt in prompts:
        out = llm.create_completion(prompt, max_tokens=new_tokens, temperature=0.7, top_p=0.9)
        tokens += int(out["usage"]["completion_tokens"])
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "generated_tokens": tokens, "tokens_per_second": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128, help="token budget per sequence, all modes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--naive-briefs", type=int, default=4, help="the naive loop runs on the first N briefs")
    args = parser.parse_args()
    target_words = max(50, int((args.new_tokens - 24) / 1.5))
    home = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    settings = load_settings(home=home, batch_size=args.batch_size, max_attempts=1)
    briefs = sample_briefs(args.briefs, target_words)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(settings).directory)
    prompts = chat_prompts(settings, briefs, tokenizer)
    report: dict[str, Any] = {
        "briefs": args.briefs,
        "new_tokens": args.new_tokens,
        "cpu_threads": torch.get_num_threads(),
    }
    report["b_copydesk"] = copydesk(settings, briefs)
    report["a_naive"] = naive(settings, prompts[: args.naive_briefs], args.new_tokens)
    report["c_llama_cpp_single"] = llama_cpp(prompts[: args.naive_briefs], args.new_tokens)
    b = report["b_copydesk"]["tokens_per_second"]
    report["ratio_b_over_a"] = round(b / report["a_naive"]["tokens_per_second"], 2)
    if report["c_llama_cpp_single"]:
        report["ratio_b_over_c_single"] = round(b / report["c_llama_cpp_single"]["tokens_per_second"], 2)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
