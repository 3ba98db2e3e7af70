"""The sampler's top-p step on real logits: the staged prefilter against the single one it replaced, side by side.

Captures the logits the engine hands ``sample_top_p`` (after the repetition penalty and temperature) during one
``Engine.generate`` of the pipeline's requests (``--briefs`` briefs, two candidates each, their styles' adapters,
``--new-tokens``), every ``--every``-th step with at least half the rows still in the batch. Then, alternating, times
per captured step:

* ``single``: the sampler before session 16 (one top-k of 256, the full sort for the rows whose nucleus it does not
  hold; kept here as the baseline), and
* ``staged, torch.topk``: the sampler of sessions 16-18, ``sample_top_p`` with each stage's top-k taken by
  ``torch.topk`` over the whole row,
* ``staged, logsumexp``: the sampler of session 19, each stage's probabilities ``exp(logit - logsumexp)``, and
* ``staged``: ``worker.engine.sampling.sample_top_p`` (64 likeliest tokens, then 4x as many for the rows left, ...,
  equal logits ordered by token id; each stage's top-k through the blocks of ``sampling.top_k``, session 19; the
  probabilities read from one fused softmax, ``sampling.probabilities_at``, session 20);

and counts how many draws of each equal the full sort's (the same uniforms), and how large the rows' nuclei are.
The same on flat logits of the same shapes (random, standard deviation 0.5: every nucleus spans thousands of
tokens, so every stage misses and every row is sorted whole): the staged prefilter's worst case.

    python bench/sampler.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from worker.engine import sampling
from worker.lab.evaluation import machine_record

Step = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # logits, top_p, uniforms


def single_prefilter(logits: torch.Tensor, top_p: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The top-p draw before session 16: one top-k of 256, the full sort where its tokens miss the nucleus."""
    chosen = torch.empty(logits.shape[0], dtype=torch.long)
    log_total = torch.logsumexp(logits, dim=-1, keepdim=True)
    values, order = torch.topk(logits, 256, dim=-1)
    probs = torch.exp(values - log_total)
    full = (top_p >= 1.0) | (probs.sum(dim=-1) < top_p)
    part = (~full).nonzero().flatten()
    if part.numel():
        chosen[part] = sampling._invert(probs[part], order[part], top_p[part], uniforms[part])
    rest = full.nonzero().flatten()
    if rest.numel():
        values, order = torch.sort(logits[rest], dim=-1, descending=True)
        chosen[rest] = sampling._invert(torch.exp(values - log_total[rest]), order, top_p[rest], uniforms[rest])
    return chosen


