"""Generation stage: the base model (plus style adapters) turning prompts into raw text, in batches.

One :class:`Engine` per process loads the tokenizer and model once. :meth:`Engine.generate` takes requests
of any mix of styles, sorts them by prompt length, and runs them in batches of ``batch_size`` with left
padding; rows of different styles share a batch through PEFT's ``adapter_names``, and each row keeps its own
sampling settings and seed (see :mod:`worker.sampling`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worker.adapters import BASE, AdapterRef, AdapterRegistry
from worker.base_model import BaseModelSource, resolve_base_model
from worker.config import Settings
from worker.errors import ModelError
from worker.sampling import RowSampler, RowSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate."""

    key: str
    messages: list[dict[str, str]]
    settings: RowSettings
    adapter: AdapterRef | None = None


@dataclass(frozen=True)
class GenerationOutput:
    key: str
    text: str
    prompt_tokens: int
    new_tokens: int
    hit_eos: bool
    seconds: float  # wall time of the batch this row was generated in, shared by its rows


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelError("COPYDESK_DEVICE=cuda but no CUDA device is available; use auto or cpu")
    return setting


def pick_dtype(setting: str, device: str) -> torch.dtype:
    if setting == "float32":
        return torch.float32
    if setting == "bfloat16":
        return torch.bfloat16
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


class Engine:
    """The loaded base model, its tokenizer, and the style adapters attached to it."""

    def __init__(
        self,
        source: BaseModelSource,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        adapter_capacity: int = 8,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.source = source
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        started = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source.directory)
            model = AutoModelForCausalLM.from_pretrained(source.directory, dtype=dtype, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the base model from {source.directory}: {exc}") from exc
        self.model: Any = model.to(device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.adapters = AdapterRegistry(source.model_id, adapter_capacity)
        self.load_seconds = time.perf_counter() - started
        logger.info("loaded base model %s on %s (%s) in %.2f s", source.model_id, device, dtype, self.load_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = pick_device(settings.device)
        return cls(
            resolve_base_model(settings),
            device=device,
            dtype=pick_dtype(settings.dtype, device),
            batch_size=settings.batch_size,
        )

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The exact text the model sees: ``messages`` through the model's chat template."""
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def load_adapter(self, ref: AdapterRef) -> None:
        """Load (or touch) ``ref`` in the adapter registry; raises AdapterError for a bad adapter."""
        self.model = self.adapters.ensure(self.model, ref)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """Generate every request, batched; outputs come back in the order of ``requests``."""
        if len({r.key for r in requests}) != len(requests):
            raise ValueError("generation request keys must be unique: outputs are matched to requests by key")
        refs = list(dict.fromkeys(r.adapter for r in requests if r.adapter is not None))
        capacity = self.adapters.capacity
        if len(refs) > capacity:
            # More adapters than the registry keeps loaded at once: generate in groups of adapters that fit.
            # A row does not depend on its batch, so the texts are the same as in one call.
            grouped: dict[str, GenerationOutput] = {}
            for start in range(0, len(refs), capacity):
                group = set(refs[start : start + capacity])
                part = [r for r in requests if r.adapter in group or (start == 0 and r.adapter is None)]
                grouped.update((output.key, output) for output in self.generate(part))
            return [grouped[r.key] for r in requests]
        for ref in refs:
            self.load_adapter(ref)
        prompts = {r.key: self.chat_prompt(r.messages) for r in requests}
        ordered = sorted(requests, key=lambda r: len(prompts[r.key]))
        outputs: dict[str, GenerationOutput] = {}
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            for output in self._generate_batch(batch, [prompts[r.key] for r in batch]):
                outputs[output.key] = output
        return [outputs[r.key] for r in requests]

    def _generate_batch(self, batch: Sequence[GenerationRequest], prompts: list[str]) -> list[GenerationOutput]:
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(self.device)
        prompt_length = encoded["input_ids"].shape[1]
        eos = int(self.tokenizer.eos_token_id)
        sampler = RowSampler([r.settings for r in batch], prompt_length, eos)
        kwargs: dict[str, Any] = {}
        if self.adapters.loaded:
            kwargs["adapter_names"] = [r.adapter.name if r.adapter else BASE for r in batch]
        started = time.perf_counter()
        with torch.inference_mode():
            generated = self.model.generate(
                **encoded,
                max_new_tokens=max(r.settings.max_new_tokens for r in batch),
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                logits_processor=[sampler],
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=eos,
                **kwargs,
            )
        seconds = time.perf_counter() - started
        new = generated[:, prompt_length:]
        outputs = [
            self._output(request, new[row], encoded["attention_mask"][row], eos, seconds)
            for row, request in enumerate(batch)
        ]
        logger.debug("batch of %d rows, %d new tokens, %.2f s", len(batch), sum(o.new_tokens for o in outputs), seconds)
        return outputs

    def _output(
        self, request: GenerationRequest, new: torch.Tensor, mask: torch.Tensor, eos: int, seconds: float
    ) -> GenerationOutput:
        tokens = new.tolist()
        if eos in tokens:
            tokens = tokens[: tokens.index(eos)]
        # The sampler forces EOS at the last step of a row's budget: that is a cut, not a natural end.
        hit_eos = len(tokens) < request.settings.max_new_tokens - 1
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return GenerationOutput(request.key, text, int(mask.sum()), len(tokens), hit_eos, seconds)
