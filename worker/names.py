"""Validation of names that come from input and may later become parts of paths or keys.

Style names, brief ids and job names are checked here before anything uses them: lower/upper ASCII
letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most 128 characters. That
excludes path separators, ``..``, NUL bytes and anything a shell or a template would interpret.
"""

from __future__ import annotations

import re

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_safe_name(value: str) -> bool:
    """True when ``value`` can be used as a file or directory name without further checks."""
    return bool(SAFE_NAME.fullmatch(value)) and ".." not in value


def check_safe_name(kind: str, value: str) -> str:
    """Return ``value`` unchanged, or raise ``ValueError`` saying which characters are allowed."""
    if not is_safe_name(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ValueError(
            f"{kind} {shown!r} is not a safe name: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return value
