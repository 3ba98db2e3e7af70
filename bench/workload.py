"""Shared workload of the benchmarks: sample briefs, their prompts, and engine requests over N styles.

The repository ships three styles with four trained adapters. For scale curves with more styles mixed,
:func:`synthetic_adapters` derives extra adapters from the shipped ones (same rank and target modules,
perturbed weights), so that N distinct LoRA adapters really share a batch.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from worker.config import Settings
from worker.engine.adapters import ADAPTER_WEIGHTS, AdapterRef
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import GenerationRequest
from worker.engine.sampling import RowSettings
from worker.intake.briefs import Brief
from worker.intake.loading import load_brief_files
from worker.pipeline.pipeline import derive_seed
from worker.pipeline.prompts import PromptRenderer
from worker.pipeline.routing import route
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import adapter_ref

ROOT = Path(__file__).resolve().parent.parent


def sample_briefs(count: int, target_words: int) -> list[Brief]:
    """``count`` briefs of three styles: briefs/samples.yaml, then bench/briefs.yaml (66 distinct articles),
    cycling beyond that (a repeated brief gets its own id, and shares its whole prompt with the first)."""
    files = [ROOT / "briefs" / "samples.yaml", ROOT / "bench" / "briefs.yaml"]
    loaded = [item.brief for item in load_brief_files(files).briefs]
    return [
        loaded[i % len(loaded)].model_copy(
            update={"id": f"bench-{i:03d}-{loaded[i % len(loaded)].brief_id}", "target_words": target_words}
        )
        for i in range(count)
    ]


def shipped_adapters(settings: Settings) -> list[AdapterRef]:
    """The adapter each shipped style serves."""
    catalog = StyleCatalog.for_settings(settings)
    refs = []
    for name in catalog.names:
        style = catalog.get(name)
        if style.adapter is not None and style.adapter_dir is not None:
            refs.append(adapter_ref(style, style.adapter))
    return refs


def synthetic_adapters(settings: Settings, count: int) -> list[AdapterRef]:
    """``count`` distinct adapters: the shipped ones first, then perturbed copies of them."""
    refs = shipped_adapters(settings)
    if count <= len(refs):
        return refs[:count]
    root = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    generator = torch.Generator().manual_seed(0)
    for index in range(len(refs), count):
        source = refs[index % len(refs)]
        target = root / f"style-{index}"
        shutil.copytree(source.directory, target)
        weights = load_file(str(target / ADAPTER_WEIGHTS))
        for key, value in weights.items():
            noise = torch.randn(value.shape, generator=generator).to(value.dtype)
            weights[key] = value * (1 + 0.3 * noise)
        save_file(weights, str(target / ADAPTER_WEIGHTS))
        refs.append(AdapterRef(f"style-{index}", "v1", target))
    return refs


def engine_requests(
    settings: Settings, rows: int, new_tokens: int, *, styles: int = 3, prefix: str = "r"
) -> list[GenerationRequest]:
    """``rows`` requests for the sample briefs with each routed style's sampling settings; adapters are
    assigned round-robin over ``styles`` distinct adapters (0: base model only)."""
    catalog = StyleCatalog.for_settings(settings)
    renderer = PromptRenderer(settings.templates_dir)
    adapters = synthetic_adapters(settings, styles) if styles else []
    requests = []
    for i, brief in enumerate(sample_briefs(rows, max(50, int((new_tokens - 24) / 1.5)))):
        style = catalog.get(route(brief, catalog, settings.default_style).style)
        generation = style.generation
        row = RowSettings(
            generation.temperature,
            generation.top_p,
            generation.repetition_penalty,
            new_tokens,
            derive_seed(settings.seed, brief.brief_id, 1, 0),
        )
        adapter = adapters[i % len(adapters)] if adapters else None
        requests.append(GenerationRequest(f"{prefix}{i}", renderer.render(brief, style).messages(), row, adapter))
    return requests


def pipeline_requests(settings: Settings, briefs: int, new_tokens: int, candidates: int = 2) -> list[GenerationRequest]:
    """Requests as the pipeline makes them: each sample brief on its routed style's shipped adapter, with its
    style's sampling settings, ``candidates`` rows per brief (the same prompt, their own seeds)."""
    catalog = StyleCatalog.for_settings(settings)
    renderer = PromptRenderer(settings.templates_dir)
    adapters = {ref.style: ref for ref in shipped_adapters(settings)}
    requests = []
    for brief in sample_briefs(briefs, max(50, int((new_tokens - 24) / 1.5))):
        style = catalog.get(route(brief, catalog, settings.default_style).style)
        generation = style.generation
        messages = renderer.render(brief, style).messages()
        for index in range(candidates):
            seed = derive_seed(settings.seed, brief.brief_id, 1, index)
            row = RowSettings(generation.temperature, generation.top_p, generation.repetition_penalty, new_tokens, seed)
            adapter = adapters[style.name] if style.adapter is not None else None  # a served adapter is never lost
            requests.append(GenerationRequest(f"{brief.brief_id}#{index}", messages, row, adapter))
    return requests


def chat_prompts(settings: Settings, briefs: list[Brief], tokenizer: Any) -> list[str]:
    """The exact prompt text of each brief under its routed style."""
    catalog = StyleCatalog.for_settings(settings)
    renderer = PromptRenderer(settings.templates_dir)
    prompts = []
    for brief in briefs:
        style = catalog.get(route(brief, catalog, settings.default_style).style)
        messages = renderer.render(brief, style).messages()
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return prompts


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing to wait for on the CPU."""
    if device == "cuda":
        torch.cuda.synchronize()


def naive_generate(
    settings: Settings,
    prompts: list[str],
    new_tokens: int,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    warm_up: bool = False,
) -> dict[str, Any]:
    """The naive baseline (a): one prompt at a time, plain ``model.generate`` (sampling, temperature 0.7, top-p 0.9)
    of the configured base model in ``dtype`` on ``device``; no scoring, no store. ``warm_up``: first 8 untimed
    tokens on the first prompt (the model's first call pays one-offs)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = resolve_base_model(settings).directory
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device).eval()
    if warm_up and prompts:
        encoded = tokenizer(prompts[0], return_tensors="pt", add_special_tokens=False).to(device)
        with torch.inference_mode():
            model.generate(**encoded, max_new_tokens=8, do_sample=True, temperature=0.7, top_p=0.9)
    tokens = 0
    synchronize(device)
    started = time.perf_counter()
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=new_tokens, do_sample=True, temperature=0.7, top_p=0.9)
        tokens += out.shape[1] - encoded["input_ids"].shape[1]
    synchronize(device)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "generated_tokens": tokens, "tokens_per_second": round(tokens / seconds, 1)}
