"""The on-disk layout of a style's adapter versions: the one place that names its folders and files.

::

    styles/<name>/style.yaml
    styles/<name>/adapters/v1/        one trained version (PEFT LoRA, standard layout) and what copydesk adds
    styles/<name>/adapters/v2/ ...
    styles/<name>/adapters/_staging-*/ and run-*/   training in progress (never served)

Every module that reads or writes a version folder takes its names from here, and builds the adapter
reference the engine loads with :func:`adapter_ref`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from worker.engine.adapters import ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS, AdapterRef

ADAPTERS_SUBDIR = "adapters"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TRAINING_FILE = "training.json"
METRICS_FILE = "metrics.json"
PROFILE_FILE = "profile.json"
HELDOUT_FILE = "heldout.jsonl"
FEATURES_FILE = "corpus_features.safetensors"
NGRAMS_FILE = "corpus_ngrams.safetensors"
RUN_FILE = "run.json"
VERSION_FILES = (
    ADAPTER_CONFIG,  # PEFT LoRA config (standard layout: vLLM / LoRAX load it)
    ADAPTER_WEIGHTS,  # LoRA weights, safetensors only
    CHAT_TEMPLATE_FILE,  # the chat template the prompts were rendered with
    ADAPTER_META,  # base model id and weights hash, corpus hash and size, copydesk version
    TRAINING_FILE,  # the training configuration
    METRICS_FILE,  # losses per epoch, best epoch, perplexities
    PROFILE_FILE,  # the corpus's measured profile and the default targets derived from it
    HELDOUT_FILE,  # the held-out articles (brief + text), for `copydesk styles eval`
    FEATURES_FILE,  # per-article stylometric features and MiniLM embeddings (style classifier, fidelity)
    NGRAMS_FILE,  # hashed word 8-grams of every trained-on text (the memorisation guard)
)
VERSION_NAME = re.compile(r"^v[0-9]+$")

__all__ = [
    "ADAPTERS_SUBDIR",
    "ADAPTER_CONFIG",
    "ADAPTER_META",
    "ADAPTER_WEIGHTS",
    "CHAT_TEMPLATE_FILE",
    "FEATURES_FILE",
    "HELDOUT_FILE",
    "METRICS_FILE",
    "NGRAMS_FILE",
    "PROFILE_FILE",
    "RUN_FILE",
    "TRAINING_FILE",
    "VERSION_FILES",
    "VERSION_NAME",
    "StyleOnDisk",
    "adapter_ref",
    "is_version_name",
    "list_version_names",
    "version_dir",
    "versions_dir",
]


class StyleOnDisk(Protocol):
    """What the layout needs of a style: its name and folder (:class:`worker.styles.catalog.Style` has both)."""

    @property
    def name(self) -> str: ...

    @property
    def directory(self) -> Path: ...


def is_version_name(name: object) -> bool:
    """``v1``, ``v2``, ...: the only folder names that are versions."""
    return isinstance(name, str) and VERSION_NAME.match(name) is not None


def versions_dir(style: StyleOnDisk) -> Path:
    """The folder holding every version of ``style``."""
    return style.directory / ADAPTERS_SUBDIR


def version_dir(style: StyleOnDisk, version: str) -> Path:
    """The folder of one version (``version`` must look like ``vN``: it is never taken as a path)."""
    if not is_version_name(version):
        raise ValueError(f"adapter version {version!r} must look like v1, v2, ...")
    return versions_dir(style) / version


def list_version_names(style: StyleOnDisk) -> list[str]:
    """``v1``, ``v2``, ... present under the style's adapters folder, in numeric order."""
    root = versions_dir(style)
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if p.is_dir() and is_version_name(p.name)]
    return sorted(found, key=lambda name: int(name[1:]))


def adapter_ref(style: StyleOnDisk, version: str) -> AdapterRef:
    """The reference the engine loads for ``version`` of ``style``."""
    return AdapterRef(style.name, version, version_dir(style, version))
