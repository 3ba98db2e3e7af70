"""Adapter versions of a style: list them with their metrics, and switch the served one (promote).

A style's versions are the folders ``styles/<name>/adapters/vN/`` written by training
(:mod:`worker.lab.training`). ``style.yaml``'s ``adapter:`` line pins the served version per base model
(:mod:`worker.styles.served`); :func:`promote` sets the entry of the base model the version was trained on (read
from its metadata; ``none``: the configured base model's entry), keeps the other base models' entries, rewrites that
one line in its shortest form (comments and the rest of the file are kept), validates the result as a style and
replaces the file atomically (:func:`worker.files.write_atomic`). A version is only promoted after
:func:`worker.engine.adapters.check_adapter` accepts it for its own base model (and by the SHA-256 of the weights
when that is the configured base model and the caller knows its weights).

A canary (``promote NAME vN --share 0.1``) keeps ``adapter:`` and writes one ``canary: {version: vN, share:
0.1}`` line: vN then writes a stable share of the style's briefs on vN's base model (:meth:`Style.version_for`);
workers on other base models do not run it. One canary at a time: starting one on another base model while one
runs is refused, and so is a canary on a base model the style serves nothing on. Promoting without a share serves
the version to every brief of its base model and removes the ``canary:`` line when the canary ran on that base model.
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
from worker.styles.catalog import STYLE_FILE, Canary, Style, load_style
from worker.styles.layout import METRICS_FILE, PROFILE_FILE, adapter_ref, list_version_names, versions_dir
from worker.styles.served import ANY_BASE, ServedMap, adapter_value, describe, resolve, version_base, with_entry

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


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file's top-level object; {} when it is missing, unreadable, malformed or not an object."""
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
        served=version == style.adapter or version in style.served.values(),  # on its own base model
        meta=read_json_object(directory / ADAPTER_META),
        metrics=read_json_object(directory / METRICS_FILE),
        targets=read_json_object(directory / PROFILE_FILE).get("targets", {}),
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
    """``style.yaml`` text with its top-level ``adapter:`` set to ``value`` (``None``: null; or a one-line mapping,
    :func:`worker.styles.served.adapter_value`), comments kept; a multi-line ``adapter:`` block is refused."""
    rendered = value if value is not None else "null"
    matches = list(_ADAPTER_LINE.finditer(text))
    if len(matches) > 1:
        raise StyleError("style.yaml has more than one top-level `adapter:` line; fix it by hand")
    if matches and not matches[0].group("value").strip() and re.match(r"\n[^\S\n]+\S", text[matches[0].end() :]):
        raise StyleError("style.yaml has an `adapter:` block this command cannot rewrite; make it one line by hand")
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


def _check_rewritten(path: Path, text: str, served: ServedMap, canary: Canary | None) -> None:
    """Validate the rewritten ``style.yaml`` (loaded from a scratch copy beside it) before it replaces the file:
    every base model must get the version meant for it, and the canary must be the one meant."""
    scratch = path.with_name(f".{STYLE_FILE}.promote")
    scratch.write_text(text, encoding="utf-8")
    try:
        promoted = load_style(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    try:
        took = all(resolve(promoted.served, base) == version for base, version in served.items() if base != ANY_BASE)
    except LookupError:
        took = False
    if not took or promoted.canary != canary:
        raise StyleError(f"{path}: rewriting `adapter:` or `canary:` did not take effect; edit the file by hand")


def promote(
    style: Style,
    version: str,
    base_model_id: str,
    *,
    share: float | None = None,
    base_weights_sha256: str | None = None,
) -> Style:
    """Serve ``version`` to every brief on the base model it was trained on (``none``: the base model alone on
    ``base_model_id``, the configured one), ending a canary on that base model; with ``share``, serve it to that
    share of the briefs only (a canary) and keep the served version for the rest. Other base models' entries are
    kept. The version is checked first, then style.yaml is rewritten; the style comes back loaded for the base
    model whose entry changed."""
    target: str | None = None if version.lower() in UNPIN else version
    base = _checked_base(style, target, base_model_id, base_weights_sha256)
    path = style.directory / STYLE_FILE
    text = path.read_text(encoding="utf-8")
    served = style.served or {ANY_BASE: style.adapter}
    if share is None:
        served = with_entry(served, base, target, base_model_id)
        ends = style.canary is not None and style.canary_base in (None, base)
        canary = None if ends else style.canary
        new_text = set_adapter_line(text, adapter_value(served, style.directory))
        new_text = set_canary_line(new_text, None) if ends else new_text
    else:
        canary = Canary(version=_canary_target(style, target, base, share), share=share)
        new_text = set_canary_line(text, canary.version, share)
    _check_rewritten(path, new_text, served, canary)
    write_atomic(path, new_text)
    if share is None:
        logger.info("style %s now serves %s", style.name, describe(served))
    else:
        logger.info("style %s: canary %s on %.0f%% of briefs on %s", style.name, target, share * 100, base)
    return load_style(path, base)


def _checked_base(style: Style, target: str | None, configured: str, weights_sha256: str | None) -> str:
    """The base model whose entry promoting ``target`` sets: the one it records (``configured`` for ``none`` or
    a version that records none), after :func:`check_adapter` accepted it for that base model."""
    if target is None:
        return configured
    if target not in list_version_names(style):
        known = ", ".join(list_version_names(style)) or "none yet"
        raise StyleError(f"style {style.name!r} has no adapter version {target!r} (versions: {known})")
    base = version_base(style.directory, target) or configured
    check_adapter(adapter_ref(style, target), base, weights_sha256 if base == configured else None)
    return base


def _canary_target(style: Style, target: str | None, base: str, share: float) -> str:
    if target is None:
        raise StyleError("a canary needs an adapter version (vN); `none` can only be promoted to every brief")
    if not 0 < share < 1:
        raise StyleError(f"--share {share:g} must be above 0 and below 1 (promote without --share to serve it to all)")
    served = style.served or {ANY_BASE: style.adapter}
    try:
        current = resolve(served, base)
    except LookupError:
        raise StyleError(
            f"style {style.name!r} serves nothing on base model {base!r} ({target}'s): a canary runs beside a served "
            f"version; promote {target} (or `none`) without --share first"
        ) from None
    if target == current:
        raise StyleError(
            f"style {style.name!r} already serves {target} to every brief; a canary must be another version"
        )
    if style.canary is not None and style.canary.version != target and style.canary_base not in (None, base):
        raise StyleError(
            f"style {style.name!r} runs a canary of {style.canary.version} on base model {style.canary_base!r}; "
            "one canary at a time: end it (promote a version on that base model without --share) first"
        )
    return target
