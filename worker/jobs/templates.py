"""Brief templates of job files: Jinja2 text expanded once per data row.

Templates render in Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`. Only the job file's own template text is compiled; row values reach the
template as data (``{{ row.name }}``), so a cell holding ``{{ 7*7 }}`` comes out literally.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from worker.intake.problems import BriefProblem

logger = logging.getLogger(__name__)

_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_MISSING_ATTRIBUTE = re.compile(r"has no attribute '([^']*)'")


class RenderError(Exception):
    """A template could not be rendered for one row; the message says why, for the job file's author."""


def template_problems(file: str, template: dict[str, Any]) -> list[BriefProblem]:
    """A problem for each template text of ``template`` (brief field -> text or list) that does not compile."""
    problems = []
    for key, value in template.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    _ENVIRONMENT.from_string(text)
                except TemplateSyntaxError as exc:
                    problems.append(BriefProblem(file, "", f"template.{key}", f"template syntax error: {exc.message}"))
    return problems


def compile_template(value: Any) -> Any:
    """Text compiled to a :class:`~jinja2.Template` (lists item by item); other values stay as they are."""
    if isinstance(value, list):
        return [compile_template(item) for item in value]
    if isinstance(value, str):
        return _ENVIRONMENT.from_string(value)
    return value


def render(template: Any, row: dict[str, Any], run_values: dict[str, Any]) -> Any:
    """A compiled template rendered for ``row`` and the run (stripped text; lists item by item)."""
    if isinstance(template, list):
        return [render(item, row, run_values) for item in template]
    if not isinstance(template, Template):
        return template
    try:
        return template.render(row=row, run=run_values).strip()
    except UndefinedError as exc:
        missing = _MISSING_ATTRIBUTE.search(str(exc.message))
        if missing:
            raise RenderError(f"the template uses row.{missing.group(1)}, which this row does not have") from exc
        raise RenderError(f"the template uses an undefined value: {exc.message}") from exc
    except SecurityError as exc:
        raise RenderError(f"the template tried to leave the sandbox: {exc}") from exc
    except TemplateError as exc:
        raise RenderError(f"the template failed to render: {exc}") from exc


__all__ = ["RenderError", "compile_template", "render", "template_problems"]
