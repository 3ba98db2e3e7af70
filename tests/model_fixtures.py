"""Session-wide fixtures for the model tests: the tiny random llama and two real LoRA adapters for it.

Import the fixtures into a test module (``from model_fixtures import tiny_model_dir``). The builds are
cached in this module, so that several test modules importing the fixtures still build each thing once.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tiny_model import TINY_MODEL_ID, build_lora_adapter, build_tiny_model

_BUILT: dict[str, Path] = {}


def _once(key: str, factory: pytest.TempPathFactory, build: object) -> Path:
    if key not in _BUILT:
        directory = factory.mktemp(key)
        _BUILT[key] = build(directory)  # type: ignore[operator]
    return _BUILT[key]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's model tests on one torch thread, restoring the setting afterwards.

    The tiny model's matrices are far too small to gain from threads, and on a busy 2-core machine
    torch's spinning worker threads make each generation step 10-30 times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-layer llama with the real SmolLM2 tokenizer, built once per session. Treat it as read-only."""
    return _once("tiny-model", tmp_path_factory, build_tiny_model)


@pytest.fixture(scope="session")
def adapter_a_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A real LoRA adapter (seed 1) for the tiny model. Treat it as read-only."""
    return _once("adapter-a", tmp_path_factory, lambda d: build_lora_adapter(tiny_model_dir, d, seed=1))


@pytest.fixture(scope="session")
def adapter_b_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A second real LoRA adapter (seed 2) for the tiny model, with different weights. Read-only."""
    return _once("adapter-b", tmp_path_factory, lambda d: build_lora_adapter(tiny_model_dir, d, seed=2))


def copy_dir(source: Path, destination: Path) -> Path:
    """A private, writable copy of a session-wide directory (for tests that break or modify it)."""
    shutil.copytree(source, destination)
    return destination


__all__ = ["TINY_MODEL_ID", "adapter_a_dir", "adapter_b_dir", "copy_dir", "one_torch_thread", "tiny_model_dir"]