def staged_plain_top_k(logits: torch.Tensor, top_p: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """``sample_top_p`` with torch.topk over the whole row at every stage (before session 19)."""
    blocked = sampling.top_k
    sampling.top_k = lambda x, k: torch.topk(x, k, dim=-1)  # type: ignore[assignment]
    try:
        return sampling.sample_top_p(logits, top_p, uniforms, 64)
    finally:
        sampling.top_k = blocked  # type: ignore[assignment]


def staged_logsumexp(logits: torch.Tensor, top_p: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """``sample_top_p`` with each stage's probabilities as ``exp(logit - logsumexp)`` (session 19)."""
    fused = sampling.probabilities_at

    def from_logsumexp(rows_logits: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        log_total = torch.logsumexp(rows_logits, dim=-1, keepdim=True)
        return lambda rows, tokens: torch.exp(rows_logits[rows.unsqueeze(1), tokens] - log_total[rows])

    sampling.probabilities_at = from_logsumexp  # type: ignore[assignment]
    try:
        return sampling.sample_top_p(logits, top_p, uniforms, 64)
    finally:
        sampling.probabilities_at = fused  # type: ignore[assignment]


WAYS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "single": single_prefilter,
    "staged, torch.topk": staged_plain_top_k,
    "staged, logsumexp": staged_logsumexp,
    "staged": lambda logits, top_p, uniforms: sampling.sample_top_p(logits, top_p, uniforms, 64),
}


def captured_steps(args: argparse.Namespace) -> list[Step]:
    """The sampler's inputs of every ``--every``-th step of one engine run."""
    from workload import pipeline_requests

    from worker.config import load_settings
    from worker.engine.engine import Engine

    settings = load_settings(batch_size=2 * args.briefs)
    engine = Engine.from_settings(settings)
    requests = pipeline_requests(settings, args.briefs, args.new_tokens)
    steps: list[Step] = []
    calls = 0
    original = sampling.sample_top_p

    def recording(logits: torch.Tensor, top_p: torch.Tensor, uniforms: torch.Tensor, prefilter: int) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls % args.every == 0 and logits.shape[0] * 2 >= len(requests):
            steps.append((logits.clone(), top_p.clone(), uniforms.clone()))
        return original(logits, top_p, uniforms, prefilter)

    sampling.sample_top_p = recording  # type: ignore[assignment]
    try:
        engine.generate(requests)
    finally:
        sampling.sample_top_p = original  # type: ignore[assignment]
    return steps


def nucleus_sizes(steps: list[Step]) -> dict[str, int]:
    sizes: Counter[str] = Counter()
    for logits, top_p, _ in steps:
        log_total = torch.logsumexp(logits, dim=-1, keepdim=True)
        mass = torch.exp(torch.sort(logits, dim=-1, descending=True).values - log_total).cumsum(dim=-1)
        for size in ((mass < top_p[:, None]).sum(dim=-1) + 1).tolist():
            sizes["<= 64" if size <= 64 else "<= 256" if size <= 256 else "<= 1024" if size <= 1024 else "> 1024"] += 1
    return dict(sizes)


def compare(steps: list[Step], repeats: int) -> dict[str, Any]:
    full = [sampling.sample_top_p(logits, p, u, logits.shape[1]) for logits, p, u in steps]
    seconds: dict[str, list[float]] = {name: [] for name in WAYS}
    equal: dict[str, int] = {}
    for _ in range(repeats):
        for name, way in WAYS.items():
            started = time.perf_counter()
            drawn = [way(*step) for step in steps]
            seconds[name].append((time.perf_counter() - started) / len(steps))
            equal[name] = sum(int((a == b).sum()) for a, b in zip(drawn, full, strict=True))
    ms = {name: statistics.median(values) * 1e3 for name, values in seconds.items()}
    return {
        "steps": len(steps),
        "draws": sum(int(s[0].shape[0]) for s in steps),
        "ms_per_step": ms,
        "speedup": ms["single"] / ms["staged"],
        "blocked_speedup": ms["staged, torch.topk"] / ms["staged"],
        "softmax_speedup": ms["staged, logsumexp"] / ms["staged"],
        "equal_to_full_sort": equal,
        "nucleus_sizes": nucleus_sizes(steps),
    }


def flat(steps: list[Step]) -> list[Step]:
    """Steps of the same shapes whose logits are nearly uniform (no stage holds any nucleus)."""
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(logits.shape, generator=generator) * 0.5, p, u) for logits, p, u in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="capture every N-th sampling step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = captured_steps(args)
    report = {"machine": machine_record(None), **compare(steps, args.repeats), "flat": compare(flat(steps), 1)}
    print(json.dumps(report["machine"]))
    print(f"{report['steps']} captured steps, {report['draws']} draws; nucleus sizes {report['nucleus_sizes']}")
    print("| prefilter | ms per step | draws equal to the full sort's |")
    print("| --- | ---: | ---: |")
    for name in WAYS:
        print(f"| {name} | {report['ms_per_step'][name]:.2f} | {report['equal_to_full_sort'][name]} |")
    print(
        f"staged / single: {report['speedup']:.2f}x faster; blocked top-k: {report['blocked_speedup']:.2f}x faster; "
        f"softmax probabilities: {report['softmax_speedup']:.2f}x faster"
    )
    worst = report["flat"]
    print(
        f"flat logits (worst case): single {worst['ms_per_step']['single']:.2f} ms, staged "
        f"{worst['ms_per_step']['staged']:.2f} ms per step ({worst['speedup']:.2f}x; blocked top-k "
        f"{worst['blocked_speedup']:.2f}x)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
