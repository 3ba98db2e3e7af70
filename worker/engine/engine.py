"""Generation stage: the base model (plus style adapters) turning prompts into raw text, in batches.

One :class:`Engine` per process loads the tokenizer and model once. :meth:`Engine.generate` takes requests
of any mix of styles, sorts them by prompt length, and runs them in batches of ``batch_size`` with left
padding; rows of different styles share a batch (:mod:`worker.engine.lora_batch`), and each row keeps its own
sampling settings and seed (see :mod:`worker.engine.sampling`).

With exact rows (fp32 by default when constructed directly; ``exact_rows_for`` from the settings) a row's text does
not depend on the other rows of its batch: adapters mix through per-adapter sub-batches (PEFT's arithmetic), linear
layers run as packed oneDNN matmuls on the CPU (:mod:`worker.engine.packed_linear`), and attention runs on SDPA's
math kernel, each chosen because its results for a row do not depend on the batch size or padding on the CPUs
measured (MKL's and the flash kernel's do on AVX2). Without them (bf16, and fp32 where ``exact_rows=False``) the
fast paths serve: concatenated LoRA products, shared prefixes, grouped projections, each prompt's cache attended
once, the lean decode step; they round a row's last bits by its batch, so a near-tie may pick another token.

Nothing here is specific to one model family: Llama/SmolLM, Qwen2, Gemma 3 and Phi-3 are tested, and a model the
engine would decode wrongly is refused at load with the reason (:mod:`worker.engine.families`, docs/models.md).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from worker.config import Settings
from worker.engine.adapters import BASE, AdapterRef, AdapterRegistry
from worker.engine.allocator import retain_freed_memory
from worker.engine.base_model import BaseModelSource, resolve_base_model
from worker.engine.decode_step import DecodeStep, decode_step_for
from worker.engine.families import check_family, probe_once
from worker.engine.grouped_projections import forget_outputs, ungroup_unshared
from worker.engine.grouped_projections import group_projections as group_model_projections
from worker.engine.lora_batch import GroupedLora, grouped_lora
from worker.engine.packed_linear import contiguous_head_input, pack_linears
from worker.engine.placement import batch_size_for, exact_rows_for, pick_device, pick_dtype
from worker.engine.prefix_passes import ModelCall, fill_shared_prefixes
from worker.engine.prefix_sharing import DistinctRows, distinct_rows
from worker.engine.sampling import RowSampler, RowSettings
from worker.errors import ModelError

logger = logging.getLogger(__name__)

# Prompt width granularity of exact (fp32) batches: see Engine._pad_multiple.
EXACT_PAD_MULTIPLE = 64


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


def _packs_well(distinct: DistinctRows) -> bool:
    """Whether attending each prompt once pays (:mod:`worker.engine.prompt_attention`): its packed queries (prompts
    times the most rows any prompt has) stay within a quarter more than the rows; one prompt with many rows beside
    single ones would pad every prompt to its count."""
    counts = Counter(distinct.of_row)
    return len(counts) * max(counts.values()) <= 1.25 * len(distinct.of_row)


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
        share_prefixes: bool = True,
        share_prompts: bool = True,
        packed_matmuls: bool = True,
        group_projections: bool = True,
        lean_decode: bool = True,
        exact_rows: bool | None = None,
    ) -> None:
        self.source = source
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.exact_rows = dtype == torch.float32 if exact_rows is None else exact_rows
        if self.exact_rows and dtype != torch.float32:
            raise ModelError(f"exact rows need float32, not {dtype}: reduced precision rounds a row by its batch")
        # Shared prompt prefixes are computed once per batch (worker.engine.prefix_sharing); exact rows never do,
        # since they promise that a row's text does not depend on the other rows of its batch.
        self.share_prefixes = share_prefixes and not self.exact_rows
        # Rows with the same whole prompt on the same adapter are prefilled once (with exact rows the copied prompt
        # is, to the bit, the one the row would compute; otherwise it may round as a smaller batch does). Off only to
        # measure what it saves (bench/prefix_sharing.py).
        self.share_prompts = share_prompts
        started = time.perf_counter()
        self._load(source, device, dtype)
        contiguous_head_input(self.model)
        # On the CPU (fp32, bf16): linear layers as packed oneDNN matmuls (faster; in fp32 batch-invariant too).
        self.packed_matmuls = packed_matmuls and device == "cpu" and dtype in (torch.float32, torch.bfloat16)
        # Without exact rows, q/k/v and gate/up as one product each (worker.engine.grouped_projections); exact rows
        # keep them apart, since the grouped product may round a row differently from the separate ones.
        self.grouped_projections = group_projections and not self.exact_rows
        if self.grouped_projections:
            group_model_projections(self.model, batch_size, pack=self.packed_matmuls)
        self._pack()
        self._check_family()
        # Without exact rows on the CPU, decode steps read each distinct prompt's cache once for all its rows
        # (worker.engine.prompt_attention); exact rows keep one cache row per row. Benchmarks set it off.
        from worker.engine.prompt_attention import supports

        self.attend_prompts_once = device == "cpu" and not self.exact_rows and supports(self.model)
        # Those decode steps run through worker.engine.decode_step (the same operations without transformers' module
        # calls) where it reproduces the model's forward; benchmarks set it off to compare.
        self.lean_decode = lean_decode
        if self.grouped_projections:
            self._undo_unshared_groups()
        self.adapters = AdapterRegistry(source.model_id, adapter_capacity, source.weights_hash)
        self.load_seconds = time.perf_counter() - started
        logger.info("loaded base model %s on %s (%s) in %.2f s", source.model_id, device, dtype, self.load_seconds)

    def _load(self, source: BaseModelSource, device: str, dtype: torch.dtype) -> None:
        """The tokenizer (left padding; EOS pads where it has no padding token) and the model, in eval mode."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source.directory)
            model = AutoModelForCausalLM.from_pretrained(source.directory, dtype=dtype, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the base model from {source.directory}: {exc}") from exc
        self.model: Any = model.to(device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # transformers 5 renamed the forward argument of the KV cache; accept both spellings.
        self._cache_argument = (
            "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
        )

    def _undo_unshared_groups(self) -> None:
        """One short forward shows which groups' members read one input; the others are undone (the load probe
        cannot tell: it runs once per model kind and process)."""
        if next(self.model.parameters()).is_meta:
            return
        ids = torch.full((1, 4), int(self.tokenizer.eos_token_id), device=self.device)
        with torch.inference_mode():
            self.model(input_ids=ids, use_cache=False, logits_to_keep=1)
        forget_outputs(self.model)
        if ungroup_unshared(self.model):
            self._pack()

    def _check_family(self) -> None:
        """Refuse at load, with the reason, a model this engine would decode wrongly (:mod:`worker.engine.families`)."""
        check_family(self.model, self.tokenizer)
        try:
            with self._attention_kernels():
                error = probe_once(self.model, self._cache_argument)
        except ModelError:
            raise
        except Exception as exc:  # a model's forward raises many types on inputs it cannot take
            family = getattr(self.model.config, "model_type", "?")
            raise ModelError(
                f"the engine cannot serve this {family!r} model: decoding through its KV cache failed: {exc}"
            ) from exc
        if error is not None:
            logger.debug("cached decoding probe of %s: relative difference %.2g", self.source.model_id, error)

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        if settings.retain_freed_memory:
            retain_freed_memory()
        device = pick_device(settings.device)
        return cls(
            resolve_base_model(settings),
            device=device,
            dtype=pick_dtype(settings.dtype, device),
            batch_size=batch_size_for(settings),
            exact_rows=exact_rows_for(settings),
        )

    @property
    def _pad_multiple(self) -> int | None:
        """Exact rows pad every batch's prompts to a multiple of :data:`EXACT_PAD_MULTIPLE` columns.

        A decode step's attention reduces over the cache's columns in vector lanes, so its rounding depends on where
        a row's tokens fall modulo the lane width; left padding shifts them by the batch's longest prompt. With the
        width a multiple of 64, a row's tokens fall on the same lanes alone and in any batch (measured on AVX-512:
        shifts by multiples of 8 keep the bits, others do not). Costs up to 63 masked prefill columns; fp32 only.
        """
        return EXACT_PAD_MULTIPLE if self.exact_rows else None

    def _attention_kernels(self) -> contextlib.AbstractContextManager[None]:
        """Exact rows run attention on SDPA's math kernel: the CPU flash kernel's sums depend on the padded length
        (on AVX2 a row then differs alone and in a batch); the math kernel's do not. bf16 keeps the fast kernel."""
        if not self.exact_rows:
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The exact text the model sees: ``messages`` through the model's chat template."""
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def load_adapter(self, ref: AdapterRef) -> None:
        """Load (or touch) ``ref`` in the adapter registry; raises AdapterError for a bad adapter."""
        newly_loaded = ref.name not in self.adapters.loaded
        self.model = self.adapters.ensure(self.model, ref)
        if newly_loaded:  # only a new adapter brings unpacked layers; generate() touches every adapter per call
            self._pack()

    def _pack(self) -> None:
        if self.packed_matmuls:
            pack_linears(self.model, self.batch_size)

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
        # By length, then text: rows with one prompt (a brief's candidates) stay in one batch, prefilled once.
        ordered = sorted(requests, key=lambda r: (len(prompts[r.key]), prompts[r.key]))
        outputs: dict[str, GenerationOutput] = {}
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            for output in self._generate_batch(batch, [prompts[r.key] for r in batch]):
                outputs[output.key] = output
        return [outputs[r.key] for r in requests]

    def _generate_batch(self, batch: Sequence[GenerationRequest], prompts: list[str]) -> list[GenerationOutput]:
        encoded = self.tokenizer(
            prompts, return_tensors="pt", padding=True, pad_to_multiple_of=self._pad_multiple, add_special_tokens=False
        )
        # Each row's prompt without its padding, read from the tokenizer's CPU tensors (no copy back from a device).
        rows = zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
        tokens = [ids[row_mask.bool()].tolist() for ids, row_mask in rows]
        input_ids = encoded["input_ids"].to(self.device)
        mask = encoded["attention_mask"].to(self.device)
        eos = int(self.tokenizer.eos_token_id)
        sampler = RowSampler([r.settings for r in batch], input_ids.shape[1], eos)
        names = [r.adapter.name if r.adapter else BASE for r in batch] if self.adapters.loaded else None
        started = time.perf_counter()
        try:
            with torch.inference_mode(), self._attention_kernels():
                budget = max(r.settings.max_new_tokens for r in batch)
                new = self._decode(input_ids, mask, tokens, sampler, names, budget)
        finally:
            if self.grouped_projections:
                forget_outputs(self.model)  # nothing of this batch stays referenced
        seconds = time.perf_counter() - started
        outputs = [self._output(request, new[row], len(tokens[row]), eos, seconds) for row, request in enumerate(batch)]
        logger.debug("batch of %d rows, %d new tokens, %.2f s", len(batch), sum(o.new_tokens for o in outputs), seconds)
        return outputs

    def _decode(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        tokens: list[list[int]],
        sampler: RowSampler,
        names: list[str] | None,
        max_new_tokens: int,
    ) -> list[list[int]]:
        """Sample up to ``max_new_tokens`` per row (``tokens``: each row's prompt without padding); a row leaves the
        batch once it has ended.

        The loop keeps its own preallocated KV cache (no copy of the whole cache per step, unlike
        ``generate``'s dynamic cache). Rows that repeat another row's whole prompt on the same adapter (the
        candidates of one brief) are prefilled once (:func:`worker.engine.prefix_sharing.distinct_rows`); their cache
        is then copied to each of them before the first token is sampled or, without exact rows on the CPU, kept once
        and attended by all its rows together (:mod:`worker.engine.prompt_attention`). Without exact rows, prompt
        prefixes that rows of one adapter share are computed once and copied into their cache slots too
        (:mod:`worker.engine.prefix_sharing`). With exact rows a row's tokens do not depend on any of this (a row
        keeps its bits in any batch, so the copied prompt is the one it would have computed). Finished rows are
        dropped from the batch (cache, ids, mask and adapter names) as soon as they are a quarter of it, so they stop
        costing compute. Rows of different styles share the batch
        through :mod:`worker.engine.lora_batch` (PEFT's ``adapter_names`` for adapters it does not handle). Returns
        each row's new tokens, ending with EOS when it ended.
        """
        from worker.engine.kv_cache import preallocated_cache

        # Repetition penalty over the row's real tokens only: a padding slot repeats the row's last prompt token.
        history = torch.where(mask.bool(), input_ids, input_ids[:, -1:])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        distinct = distinct_rows(tokens, names or [BASE] * len(tokens)) if self.share_prompts else None
        once = distinct is not None and self.attend_prompts_once and _packs_well(distinct)
        cache = preallocated_cache(self.model, input_ids.shape[1] + (0 if once else max_new_tokens))
        ids, prompt_mask, prompt_positions, prompt_tokens, prompt_names = input_ids, mask, positions, tokens, names
        if distinct is not None:  # one row per distinct prompt and adapter
            first = torch.tensor(distinct.first, device=input_ids.device)
            ids, prompt_mask, prompt_positions = input_ids[first], mask[first], positions[first]
            prompt_tokens = [tokens[i] for i in distinct.first]
            prompt_names = [names[i] for i in distinct.first] if names is not None else None
        # Shared prefixes run first: their single-row passes install and remove their own LoRA forwards.
        start = self._prefill_shared_prefixes(ids, prompt_tokens, prompt_names, cache) if self.share_prefixes else 0
        grouped = grouped_lora(self.model, prompt_names, exact=self.exact_rows) if prompt_names is not None else None
        try:
            logits = self._forward(
                ids[:, start:], prompt_mask, prompt_positions[:, start:], prompt_names, grouped, cache
            )
            attention: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if distinct is not None:  # every row now gets its prompt's cache and first logits
                logits, cache, attention = self._spread_prompts(
                    distinct.of_row, logits, prompt_mask, grouped, cache, once, max_new_tokens
                )
            # PEFT's own mixed batches (names without a grouped LoRA) need its hooks, inside the model's forward.
            lean = decode_step_for(self.model) if once and self.lean_decode and (names is None or grouped) else None
            with attention:
                return self._decode_steps(
                    logits, mask, positions, history, sampler, names, grouped, cache, max_new_tokens, lean
                )
        finally:
            if grouped is not None:
                grouped.close()

    def _spread_prompts(
        self,
        of_row: Sequence[int],
        logits: torch.Tensor,
        prompt_mask: torch.Tensor,
        grouped: GroupedLora | None,
        cache: Any,
        once: bool,
        max_new_tokens: int,
    ) -> tuple[torch.Tensor, Any, contextlib.AbstractContextManager[None]]:
        """Every row gets the first logits and the cache of its prompt (``of_row``: the prefill row of each row):
        the cache copied to each row or, with ``once``, kept once per prompt and attended by its rows together inside
        the returned context (:mod:`worker.engine.prompt_attention`)."""
        from worker.engine.prompt_attention import attending_prompts_once, shared_prompt_cache

        rows = torch.tensor(list(of_row), device=logits.device)
        if grouped is not None:
            grouped.keep(rows)
        if not once:
            cache.batch_select_indices(rows)
            return logits[rows], cache, contextlib.nullcontext()
        cache = shared_prompt_cache(cache, prompt_mask, rows, max_new_tokens)
        return logits[rows], cache, attending_prompts_once(self.model, cache)

    def _forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        names: list[str] | None,
        grouped: GroupedLora | None,
        cache: Any,
    ) -> torch.Tensor:
        """One forward of the batch through the cache; the last position's logits."""
        kwargs: dict[str, Any] = {self._cache_argument: cache}
        if names is not None and grouped is None:
            kwargs["adapter_names"] = names  # PEFT's own mixed-batch path
        output = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
        return output.logits[:, -1, :]

    def _prefill_shared_prefixes(
        self, input_ids: torch.Tensor, tokens: list[list[int]], names: list[str] | None, cache: Any
    ) -> int:
        """The batch's shared prompt prefixes into ``cache`` (:mod:`worker.engine.prefix_passes`); returns the first
        column the batch forward still has to compute. ``tokens``: each row's prompt without padding."""
        call = ModelCall(self.model, self.device, self._cache_argument, self.exact_rows)
        return fill_shared_prefixes(call, cache, input_ids.shape[1], tokens, names)

    def _decode_steps(
        self,
        logits: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        history: torch.Tensor,
        sampler: RowSampler,
        names: list[str] | None,
        grouped: GroupedLora | None,
        cache: Any,
        max_new_tokens: int,
        lean: DecodeStep | None = None,
    ) -> list[list[int]]:
        """Sample from the prefill's ``logits``, then one forward per new token until every row has ended (through
        ``lean`` when given: the shared-prompt cache's lean decode step)."""
        eos = sampler.eos_token_id
        generated: list[list[int]] = [[] for _ in range(mask.shape[0])]
        active = torch.arange(mask.shape[0])  # sampler rows still in the batch, in batch order
        ended = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)  # per batch slot
        for step in range(max_new_tokens):
            chosen = sampler.sample(history, logits, active)
            chosen = torch.where(ended, eos, chosen)
            for token, done, row in zip(chosen.tolist(), ended.tolist(), active.tolist(), strict=True):
                if not done:
                    generated[row].append(token)
            ended |= chosen == eos
            if bool(ended.all()) or step == max_new_tokens - 1:
                return generated
            history = torch.cat([history, chosen.unsqueeze(1)], dim=1)
            if lean is None:  # the lean step reads no mask: its cache masks the prompts' padding itself
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            step_ids = chosen.unsqueeze(1)
            positions = positions[:, -1:] + 1
            if int(ended.sum()) * 4 >= ended.shape[0]:
                # Finished rows leave the batch: a quarter of it at a time, so the copies stay cheap.
                keep = (~ended).nonzero().flatten()
                cache.batch_select_indices(keep)
                if grouped is not None:
                    grouped.keep(keep)
                history, mask, step_ids, positions = history[keep], mask[keep], step_ids[keep], positions[keep]
                active = active[keep.cpu()]
                names = [names[i] for i in keep.tolist()] if names is not None else None
                ended = ended[keep]
            if lean is not None:
                logits = lean.logits(step_ids, positions, cache)
            else:
                logits = self._forward(step_ids, mask, positions, names, grouped, cache)
        return generated

    def _output(
        self, request: GenerationRequest, tokens: list[int], prompt_tokens: int, eos: int, seconds: float
    ) -> GenerationOutput:
        if eos in tokens:
            tokens = tokens[: tokens.index(eos)]
        # The sampler forces EOS at the last step of a row's budget: that is a cut, not a natural end.
        hit_eos = len(tokens) < request.settings.max_new_tokens - 1
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return GenerationOutput(request.key, text, prompt_tokens, len(tokens), hit_eos, seconds)
