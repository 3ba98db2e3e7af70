"""Decode attention over shared prompts: the engine's batched products against the CPU flash kernel, side by side.

The engine's decode attention under bf16 on the CPU (``worker.engine.prompt_attention``) scores each prompt once
for all its rows and each row against its own generated tokens, takes one fp32 softmax over both and sums the
values, all in batched matrix products over contiguous buffers. Before session 16 it made two calls of torch's
CPU flash kernel (the prompt part and the generated part), merged by their log-sum-exp; that formulation is kept
here, on the same layer, as the baseline (``flash``). The engine's products are timed with their scores taken both
ways: ``query @ keys^T`` (``products_query_side``: sessions 16-18, and since session 20 on a CPU without AMX) and
``keys @ query^T`` (``products_key_side``: session 19, and since session 20 on an AMX CPU); the bench says which one
the engine uses on this CPU.

Two measurements, in one process, alternating the three formulations:

* ``layer``: one :class:`SharedPromptLayer` of the default base model's attention shape (``--kv-heads``,
  ``--group``, ``--head-dim``) with ``--rows`` rows over ``--rows / 2`` prompts of ``--prompt-length`` columns,
  timed per call at each of ``--generated`` lengths; also the largest differences between the outputs;
* ``engine`` (with ``--briefs``): ``Engine.generate`` on the pipeline's requests (each brief on its routed style's
  adapter, two candidates per brief, ``--new-tokens``), generated tokens per second of each, median of
  ``--repeats``.

    python bench/decode_attention.py --threads 2
    python bench/decode_attention.py --threads 2 --briefs 64 --new-tokens 256 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from worker.engine.prompt_attention import (
    SharedPromptLayer,
    _packed,
    _unpacked,
    key_side_scores,
    query_side_scores,
    scores_from_key_side,
)
from worker.lab.evaluation import machine_record

Attend = Callable[[SharedPromptLayer, torch.Tensor, float | None], torch.Tensor]


def _flash(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, scale: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, keys, values, attn_mask=bias, scale=scale
    )
    return output, lse


def flash_attend(layer: SharedPromptLayer, query: torch.Tensor, scale: float | None) -> torch.Tensor:
    """The engine's decode attention before session 16: two flash-kernel calls merged by their log-sum-exp."""
    rows, heads, _, dim = query.shape
    kv_heads = layer.prompt_keys.shape[1]
    group = heads // kv_heads
    per_row = query.reshape(rows, kv_heads, group, dim)
    packed = _packed(per_row, layer.pack, layer.slots)
    prompt_out, prompt_lse = _flash(packed, layer.prompt_keys, layer.prompt_values, layer.prompt_bias, scale)
    prompt_out = _unpacked(prompt_out, layer.slots, group, layer.unpack)
    prompt_lse = _unpacked(prompt_lse, layer.slots, group, layer.unpack)
    own_out, own_lse = _flash(per_row, layer.keys, layer.values, None, scale)
    weight = torch.sigmoid(prompt_lse - own_lse).unsqueeze(-1)
    merged = torch.lerp(own_out.float(), prompt_out.float(), weight).to(query.dtype)
    return merged.reshape(rows, 1, heads, dim)


ENGINE_ATTEND = SharedPromptLayer.attend  # the engine's own, whatever the engine figures install meanwhile


def products(scores: Any) -> Attend:
    """The engine's batched products with the scores taken by ``scores`` (the layer's own choice replaced)."""

    def attend(layer: SharedPromptLayer, query: torch.Tensor, scale: float | None) -> torch.Tensor:
        layer.scores = scores
        return ENGINE_ATTEND(layer, query, scale)

    return attend


FORMULATIONS: dict[str, Attend] = {
    "flash": flash_attend,
    "products_query_side": products(query_side_scores),
    "products_key_side": products(key_side_scores),
}
# The engine's own on this CPU (SharedPromptLayer's default): key side where the CPU has AMX.
ENGINE_FORM = "products_key_side" if scores_from_key_side() else "products_query_side"


