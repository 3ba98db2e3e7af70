"""Where and how wide the engine runs: its device, its dtype, and the batch and flush sizes that follow from them.

``auto`` picks CUDA when a GPU is there, else the CPU; bf16 where the hardware has bf16 units (AMX or AVX-512 BF16 on
the CPU; fp16 on a GPU without bf16), else fp32. Exact rows (batch-invariant fp32) where float32 is set, the batch's
fast paths otherwise (:func:`exact_rows_for`); the default batch size follows that mode (docs/benchmarks.md), and
the writer flushes half a batch: a brief's two candidates fill one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from worker.config import Settings
from worker.errors import ModelError


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX-512 BF16)."""
    flags = read_cpuinfo()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_has_amx() -> bool:
    """True when the CPU has AMX's bf16 tiles (some kernels' best layout differs there)."""
    return "amx_bf16" in read_cpuinfo()


def read_cpuinfo() -> str:
    """``/proc/cpuinfo``'s text, or ``""`` where there is none (not Linux): the one place the project reads it."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return ""


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


def exact_rows_for(settings: Settings) -> bool:
    """Whether the engine promises rows that do not depend on their batch: ``settings.exact_rows``, or when unset,
    exactly where ``dtype`` is set to float32. ``auto`` runs float32 on a CPU without bf16 units with the batch's fast
    paths, as it runs bf16 elsewhere (docs/benchmarks.md: exact rows cost ~2x there). Exact rows need float32."""
    dtype = pick_dtype(settings.dtype, pick_device(settings.device))
    exact = settings.dtype == "float32" if settings.exact_rows is None else settings.exact_rows
    if exact and dtype != torch.float32:
        raise ModelError(f"exact rows need float32, and dtype {settings.dtype} runs {dtype} here: set COPYDESK_DTYPE")
    return exact


# Batch sizes picked from the scale curve (docs/benchmarks.md): the fast paths gain up to 128 rows (bf16: 2.1x batch
# 32 at 256 new tokens on 2 AMX cores; float32 on the AVX2 profile: 1.10x 64 rows, bench/exact_rows.py); exact rows
# stay at 32, where a 64-brief task on a 2-core AVX2 machine (~40 tok/s) would run past the task's soft time limit.
# A 128-row float32 task with 640-token budgets runs ~340 s a round on that profile: a slower CPU may pass the soft
# limit, and such a task is queued again in halves (COPYDESK_BATCH_SIZE/FLUSH_SIZE shorten it).
EXACT_ROWS_BATCH_SIZE = 32
FAST_PATHS_BATCH_SIZE = 128


def batch_size_for(settings: Settings) -> int:
    """``settings.batch_size``, or when unset the default for the engine's mode (:func:`exact_rows_for`)."""
    if settings.batch_size is not None:
        return settings.batch_size
    return EXACT_ROWS_BATCH_SIZE if exact_rows_for(settings) else FAST_PATHS_BATCH_SIZE


def flush_size_for(settings: Settings) -> int:
    """``settings.flush_size``, or when unset half the batch size: a brief's two candidates fill one batch."""
    if settings.flush_size is not None:
        return settings.flush_size
    return max(1, batch_size_for(settings) // 2)
