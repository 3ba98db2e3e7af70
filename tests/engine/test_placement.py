"""Unit tests of :mod:`worker.engine.placement`: the engine's device, dtype, and batch and flush sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import worker.engine.placement as placement
from worker.engine.placement import batch_size_for, flush_size_for, pick_device, pick_dtype
from worker.errors import ModelError


def test_pick_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(ModelError, match="no CUDA device"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    assert pick_device("cuda") == "cuda"


def test_pick_device_auto_matches_this_machine() -> None:
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_batch_and_flush_sizes_follow_the_dtype_unless_set() -> None:
    from worker.config import load_settings

    assert (batch_size_for(load_settings(dtype="float32")), flush_size_for(load_settings(dtype="float32"))) == (32, 16)
    bf16 = load_settings(dtype="bfloat16")
    assert (batch_size_for(bf16), flush_size_for(bf16)) == (128, 64)
    assert batch_size_for(load_settings(dtype="bfloat16", batch_size=8)) == 8
    assert flush_size_for(load_settings(dtype="float32", batch_size=8)) == 4
    assert flush_size_for(load_settings(dtype="bfloat16", flush_size=3)) == 3
    assert flush_size_for(load_settings(batch_size=1)) == 1


def test_exact_rows_where_float32_is_set_and_the_fast_paths_where_auto_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.config import load_settings

    monkeypatch.setattr(placement, "cpu_supports_bf16", lambda: False)  # a CPU without bf16 units: auto is float32
    exact_fp32 = load_settings(dtype="float32", device="cpu")
    assert placement.exact_rows_for(exact_fp32) is True  # evaluations, tests: the exact mode
    auto = load_settings(dtype="auto", device="cpu")
    assert placement.exact_rows_for(auto) is False and batch_size_for(auto) == 128
    fast = load_settings(dtype="float32", exact_rows=False, device="cpu")
    assert placement.exact_rows_for(fast) is False and (batch_size_for(fast), flush_size_for(fast)) == (128, 64)
    exact = load_settings(dtype="auto", exact_rows=True, device="cpu")
    assert placement.exact_rows_for(exact) is True and batch_size_for(exact) == 32
    monkeypatch.setattr(placement, "cpu_supports_bf16", lambda: True)  # auto is bf16 now: no exact rows in it
    assert placement.exact_rows_for(auto) is False
    with pytest.raises(ModelError, match="exact rows need float32"):
        placement.exact_rows_for(exact)


def test_pick_dtype_explicit() -> None:
    for device in ("cpu", "cuda"):
        assert pick_dtype("float32", device) is torch.float32
        assert pick_dtype("bfloat16", device) is torch.bfloat16


def test_pick_dtype_auto_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_dtype("auto", "cpu") is (torch.bfloat16 if placement.cpu_supports_bf16() else torch.float32)
    monkeypatch.setattr(placement, "cpu_supports_bf16", lambda: True)
    assert pick_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(placement, "cpu_supports_bf16", lambda: False)
    assert pick_dtype("auto", "cpu") is torch.float32


def test_pick_dtype_auto_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert pick_dtype("auto", "cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert pick_dtype("auto", "cuda") is torch.float16


def test_cpu_supports_bf16_reads_cpu_flags() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert placement.cpu_supports_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)


def test_cpu_has_amx_reads_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert placement.cpu_has_amx() == ("amx_bf16" in flags)
    amx = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    monkeypatch.setattr(placement, "read_cpuinfo", lambda: amx)
    assert placement.cpu_has_amx() and placement.cpu_supports_bf16()
    monkeypatch.setattr(placement, "read_cpuinfo", lambda: "flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert not placement.cpu_has_amx() and placement.cpu_supports_bf16()
    monkeypatch.setattr(placement, "read_cpuinfo", lambda: "")  # no /proc/cpuinfo
    assert not placement.cpu_has_amx() and not placement.cpu_supports_bf16()
