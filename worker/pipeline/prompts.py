"""Prompt stage: render the Jinja2 prompt template for a brief's content type, inside the sandbox.

Templates live in ``templates/prompts/<content-type>.j2``. They are rendered by a
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with :class:`~jinja2.StrictUndefined`: a template
cannot reach Python internals, and a misspelt variable is an error, not an empty string. Brief values are
passed as data in the render context, so a title such as ``{{ 7*7 }}`` appears literally in the prompt;
nothing from a brief is ever compiled as a template.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from worker.errors import PromptError
from worker.intake.briefs import Brief
from worker.styles.catalog import Style

logger = logging.getLogger(__name__)

PROMPTS_SUBDIR = "prompts"


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: the system and user messages, and which template produced them."""

    template: str
    template_hash: str
    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        """Chat messages for the model's chat template."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return [*messages, {"role": "user", "content": self.user}]


class PromptRenderer:
    """Renders prompt templates from one templates directory; templates are compiled once and cached."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.environment = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._hashes: dict[str, tuple[tuple[tuple[str, int, int], ...], str]] = {}

    def template_name(self, brief: Brief) -> str:
        return f"{PROMPTS_SUBDIR}/{brief.content_type}.j2"

    def template_hash(self, name: str) -> str:
        """SHA-256 (16 hex digits) of the template and the shared partials (``_*.j2``) it may include.

        Recorded in every article's provenance, so a changed template shows up as a changed hash. The
        cache is keyed on the files' size and mtime: Jinja2 reloads an edited template, and so does the hash.
        """
        partials = sorted((self.templates_dir / PROMPTS_SUBDIR).glob("_*.j2"))
        paths = [self.templates_dir / name, *partials]
        signature = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
        cached = self._hashes.get(name)
        if cached is None or cached[0] != signature:
            digest = hashlib.sha256()
            for path in paths:
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
            cached = self._hashes[name] = (signature, digest.hexdigest()[:16])
        return cached[1]

    def render(self, brief: Brief, style: Style, *, feedback: str = "") -> Prompt:
        """Render the prompt for ``brief`` in ``style``; ``feedback`` is an editor's note for a redo."""
        name = self.template_name(brief)
        try:
            template = self.environment.get_template(name)
            user = template.render(brief=brief.model_dump(mode="json"), feedback=feedback, style=style.name)
        except TemplateNotFound as exc:
            if exc.name != name:  # the template exists; a template it includes does not
                raise PromptError(f"template {name} includes {exc.name}, which does not exist") from exc
            raise PromptError(
                f"no prompt template for content type {str(brief.content_type)!r}: add {self.templates_dir / name}"
            ) from exc
        except SecurityError as exc:
            raise PromptError(f"template {name} tried to leave the sandbox: {exc}") from exc
        except TemplateError as exc:
            raise PromptError(f"template {name} failed to render: {exc}") from exc
        return Prompt(name, self.template_hash(name), style.system_prompt.strip(), user.strip())
