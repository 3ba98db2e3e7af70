"""Session-wide fixtures for the model tests: the tiny random llama and two real LoRA adapters for it, and the
same for one tiny model of each family of the engine's matrix (:func:`tiny_family`).

Import the fixtures into a test module (``from model_fixtures import tiny_model_dir``). The builds are
cached in this module, so that several test modules importing the fixtures still build each thing once.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny_model import FAMILIES, TINY_MODEL_ID, build_family_model, build_lora_adapter, build_tiny_model

_BUILT: dict[str, Path] = {}
# The family matrix of the engine tests: the tiny llama with the real SmolLM2 tokenizer, then one tiny model per family.
SMOLLM2 = "smollm2"
FAMILY_NAMES = (SMOLLM2, *FAMILIES)


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


def onednn_packs_bf16() -> bool:
    """Whether oneDNN packs a bf16 weight on this CPU: it needs AVX-512 (bw, vl, dq) or AVX-NE-CONVERT, so not on an
    AVX2-only CPU (nor under ``ONEDNN_MAX_CPU_ISA=AVX2``), where bf16 layers stay plain and only fp32 ones pack."""
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros(8, 8, dtype=torch.bfloat16), 32)
    except RuntimeError:
        return False
    return True


def copy_dir(source: Path, destination: Path) -> Path:
    """A private, writable copy of a session-wide directory (for tests that break or modify it)."""
    shutil.copytree(source, destination)
    return destination


@dataclass(frozen=True)
class TinyModel:
    """A tiny model of one family and two real LoRA adapters for it (seeds 1 and 2), on the family's targets."""

    family: str
    model_id: str
    model_dir: Path
    adapter_a_dir: Path
    adapter_b_dir: Path
    lora_targets: tuple[str, ...]


def tiny_family(name: str, factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny model of family ``name`` (a key of ``tiny_model.FAMILIES``, or ``"smollm2"``: the tiny llama with
    the real SmolLM2 tokenizer of :func:`tiny_model_dir`) and its adapters, built once per session. Read-only."""
    keys = ("adapter-a", "adapter-b") if name == SMOLLM2 else (f"{name}-adapter-a", f"{name}-adapter-b")
    if name == SMOLLM2:
        model_dir = _once("tiny-model", factory, build_tiny_model)
        model_id, targets = TINY_MODEL_ID, ("q_proj", "v_proj")
    else:
        family = FAMILIES[name]
        model_dir = _once(f"family-{name}", factory, lambda d: build_family_model(family, d))
        model_id, targets = family.model_id, family.lora_targets
    adapters = [
        _once(
            key,
            factory,
            lambda d, seed=seed: build_lora_adapter(  # type: ignore[misc]
                model_dir, d, base_model_id=model_id, seed=seed, target_modules=targets
            ),
        )
        for seed, key in zip((1, 2), keys, strict=True)
    ]
    return TinyModel(name, model_id, model_dir, adapters[0], adapters[1], targets)


__all__ = [
    "FAMILY_NAMES",
    "SMOLLM2",
    "TINY_MODEL_ID",
    "TinyModel",
    "adapter_a_dir",
    "adapter_b_dir",
    "copy_dir",
    "one_torch_thread",
    "tiny_family",
    "tiny_model_dir",
]
