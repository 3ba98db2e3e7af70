"""The allocator tuning: both thresholds set once per process, and far fewer page faults where buffers grow."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from worker.engine import allocator
from worker.engine.allocator import retain_freed_memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")

# A decode loop's pattern: buffers a little larger every step (the cache, the batch's activations), freed each step.
GROWING_BUFFERS = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from worker.engine.allocator import retain_freed_memory
    assert retain_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(20):
    buffers = [torch.ones((8 << 20) + step * (64 << 10), dtype=torch.uint8) for _ in range(2)]
    del buffers
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", GROWING_BUFFERS, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    return int(result.stdout.strip().splitlines()[-1])


def fake_mallopt(monkeypatch: pytest.MonkeyPatch, refuse: set[int] | None = None) -> list[tuple[int, int]]:
    """Record mallopt's calls instead of making them (this test process's allocator stays as it is)."""
    calls: list[tuple[int, int]] = []

    def mallopt(parameter: int, value: int) -> int:
        calls.append((parameter, value))
        return 0 if parameter in (refuse or set()) else 1

    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: mallopt)
    return calls


def test_both_thresholds_are_set_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_mallopt(monkeypatch)
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True
    assert calls == [(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD), (allocator.M_TRIM_THRESHOLD, 1 << 30)]


def test_a_refused_mmap_threshold_sets_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_mallopt(monkeypatch, refuse={allocator.M_MMAP_THRESHOLD})
    assert retain_freed_memory() is False
    assert calls == [(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD)]  # no trim threshold after it
    assert allocator._applied is False


def test_without_glibc_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: None)
    assert retain_freed_memory() is False


@glibc_only
def test_glibcs_mallopt_is_found() -> None:
    assert allocator._glibc_mallopt() is not None


@glibc_only
def test_growing_buffers_fault_far_less_when_freed_memory_is_kept() -> None:
    default, retained = page_faults("default"), page_faults("retain")
    # 20 steps of two ~8 MiB buffers: the default maps each one afresh (~80,000 faults); kept, they are reused.
    assert retained * 2 < default, (default, retained)
