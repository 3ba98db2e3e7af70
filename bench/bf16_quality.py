"""Does bf16 keep quality? Held-out perplexity under bf16 against fp32, per style, in one invocation.

For every shipped style it reads the served adapter's held-out articles (``heldout.jsonl``, never trained
on), and computes the perplexity of their completion tokens given their prompts (``worker.lab.evaluation``'s
measure) on the base model alone and with the style's adapter, once with an fp32 engine and once with a
bf16 engine. The criterion: bf16 perplexity within 1 % of fp32. A third engine, fp32 on the batch's fast paths
(``exact_rows=False``: what ``dtype: auto`` runs on a CPU without bf16 units), is held to the same criterion
(``fp32_fast``). The measure runs the model's forward a row at a time, so of the fast paths it exercises the grouped
q/k/v and gate/up products (the decode-time paths are compared by bench/exact_rows.py's texts).

    python bench/bf16_quality.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from worker.config import load_settings
from worker.engine.adapters import BASE
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import Engine
from worker.lab.eval_inputs import read_heldout
from worker.lab.eval_measures import perplexity
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import adapter_ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args()
    settings = load_settings()
    source = resolve_base_model(settings)
    catalog = StyleCatalog.for_settings(settings)
    renderer = PromptRenderer(settings.templates_dir)
    engines = {
        "fp32": Engine(source, dtype=torch.float32),
        "bf16": Engine(source, dtype=torch.bfloat16),
        "fp32_fast": Engine(source, dtype=torch.float32, exact_rows=False),
    }
    rows: list[dict[str, Any]] = []
    for name in catalog.names:
        style = catalog.get(name)
        if style.adapter is None or style.adapter_dir is None:
            continue
        ref = adapter_ref(style, style.adapter)
        items = read_heldout(style.adapter_dir)
        row: dict[str, Any] = {"style": name, "adapter": style.adapter, "heldout_articles": len(items)}
        for label, engine in engines.items():
            engine.load_adapter(ref)
            row[f"base_{label}"] = round(perplexity(engine, renderer, style, items, BASE, args.max_length), 4)
            row[f"adapter_{label}"] = round(perplexity(engine, renderer, style, items, ref.name, args.max_length), 4)
        for kind in ("base", "adapter"):
            for label in ("bf16", "fp32_fast"):
                row[f"{kind}_{label}_over_fp32"] = round(row[f"{kind}_{label}"] / row[f"{kind}_fp32"], 4)
        rows.append(row)
    report: dict[str, Any] = {"styles": rows}
    for label in ("bf16", "fp32_fast"):
        worst = max(abs(r[f"{k}_{label}_over_fp32"] - 1) for r in rows for k in ("base", "adapter"))
        report[label] = {"worst_relative_difference": round(worst, 6), "within_tolerance": worst <= args.tolerance}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