def filled_layer(args: argparse.Namespace, generated: int) -> tuple[SharedPromptLayer, torch.Tensor]:
    """A layer of random bf16 keys and values (the first eighth of each prompt masked as padding), ``generated``
    positions written one at a time, and one step's random query."""
    generator = torch.Generator().manual_seed(0)
    prompts = args.rows // 2

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(torch.bfloat16)

    shape = (prompts, args.kv_heads, args.prompt_length, args.head_dim)
    bias = torch.zeros(prompts, 1, 1, args.prompt_length, dtype=torch.bfloat16)
    bias[..., : args.prompt_length // 8] = float("-inf")
    of_row = torch.arange(args.rows) // 2
    layer = SharedPromptLayer(random(*shape), random(*shape), bias, of_row, capacity=max(args.generated))
    for _ in range(generated):
        step = (args.rows, args.kv_heads, 1, args.head_dim)
        layer.update(random(*step), random(*step))
    return layer, random(args.rows, args.kv_heads * args.group, 1, args.head_dim)


def layer_figures(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Milliseconds per call of each formulation at each generated length (median of ``--calls``), alternating."""
    figures = []
    scale = args.head_dim**-0.5
    for generated in args.generated:
        layer, query = filled_layer(args, generated)
        outputs = {name: attend(layer, query, scale).float() for name, attend in FORMULATIONS.items()}
        times: dict[str, list[float]] = {name: [] for name in FORMULATIONS}
        for _ in range(args.calls):
            for name, attend in FORMULATIONS.items():
                started = time.perf_counter()
                attend(layer, query, scale)
                times[name].append((time.perf_counter() - started) * 1e3)
        ms = {name: statistics.median(times[name]) for name in FORMULATIONS}
        figures.append(
            {
                "generated": generated,
                **{f"{name}_ms": value for name, value in ms.items()},
                "speedup": ms["flash"] / ms[ENGINE_FORM],
                "key_side_speedup": ms["products_query_side"] / ms["products_key_side"],
                "max_abs_difference": float((outputs["flash"] - outputs[ENGINE_FORM]).abs().max()),
                "key_side_difference": float(
                    (outputs["products_query_side"] - outputs["products_key_side"]).abs().max()
                ),
            }
        )
    return figures


def engine_figures(args: argparse.Namespace) -> dict[str, Any]:
    """Generated tokens per second of ``Engine.generate`` with each formulation, alternating, median of repeats."""
    from workload import pipeline_requests

    from worker.config import load_settings
    from worker.engine.engine import Engine

    settings = load_settings(batch_size=2 * args.briefs)
    engine = Engine.from_settings(settings)
    if not engine.attend_prompts_once:
        raise SystemExit("this engine does not attend to prompts once here (bf16 on the CPU, a supported family)")
    requests = pipeline_requests(settings, args.briefs, args.new_tokens)
    engine.generate(requests[: min(len(requests), 8)])  # warm-up: adapters loaded and packed
    runs: dict[str, list[float]] = {name: [] for name in FORMULATIONS}
    original = SharedPromptLayer.attend
    try:
        for _ in range(args.repeats):
            for name, attend in FORMULATIONS.items():
                SharedPromptLayer.attend = attend  # type: ignore[method-assign]
                started = time.perf_counter()
                outputs = engine.generate(requests)
                runs[name].append(sum(o.new_tokens for o in outputs) / (time.perf_counter() - started))
    finally:
        SharedPromptLayer.attend = original  # type: ignore[method-assign]
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "rows": len(requests),
        "tok_s": medians,
        "runs": runs,
        "speedup": medians[ENGINE_FORM] / medians["flash"],
        "key_side_speedup": medians["products_key_side"] / medians["products_query_side"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--prompt-length", type=int, default=200)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--group", type=int, default=3, help="query heads per key head")
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--generated", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--briefs", type=int, default=0, help="also time Engine.generate on this many briefs")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": machine_record(None), "layer": layer_figures(args)}
    print(json.dumps(report["machine"]))
    print(f"one layer: {args.rows} rows, {args.rows // 2} prompts of {args.prompt_length} columns, bf16")
    print(f"the engine's scores on this CPU: {ENGINE_FORM}")
    print(
        "| generated | flash kernel, ms | products, scores q·kᵀ, ms | products, scores k·qᵀ, ms | engine's over flash "
        "| k·qᵀ over q·kᵀ | max abs difference (engine's, flash) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in report["layer"]:
        print(
            f"| {row['generated']} | {row['flash_ms']:.3f} | {row['products_query_side_ms']:.3f} | "
            f"{row['products_key_side_ms']:.3f} | {row['speedup']:.2f}x | {row['key_side_speedup']:.2f}x | "
            f"{row['max_abs_difference']:.4f} |"
        )
    if args.briefs:
        report["engine"] = engine = engine_figures(args)
        print(
            f"Engine.generate, {engine['rows']} rows x {args.new_tokens} new tokens, median of {args.repeats}: "
            f"flash {engine['tok_s']['flash']:.1f} tok/s, products with scores q·kᵀ "
            f"{engine['tok_s']['products_query_side']:.1f} tok/s, with scores k·qᵀ "
            f"{engine['tok_s']['products_key_side']:.1f} tok/s (the engine's: {engine['speedup']:.2f}x over flash; "
            f"k·qᵀ {engine['key_side_speedup']:.2f}x over q·kᵀ)"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
