"""Can int8 make a CPU without bf16 units fast at fp32's quality? Held-out perplexity and product speed, one run.

Issue 19 asks, on AVX2-only CPUs, for copydesk at 2.5x llama.cpp's best with held-out perplexity within 1 % of
fp32 per style, and points at int8 weights. This bench measures the two halves of that question side by side:

**Quality.** The held-out perplexity of every shipped style (``worker.lab.eval_measures.perplexity``, the measure
``styles eval`` and ``bench/bf16_quality.py`` use), base model alone and with the served adapter, with every linear
layer of the base model (the output head included; the LoRA matrices stay fp32) computed as:

* ``fp32``: the engine's exact mode, the reference;
* ``w8``: int8 weights (symmetric, one scale per output channel), fp32 activations: what any weight-only int8
  kernel computes (simulated: the weights rounded to int8 and back), the best quality int8 weights can give;
* ``w8a8_token``: int8 weights and int8 activations with one scale per row (token): int8 x int8 products
  that stay row-independent (simulated);
* ``fbgemm_dynamic``: torch's fast int8 kernel (``quantized.linear_dynamic``, fbgemm), which quantises the
  activations with one scale per call (the whole batch): the real kernel, not a simulation.

**Speed.** Median milliseconds of one product at 1, 32 and 64 rows, for the model's MLP up projection and its
output head: the packed fp32 product the engine runs (oneDNN), fbgemm's dynamic int8, torch's weight-only int8
kernel (``_weight_int8pack_mm``) and int8 x int8 (``_int_mm``, the row quantisation included).

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python bench/int8_quality.py --threads 2 > int8.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from head_matmul import median_seconds

from worker.config import load_settings
from worker.engine.adapters import BASE
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import Engine
from worker.lab.eval_inputs import read_heldout
from worker.lab.eval_measures import perplexity
from worker.lab.evaluation import machine_record
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import adapter_ref

VARIANTS = ("fp32", "w8", "w8a8_token", "fbgemm_dynamic")
Forward = Callable[[torch.Tensor], torch.Tensor]


def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` as int8 with one symmetric scale per output channel (row): ``(q, scales)``."""
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8), scales


def int8_per_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as int8 with one symmetric scale per row (token): ``(q, scales)``, scales shaped to broadcast."""
    scales = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 127
    return torch.round(x / scales).clamp(-127, 127).to(torch.int8), scales


def per_token(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to int8 with one scale per row, and back (the activations of a row-wise W8A8 product)."""
    q, scales = int8_per_row(x)
    return q.to(x.dtype) * scales


def fbgemm_packed(weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> Any:
    """``weight`` packed for fbgemm's int8 product (per-channel ``scales``)."""
    with warnings.catch_warnings():  # quantised tensors are deprecated in torch 2.13 (still fbgemm's entry point)
        warnings.simplefilter("ignore")
        zeros = torch.zeros(len(scales), dtype=torch.long)
        quantised = torch.quantize_per_channel(weight, scales.double(), zeros, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(quantised, bias)


def variant_forward(variant: str, linear: torch.nn.Linear) -> Forward:
    """The forward of ``linear`` under ``variant`` (a copy of its weight: the tied output head is left alone)."""
    weight, bias = linear.weight.detach().float(), None if linear.bias is None else linear.bias.detach().float()
    q, scales = int8_per_channel(weight)
    rounded = q.float() * scales[:, None]
    if variant == "w8":
        return lambda x: torch.nn.functional.linear(x, rounded, bias)
    if variant == "w8a8_token":
        return lambda x: torch.nn.functional.linear(per_token(x), rounded, bias)
    packed = fbgemm_packed(weight, scales, bias)
    return lambda x: torch.ops.quantized.linear_dynamic(x, packed, False)


def apply_variant(model: Any, variant: str) -> int:
    """Replace the forward of every base-model linear layer (not the LoRA matrices) by ``variant``'s."""
    replaced = 0
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear and "lora_" not in name:
            module.forward = variant_forward(variant, module)
            replaced += 1
    return replaced


def perplexities(source: Any, settings: Any, variant: str, max_length: int) -> list[dict[str, Any]]:
    """Per shipped style: held-out perplexity of the base model and of the served adapter under ``variant``."""
    engine = Engine(source, dtype=torch.float32, packed_matmuls=variant == "fp32")
    if variant != "fp32":
        apply_variant(engine.model, variant)
    catalog, renderer = StyleCatalog.for_settings(settings), PromptRenderer(settings.templates_dir)
    rows = []
    for name in catalog.names:
        style = catalog.get(name)
        if style.adapter is None or style.adapter_dir is None:
            continue
        ref = adapter_ref(style, style.adapter)
        engine.load_adapter(ref)  # its LoRA matrices are added after apply_variant: they stay fp32
        items = read_heldout(style.adapter_dir)
        rows.append(
            {
                "style": name,
                "base": round(perplexity(engine, renderer, style, items, BASE, max_length), 4),
                "adapter": round(perplexity(engine, renderer, style, items, ref.name, max_length), 4),
            }
        )
    return rows


def median_ms(call: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one warm-up call."""
    call()
    return round(median_seconds(call, repeats) * 1000, 3)


def product_calls(weight: torch.Tensor, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Each kernel's product of ``x`` and ``weight`` (set up outside the timed call)."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, 32)
    q, scales = int8_per_channel(weight)
    fbgemm = fbgemm_packed(weight, scales, None)
    q_t = q.t()

    def int_mm() -> torch.Tensor:
        xq, row_scales = int8_per_row(x)
        return torch._int_mm(xq, q_t).float() * row_scales * scales

    return {
        "fp32_packed": lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""),
        "fbgemm_dynamic": lambda: torch.ops.quantized.linear_dynamic(x, fbgemm, False),
        "weight_int8pack_mm": lambda: torch._weight_int8pack_mm(x, q, scales),
        "int_mm_rowwise": int_mm,
    }


def product_speeds(config: Any, repeats: int) -> list[dict[str, Any]]:
    shapes = {"mlp_up": (config.intermediate_size, config.hidden_size), "head": (config.vocab_size, config.hidden_size)}
    generator = torch.Generator().manual_seed(0)
    rows = []
    for label, (out_features, in_features) in shapes.items():
        weight = torch.randn(out_features, in_features, generator=generator) / in_features**0.5
        for batch in (1, 32, 64):
            x = torch.randn(batch, in_features, generator=generator)
            timings = {kernel: median_ms(call, repeats) for kernel, call in product_calls(weight, x).items()}
            rows.append({"product": label, "shape": [out_features, in_features], "rows": batch, "ms": timings})
    return rows


def over_fp32(quality: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each variant's perplexity over fp32's, per style, base model and adapter."""
    reference = {row["style"]: row for row in quality["fp32"]}
    return {
        variant: {
            row["style"]: {kind: round(row[kind] / reference[row["style"]][kind], 4) for kind in ("base", "adapter")}
            for row in rows
        }
        for variant, rows in quality.items()
        if variant != "fp32"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per product (median)")
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "fbgemm"
    settings = load_settings()
    source = resolve_base_model(settings)
    quality = {variant: perplexities(source, settings, variant, args.max_length) for variant in VARIANTS}
    ratios = over_fp32(quality)
    within = {
        v: all(abs(r - 1) <= args.tolerance for s in per.values() for r in s.values()) for v, per in ratios.items()
    }
    engine = Engine(source, dtype=torch.float32)
    report = {
        "machine": machine_record(engine),
        "perplexity": quality,
        "over_fp32": ratios,
        "within_tolerance": within,
        "product_ms": product_speeds(engine.model.config, args.repeats),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
