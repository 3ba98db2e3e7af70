"""Styles: ``styles/<name>/style.yaml`` plus versioned PEFT LoRA adapters under ``adapters/vN/``.

A style says how it is routed to (weighted rules over brief metadata), what a good draft looks like
(targets), which scores must pass (gates), how to sample (generation settings), and which adapter version
serves on which base model (:mod:`worker.styles.served`): a style is loaded for one base model, the loaded one, and
its ``adapter`` is the version served on it. Style names are validated before they ever touch the file system.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.config import Settings
from worker.errors import StyleError, validation_problems
from worker.intake.briefs import Brief
from worker.intake.problems import BriefProblem
from worker.intake.validation import SourcedBrief
from worker.names import check_safe_name, is_safe_name
from worker.styles.layout import ADAPTERS_SUBDIR, PROFILE_FILE, is_version_name, version_dir
from worker.styles.score_names import ALWAYS_GATED, GATE_NAMES
from worker.styles.served import ServedMap, not_served_message, resolve, served_map, version_base

logger = logging.getLogger(__name__)

STYLE_FILE = "style.yaml"
COMPUTED = ("directory", "profile_targets", "base_model", "served", "canary_base")  # never read from style.yaml


class RoutingRules(BaseModel):
    """Weights added to a style's routing score when a brief's metadata matches (case-insensitive)."""

    model_config = ConfigDict(extra="forbid")

    content_types: dict[str, float] = Field(default_factory=dict)
    categories: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, float] = Field(default_factory=dict)
    audiences: dict[str, float] = Field(default_factory=dict)
    tones: dict[str, float] = Field(default_factory=dict)
    priority: int = Field(0, description="Breaks ties between equal scores; higher wins.")

    @field_validator("content_types", "categories", "tags", "audiences", "tones")
    @classmethod
    def _lowercase_keys(cls, value: dict[str, float]) -> dict[str, float]:
        return {key.strip().lower(): weight for key, weight in value.items()}


class Targets(BaseModel):
    """What a good draft of this style measures. Ranges are inclusive ``[low, high]``."""

    model_config = ConfigDict(extra="forbid")

    reading_ease: tuple[float, float] = Field((50.0, 80.0), description="Flesch reading ease range.")
    grade: tuple[float, float] = Field((5.0, 11.0), description="Flesch-Kincaid grade range.")
    sentiment: tuple[float, float] = Field((-0.2, 1.0), description="VADER compound range, -1..1.")
    formality: tuple[float, float] = Field((0.3, 0.8), description="Formality 0 (chatty) .. 1 (formal).")
    length_tolerance: float = Field(0.5, gt=0, le=2, description="Allowed relative deviation from target.")
    max_repetition: float = Field(0.15, ge=0, le=1, description="Max share of repeated word 4-grams.")
    min_keyword_coverage: float = Field(0.5, ge=0, le=1, description="Share of brief keywords present.")
    min_on_topic: float = Field(0.3, ge=-1, le=1, description="Min cosine similarity brief vs draft.")
    max_copied_words: int = Field(
        40, ge=8, description="Memorisation guard: a verbatim run this long (words) from the training corpus."
    )
    max_corpus_similarity: float = Field(
        0.9, ge=-1, le=1, description="Memorisation guard: cosine to one corpus article that, with ..."
    )
    max_copied_share: float = Field(
        0.2, ge=0, le=1, description="... this share of the draft's word 8-grams found in the corpus, is a copy."
    )

    @model_validator(mode="after")
    def _ranges_ordered(self) -> Targets:
        for name in ("reading_ease", "grade", "sentiment", "formality"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"targets.{name}: low {low} is above high {high}")
        return self


class StyleRules(BaseModel):
    """An editor's style guide, checked as the ``style_rules`` gate."""

    model_config = ConfigDict(extra="forbid")

    banned_terms: list[str] = Field(default_factory=list)
    preferred_terms: dict[str, str] = Field(default_factory=dict, description="Use value instead of key.")
    required_disclaimer: str | None = None
    heading_case: str | None = Field(None, pattern="^(sentence|title)$")


class GenerationSettings(BaseModel):
    """Sampling settings for this style."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.15, ge=1.0, le=2.0)
    candidates: int = Field(2, ge=1, le=8, description="Candidates generated per brief per attempt.")
    tokens_per_word: float = Field(1.5, gt=0, description="Max new tokens = target words x this.")
    max_new_tokens: int = Field(512, ge=16, le=4096, description="Hard cap on new tokens.")


class Canary(BaseModel):
    """A version tried on a stable share of the style's briefs while ``adapter:`` serves the rest."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="The canary adapter version (vN).")
    share: float = Field(gt=0, lt=1, description="Share of the style's briefs it serves, chosen by brief id.")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not is_version_name(value):
            raise ValueError(f"canary version {value!r} must look like v1, v2, ...")
        return value


