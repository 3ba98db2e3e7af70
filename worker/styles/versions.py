"""Adapter versions of a style: list them with their metrics, and switch the served one (promote).

A style's versions are the folders ``styles/<name>/adapters/vN/`` written by training
(:mod:`worker.lab.training`). ``style.yaml``'s ``adapter:`` line pins the served version; :func:`promote`
rewrites that one line (comments and the rest of the file are kept), validates the result as a style
and replaces the file atomically (:func:`worker.files.write_atomic`). A version is only promoted after
:func:`worker.engine.adapters.check_adapter` accepts it for the configured base model (by name and, when the
caller knows it, by the SHA-256 of its weights), so an adapter trained for another base model is refused.

A canary (``promote NAME vN --share 0.1``) keeps ``adapter:`` and writes one ``canary: {version: vN, share:
0.1}`` line: vN then writes a stable share of the style's briefs (:meth:`Style.version_for`). Promoting without
a share serves the version to every brief and removes the ``canary:`` line, ending any canary.
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
_LINE = r"^{key}:[^\S\n]*(?P<value>[^#\n]*?)(?P<rest>[^\S\n]+#[^\n]*)?[^\S\n]*$"
_ADAPTER_LINE = re.compile(_LINE.format(key="adapter"), re.MULTILINE)
_CANARY_LINE = re.compile(_LINE.format(key="canary") + r"\n?", re.MULTILINE)


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


def version_info(
    style: Style, version: str, base_model_id: str | None, base_weights_sha256: str | None = None
) -> VersionInfo:
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
            check_adapter(adapter_ref(style, version), base_model_id, base_weights_sha256)
        except AdapterError as exc:
            info.problem = str(exc)
    return info


def list_versions(
    style: Style, base_model_id: str | None = None, base_weights_sha256: str | None = None
) -> list[VersionInfo]:
    """Every ``vN`` of the style in numeric order; with ``base_model_id`` each is checked for serving (and by
    weights too with ``base_weights_sha256``: a version trained on other weights is unusable)."""
    return [version_info(style, version, base_model_id, base_weights_sha256) for version in list_version_names(style)]


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


def set_canary_line(text: str, version: str | None, share: float | None = None) -> str:
    """``style.yaml`` text with its top-level ``canary:`` line set to ``version`` at ``share``, or removed
    (``version`` ``None``); a multi-line ``canary:`` block is refused (it would be left half rewritten)."""
    matches = list(_CANARY_LINE.finditer(text))
    if len(matches) > 1 or any(not m.group("value").strip() for m in matches):
        raise StyleError("style.yaml has a `canary:` block this command cannot rewrite; make it one line by hand")
    line = "" if version is None else f"canary: {{version: {version}, share: {share:g}}}\n"
    if not matches:
        return text + ("" if text.endswith("\n") or not text or not line else "\n") + line
    return text[: matches[0].start()] + line + text[matches[0].end() :]


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


def promote(
    style: Style,
    version: str,
    base_model_id: str,
    *,
    share: float | None = None,
    base_weights_sha256: str | None = None,
) -> Style:
    """Serve ``version`` (or the base model alone for ``none``) to every brief, ending any canary; with
    ``share``, serve it to that share of the style's briefs only (a canary) and keep the served version for
    the rest. The version is checked first (by name and, when given, by base weights), then style.yaml is
    rewritten and reloaded."""
    target: str | None = None if version.lower() in UNPIN else version
    if target is not None:
        if target not in list_version_names(style):
            known = ", ".join(list_version_names(style)) or "none yet"
            raise StyleError(f"style {style.name!r} has no adapter version {version!r} (versions: {known})")
        check_adapter(adapter_ref(style, target), base_model_id, base_weights_sha256)
    path = style.directory / STYLE_FILE
    text = path.read_text(encoding="utf-8")
    if share is None:
        new_text = set_canary_line(set_adapter_line(text, target), None)
    else:
        new_text = set_canary_line(text, _canary_target(style, target, share), share)
    _check_rewritten(path, new_text, style.adapter if share is not None else target)
    write_atomic(path, new_text)
    if share is None:
        logger.info("style %s now serves %s", style.name, target or "the base model only")
    else:
        logger.info(
            "style %s: canary %s on %.0f%% of briefs, %s on the rest", style.name, target, share * 100, style.adapter
        )
    return load_style(path)


def _canary_target(style: Style, target: str | None, share: float) -> str:
    if target is None:
        raise StyleError("a canary needs an adapter version (vN); `none` can only be promoted to every brief")
    if not 0 < share < 1:
        raise StyleError(f"--share {share:g} must be above 0 and below 1 (promote without --share to serve it to all)")
    if target == style.adapter:
        raise StyleError(
            f"style {style.name!r} already serves {target} to every brief; a canary must be another version"
        )
    return target
