"""Style folders whose adapter versions record different base models, for the per-base tests, without a model.

A version written here is a valid LoRA adapter folder to :func:`worker.engine.adapters.check_adapter` (a LORA
config, a small finite safetensors file, the copydesk metadata naming its base model): enough for resolving,
promoting and listing, never loaded into a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from worker.engine.adapters import ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS
from worker.styles.layout import PROFILE_FILE

BASE_A = "base-a"
BASE_B = "base-b"


def write_version(
    style_dir: Path,
    version: str,
    base: str | None,
    *,
    weights_sha256: str | None = None,
    reading_ease: tuple[float, float] | None = None,
) -> Path:
    """``style_dir/adapters/<version>/`` trained on ``base`` (``None``: an old version that records no base model),
    with ``reading_ease`` as its corpus profile's target when given."""
    directory = style_dir / "adapters" / version
    directory.mkdir(parents=True)
    config: dict[str, Any] = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
    if base is not None:
        config["base_model_name_or_path"] = base
        meta = {"base_model_id": base, "base_model_weights_sha256": weights_sha256, "version": version}
        (directory / ADAPTER_META).write_text(json.dumps(meta))
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config))
    save_file({"base_model.model.q_proj.lora_A.weight": torch.ones(2, 4)}, str(directory / ADAPTER_WEIGHTS))
    if reading_ease is not None:
        (directory / PROFILE_FILE).write_text(json.dumps({"profile": {}, "targets": {"reading_ease": reading_ease}}))
    return directory


def write_style(root: Path, name: str, lines: str) -> Path:
    """``root/<name>/style.yaml`` with a comment, the required fields and ``lines`` (the ``adapter:`` line, a
    ``canary:`` line ...); returns the file."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "style.yaml"
    path.write_text(f"# {name}: this comment survives every promote\nname: {name}\ndescription: d\ngates: []\n{lines}")
    return path


def two_base_style(root: Path, lines: str = "adapter: {base-a: v1, base-b: v2}  # per base\n") -> Path:
    """Style ``duo``: v1 and v3 trained on base-a, v2 on base-b (reading ease targets 10-20, 30-40, 50-60)."""
    path = write_style(root, "duo", lines)
    write_version(path.parent, "v1", BASE_A, reading_ease=(10, 20))
    write_version(path.parent, "v2", BASE_B, reading_ease=(30, 40))
    write_version(path.parent, "v3", BASE_A, reading_ease=(50, 60))
    return path
