"""Adapter versions of a style: list them with their metrics, and switch the served one (promote).

A style's versions are the folders ``styles/<name>/adapters/vN/`` written by training
(:mod:`worker.lab.training`). ``style.yaml``'s ``adapter:`` line pins the served version; :func:`promote`
rewrites that one line (comments and the rest of the file are kept), validates the result as a style
and replaces the file atomically (:func:`worker.files.write_atomic`). A version is only promoted after
:func:`worker.engine.adapters.check_adapter` accepts it for the configured base model, so an adapter
trained for another base model is refused.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.engine.adapters import ADAPTER_META, check_adapter
from worker.errors import AdapterError, StyleError
from worker.files import write_atomic
from worker.styles.catalog import STYLE_FILE, Style, load_style
from worker.styles.layout import METRICS_FILE, PROFILE_FILE, adapter_ref, list_version_names, versions_dir

logger = logging.getLogger(__name__)

UNPIN = ("none", "null", "base")
_ADAPTER_LINE = re.compile(r"^adapter:[^\S\n]*(?P<value>[^#\n]*?)(?P<rest>[^\S\n]+#[^\n]*)?[^\S\n]*$", re.MULTILINE)


@dataclass
class VersionInfo:
    """One adapter version as found on disk, with what training recorded about it."""

    version: str
    directory: Path
    served: bool
    meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why this version cannot serve (check_adapter's message), if it cannot

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "directory": str(self.directory),
            "served": self.served,
            "usable": self.problem is None,
            "problem": self.problem,
            "base_model_id": self.meta.get("base_model_id"),
            "created_at": self.meta.get("created_at"),
            "corpus": self.meta.get("corpus", {}),
            "metrics": self.metrics,
            "profile_targets": self.targets,
        }


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def version_info(style: Style, version: str, base_model_id: str | None) -> VersionInfo:
    directory = versions_dir(style) / version
    info = VersionInfo(
        version=version,
        directory=directory,
        served=style.adapter == version,
        meta=_json(directory / ADAPTER_META),
        metrics=_json(directory / METRICS_FILE),
        targets=_json(directory / PROFILE_FILE).get("targets", {}),
    )
    if base_model_id is not None:
        try:
            check_adapter(adapter_ref(style, version), base_model_id)
        except AdapterError as exc:
            info.problem = str(exc)
    return info


def list_versions(style: Style, base_model_id: str | None = None) -> list[VersionInfo]:
    """Every ``vN`` of the style in numeric order; with ``base_model_id`` each is checked for serving."""
    return [version_info(style, version, base_model_id) for version in list_version_names(style)]


def set_adapter_line(text: str, value: str | None) -> str:
    """``style.yaml`` text with its top-level ``adapter:`` set to ``value`` (``None``: null), comments kept."""
    rendered = value if value is not None else "null"
    matches = list(_ADAPTER_LINE.finditer(text))
    if len(matches) > 1:
        raise StyleError("style.yaml has more than one top-level `adapter:` line; fix it by hand")
    if not matches:
        return text + ("" if text.endswith("\n") or not text else "\n") + f"adapter: {rendered}\n"
    match = matches[0]
    line = f"adapter: {rendered}{match.group('rest') or ''}"
    return text[: match.start()] + line + text[match.end() :]


def _check_rewritten(path: Path, text: str, target: str | None) -> None:
    """Validate the rewritten ``style.yaml`` (loaded from a scratch copy beside it) before it replaces the file."""
    scratch = path.with_name(f".{STYLE_FILE}.promote")
    scratch.write_text(text, encoding="utf-8")
    try:
        promoted = load_style(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    if promoted.adapter != target:
        raise StyleError(f"{path}: rewriting `adapter:` did not take effect; edit the file by hand")


def promote(style: Style, version: str, base_model_id: str) -> Style:
    """Serve ``version`` (or the base model alone for ``none``): check it, rewrite style.yaml, reload."""
    target: str | None = None if version.lower() in UNPIN else version
    if target is not None:
        if target not in list_version_names(style):
            known = ", ".join(list_version_names(style)) or "none yet"
            raise StyleError(f"style {style.name!r} has no adapter version {version!r} (versions: {known})")
        check_adapter(adapter_ref(style, target), base_model_id)
    path = style.directory / STYLE_FILE
    text = path.read_text(encoding="utf-8")
    new_text = set_adapter_line(text, target)
    _check_rewritten(path, new_text, target)
    write_atomic(path, new_text)
    logger.info("style %s now serves %s", style.name, target or "the base model only")
    return load_style(path)