def brief_bucket(style_name: str, brief_id: str) -> float:
    """Where a brief falls in ``[0, 1)`` for ``style_name``'s canary: a hash of both, so a brief always
    falls at the same place, and a brief in a canary of share 0.1 stays in one of share 0.2."""
    digest = hashlib.sha256(f"{style_name}\0{brief_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Style(BaseModel):
    """A validated ``style.yaml`` together with the directory it came from."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    routing: RoutingRules = Field(default_factory=RoutingRules)
    targets: Targets = Field(default_factory=Targets)
    gates: list[str] = Field(
        default_factory=lambda: ["length", "structure", "repetition", "on_topic", *ALWAYS_GATED],
        description="Scores a draft must pass; the memorisation guard is always one of them.",
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    rules: StyleRules = Field(default_factory=StyleRules)
    adapter: str | None = Field(
        None, description="Adapter version served (vN) on the base model the style was loaded for, or none."
    )
    canary: Canary | None = Field(None, description="A version served to a stable share of briefs, if any.")
    base_model: str | None = Field(None, exclude=True, description="The base model it was loaded for (None: unknown).")
    served: ServedMap = Field(
        default_factory=dict,
        exclude=True,
        description="style.yaml's `adapter:` per base model id (worker.styles.served); empty: `adapter` holds on all.",
    )
    canary_base: str | None = Field(None, exclude=True, description="The base model the canary version records.")
    system_prompt: str = Field("", description="Voice instructions put in the system message.")
    directory: Path = Field(Path(), exclude=True)
    profile_targets: list[str] = Field(
        default_factory=list,
        exclude=True,
        description="Target names taken from the served adapter's corpus profile (not set in style.yaml).",
    )

    @field_validator("name")
    @classmethod
    def _safe(cls, value: str) -> str:
        return check_safe_name("style name", value)

    @field_validator("gates")
    @classmethod
    def _known_gates(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(GATE_NAMES))
        if unknown:
            raise ValueError(f"unknown gate(s) {unknown}; known: {list(GATE_NAMES)}")
        return [*value, *(gate for gate in ALWAYS_GATED if gate not in value)]

    @field_validator("adapter")
    @classmethod
    def _adapter_version(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not (value.startswith("v") and value[1:].isdigit()):
            raise ValueError(f"adapter version {value!r} must look like v1, v2, ...")
        return value

    @model_validator(mode="after")
    def _canary_differs(self) -> Style:
        if self.canary is not None and self.canary.version in {self.adapter, *self.served.values()}:
            raise ValueError(f"canary {self.canary.version} is already the served version; drop `canary:`")
        return self

    @property
    def adapter_dir(self) -> Path | None:
        """Directory of the served adapter version, or ``None`` when the style runs on the base model."""
        return None if self.adapter is None else version_dir(self, self.adapter)

    def served_version(self) -> str | None:
        """The version served on the loaded base model (``None``: the base model alone); a :class:`StyleError`
        naming that base model and the style's versions when style.yaml serves nothing on it."""
        if not self.served:
            return self.adapter
        try:
            return resolve(self.served, self.base_model)
        except LookupError:
            raise StyleError(not_served_message(self, self.base_model, self.served)) from None

    @property
    def active_canary(self) -> Canary | None:
        """The canary, when it runs on the loaded base model: a canary runs on its version's base model only."""
        if self.canary is None or None in (self.base_model, self.canary_base) or self.canary_base == self.base_model:
            return self.canary
        return None

    def version_for(self, brief_id: str) -> str | None:
        """The adapter version that writes ``brief_id``: the canary's for a stable share of briefs (by
        :func:`brief_bucket`) while it runs on this base model, the served version for the rest (``None``: the
        base model; a StyleError when style.yaml serves nothing on this base model, :meth:`served_version`)."""
        canary = self.active_canary
        if canary is not None and brief_bucket(self.name, brief_id) < canary.share:
            return canary.version
        return self.served_version()


def load_style(path: Path, base_model: str | None = None) -> Style:
    """Load and validate one ``style.yaml`` for ``base_model`` (the loaded base model's id; ``None``: not known,
    a style serving one base model then serves its version); the style's name must equal its directory name."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError: an integer of 4300+ digits; RecursionError: nesting too deep for the parser
        raise StyleError(f"{path}: cannot read style file: {exc}") from exc
    if not isinstance(raw, dict):
        raise StyleError(f"{path}: a style file must be a mapping of fields")
    raw.setdefault("name", path.parent.name)
    for computed in COMPUTED:
        if computed in raw:
            raise StyleError(f"{path}: {computed!r} is not a style field; copydesk works it out itself")
    try:
        raw = _for_base(raw, path.parent, base_model)
    except ValueError as exc:
        raise StyleError(f"{path}: {exc}") from exc
    raw, from_profile = _with_profile_targets(raw, path.parent)
    try:
        style = Style.model_validate({**raw, "directory": path.parent, "profile_targets": from_profile})
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise StyleError(f"{path}: {problems}") from exc
    if style.name != path.parent.name:
        raise StyleError(f"{path}: name {style.name!r} must equal its directory name {path.parent.name!r}")
    return style


def _for_base(raw: dict[str, Any], directory: Path, base_model: str | None) -> dict[str, Any]:
    """``raw`` with its ``adapter:`` (one version, or one per base model) resolved for ``base_model``: ``adapter``
    the version served on it (``None`` too when nothing is: :meth:`Style.served_version` then refuses), and the
    computed ``base_model``, ``served`` and ``canary_base``."""
    served = served_map(raw.get("adapter"), directory)
    try:
        adapter = resolve(served, base_model)
    except LookupError:
        adapter = None
        logger.info("style %s serves no adapter version on base model %s", directory.name, base_model)
    canary = raw.get("canary")
    canary_version = canary.get("version") if isinstance(canary, dict) else None
    canary_base = version_base(directory, canary_version) if isinstance(canary_version, str) else None
    return {**raw, "adapter": adapter, "base_model": base_model, "served": served, "canary_base": canary_base}


def _with_profile_targets(raw: dict[str, Any], directory: Path) -> tuple[dict[str, Any], list[str]]:
    """Fill the targets that style.yaml leaves out from the served adapter's corpus profile.

    Training writes ``adapters/vN/profile.json`` with ``targets`` measured on the style's corpus (readability
    and grade ranges, sentiment and formality ranges, length tolerance). A target written in style.yaml always
    wins; the others come from the profile of the version served on the loaded base model. Without one, or
    without a profile, the built-in defaults of :class:`Targets` apply.
    """
    version = raw.get("adapter")
    if not is_version_name(version):
        return raw, []
    profile_path = directory / ADAPTERS_SUBDIR / version / PROFILE_FILE
    if not profile_path.is_file():
        return raw, []
    try:
        measured = json.loads(profile_path.read_text(encoding="utf-8")).get("targets") or {}
    except (OSError, ValueError, AttributeError) as exc:
        logger.warning("ignoring the unreadable corpus profile %s: %s", profile_path, exc)
        return raw, []
    given = raw.get("targets") or {}
    if not isinstance(given, dict) or not isinstance(measured, dict):
        return raw, []
    taken = sorted(key for key in measured if key in Targets.model_fields and key not in given)
    if not taken:
        return raw, []
    return {**raw, "targets": {**{key: measured[key] for key in taken}, **given}}, taken


class StyleCatalog:
    """All styles found under one directory, loaded once. Broken styles are reported, not fatal."""

    def __init__(self, styles: dict[str, Style], problems: dict[str, str], base_model: str | None = None) -> None:
        self.styles = styles
        self.problems = problems
        self.base_model = base_model

    @classmethod
    def load(cls, styles_dir: Path, base_model: str | None = None) -> StyleCatalog:
        """Every style under ``styles_dir``, each loaded for ``base_model`` (:func:`load_style`)."""
        styles: dict[str, Style] = {}
        problems: dict[str, str] = {}
        if not styles_dir.is_dir():
            raise StyleError(f"styles directory {styles_dir} does not exist (set COPYDESK_STYLES_DIR)")
        for style_file in sorted(styles_dir.glob(f"*/{STYLE_FILE}")):
            name = style_file.parent.name
            if not is_safe_name(name):
                problems[name] = "directory name is not a safe style name"
                continue
            try:
                styles[name] = load_style(style_file, base_model)
            except StyleError as exc:
                logger.warning("style %s is unusable: %s", name, exc)
                problems[name] = str(exc)
        return cls(styles, problems, base_model)

    @classmethod
    def for_settings(cls, settings: Settings) -> StyleCatalog:
        """Every style under the configured styles directory, each loaded for the configured base model: the
        version served there, its canary and its profile targets (what workers, the API and the CLI must see)."""
        from worker.engine.base_model import configured_model_id

        return cls.load(settings.styles_dir, configured_model_id(settings))

    @property
    def names(self) -> list[str]:
        return sorted(self.styles)

    def get(self, name: str) -> Style:
        """The style called ``name``, or a :class:`StyleError` naming the known styles."""
        if not is_safe_name(name):
            raise StyleError(f"style {name!r} is not a valid style name; known styles: {', '.join(self.names)}")
        if name not in self.styles:
            reason = f" ({self.problems[name]})" if name in self.problems else ""
            raise StyleError(f"unknown style {name!r}{reason}; known styles: {', '.join(self.names)}")
        return self.styles[name]

    def check_pin(self, brief: Brief) -> None:
        """The one check of a brief's pinned style (routing, job files, ``validate``, ``submit``): a
        :class:`StyleError` naming the known styles when the pin is not a usable style of this catalog."""
        if brief.style is not None:
            self.get(brief.style)

    def pin_problems(self, items: Iterable[SourcedBrief]) -> list[BriefProblem]:
        """:meth:`check_pin` for every brief, each refusal as a problem on its record's ``style`` field."""
        problems: list[BriefProblem] = []
        for item in items:
            try:
                self.check_pin(item.brief)
            except StyleError as exc:
                problems.append(BriefProblem(item.file, item.record, "style", str(exc)))
        return problems
