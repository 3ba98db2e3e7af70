"""Which adapter version a style serves on which base model: ``style.yaml``'s ``adapter:``, per base model.

An adapter version is trained on one base model and records it (``copydesk-adapter.json`` ``base_model_id``); it
can serve on that base model only. ``adapter:`` has two forms:

* ``adapter: v3`` (or ``null``), the form every style had before: v3 serves on the base model it records (on every
  base model when it records none), and ``null`` serves the base model alone on every base model;
* ``adapter: {smollm2-135m-instruct: v3, gemma3-270m: v4}``: one entry per base model, by model id (``null`` for
  the base model alone on that one).

:func:`served_map` reads either form into ``{base model id: version or None}``, with :data:`ANY_BASE` for an entry
that holds on every base model. :func:`resolve` picks the entry of the loaded base model; a base model without one
gets nothing, and the style's briefs then fail with :func:`not_served_message` (a StyleError naming the base model
and the versions there are): copydesk never falls back to the base model, or to another base's version, on its own.
:func:`with_entry` and :func:`adapter_value` are what ``styles promote`` rewrites the line with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from worker.engine.adapters import recorded_base_model
from worker.styles.layout import ADAPTERS_SUBDIR, StyleOnDisk, is_version_name, list_version_names

logger = logging.getLogger(__name__)

ANY_BASE = "*"  # the key of an entry that holds on every base model (never written in style.yaml)
ServedMap = dict[str, str | None]


def version_base(directory: Path, version: str) -> str | None:
    """The base model that ``version`` of the style in ``directory`` records (``None``: it records none, or it
    cannot be read; loading or promoting it reports why)."""
    if not is_version_name(version):
        return None
    return recorded_base_model(directory / ADAPTERS_SUBDIR / version)


def _version(value: object) -> str:
    if not is_version_name(value):
        raise ValueError(f"adapter version {value!r} must look like v1, v2, ...")
    return str(value)


def served_map(value: object, directory: Path) -> ServedMap:
    """``style.yaml``'s ``adapter:`` value as ``{base model id: version or None}``; a ``ValueError`` when it is
    neither a version, ``null``, nor a mapping of base model ids to versions (or ``null``)."""
    if value is None:
        return {ANY_BASE: None}
    if isinstance(value, str):
        return {version_base(directory, _version(value)) or ANY_BASE: value}
    if not isinstance(value, dict):
        raise ValueError("adapter must be a version (v1, v2, ...), null, or a mapping {base model id: version}")
    if not value:
        raise ValueError("adapter: {} names no base model; write `adapter: null` to serve the base model alone")
    served: ServedMap = {}
    for base, version in value.items():
        if not isinstance(base, str) or not base.strip() or base == ANY_BASE:
            raise ValueError(f"adapter: {base!r} is not a base model id (e.g. smollm2-135m-instruct)")
        served[base] = None if version is None else _version(version)
    return served


def resolve(served: ServedMap, base_model: str | None) -> str | None:
    """The version served on ``base_model`` (``None``: the base model alone); a ``LookupError`` when ``served``
    has no entry for it. Without a base model (``None``: not known) a single entry, or an every-base one, holds."""
    if base_model is not None and base_model in served:
        return served[base_model]
    if ANY_BASE in served:
        return served[ANY_BASE]
    if base_model is None and len(served) == 1:
        return next(iter(served.values()))
    raise LookupError(base_model)


def describe(served: ServedMap) -> str:
    """``v3 on smollm2-135m-instruct, the base model alone on gemma3-270m`` (for messages and tables)."""
    return ", ".join(
        f"{version or 'the base model alone'} on {'every base model' if base == ANY_BASE else base}"
        for base, version in sorted(served.items())
    )


def not_served_message(style: StyleOnDisk, base_model: str | None, served: ServedMap) -> str:
    """Why ``style`` cannot write a brief on ``base_model``: what it serves, on which base, and its versions'
    bases, with the two ways out."""
    versions = ", ".join(
        f"{v} ({version_base(style.directory, v) or 'base model not recorded'})" for v in list_version_names(style)
    )
    where = f"base model {base_model!r}" if base_model is not None else "an unknown base model"
    return (
        f"style {style.name!r} serves no adapter version on {where}: style.yaml serves {describe(served)} "
        f"(versions: {versions or 'none yet'}); train a version on this base model and `copydesk styles promote "
        f"{style.name} vN` it, or `copydesk styles promote {style.name} none` to serve the base model alone on it"
    )


def with_entry(served: ServedMap, base_model: str, version: str | None, configured: str) -> ServedMap:
    """``served`` with ``base_model``'s entry set to ``version``, the others kept; an every-base entry becomes the
    ``configured`` base model's own (where it has been serving) before another base model gets an entry."""
    updated = dict(served)
    if ANY_BASE in updated and base_model != ANY_BASE:
        every = updated.pop(ANY_BASE)
        updated.setdefault(configured, every)
    updated[base_model] = version
    return updated


def adapter_value(served: ServedMap, directory: Path) -> str:
    """The ``adapter:`` value that reads back as ``served``, in its shortest form: ``null`` when no base model
    serves a version (the base model alone on every one), ``vN`` for one version on the base it records, else a
    one-line mapping."""
    if all(version is None for version in served.values()):
        return "null"
    if len(served) == 1:
        ((base, version),) = served.items()
        if version is not None and (version_base(directory, version) or ANY_BASE) == base:
            return version
    return yaml.safe_dump(dict(sorted(served.items())), default_flow_style=True, width=1_000_000).strip()
