"""The allocator tuning: set once per process, and fewer page faults where buffers grow from step to step."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

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
        [sys.executable, "-c", GROWING_BUFFERS, mode], capture_output=True, text=True, check=True, timeout=120
    )
    return int(result.stdout.strip().splitlines()[-1])


@glibc_only
def test_thresholds_are_set_once_per_process() -> None:
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True


@glibc_only
def test_growing_buffers_fault_far_less_when_freed_memory_is_kept() -> None:
    default, retained = page_faults("default"), page_faults("retain")
    # 20 steps of two ~8 MiB buffers: the default maps each one afresh (~80,000 faults); kept, they are reused.
    assert retained * 2 < default, (default, retained)
