"""The brief: what to write. Validation stage of the pipeline.

A :class:`Brief` is immutable once validated. Its ``id`` is either given (a safe name, it plays the role of
the OpenAI Batch API's ``custom_id``) or derived deterministically from the content, so that submitting the
same brief twice yields the same id.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from worker.names import check_safe_name

MAX_TARGET_WORDS = 2000
MIN_TARGET_WORDS = 50
MAX_TEXT = 2000
MAX_LIST_ITEMS = 30


class ContentType(StrEnum):
    """The kinds of article copydesk has prompt templates for."""

    HOW_TO = "how-to"
    LISTICLE = "listicle"
    EXPLAINER = "explainer"
    NEWS = "news"
    REVIEW = "review"


_CONTENT_TYPE_ALIASES = {
    "howto": ContentType.HOW_TO,
    "how_to": ContentType.HOW_TO,
    "how to": ContentType.HOW_TO,
    "guide": ContentType.HOW_TO,
    "tutorial": ContentType.HOW_TO,
    "list": ContentType.LISTICLE,
    "explanation": ContentType.EXPLAINER,
    "news-story": ContentType.NEWS,
    "product-review": ContentType.REVIEW,
}


def _normalise_content_type(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        return _CONTENT_TYPE_ALIASES.get(key, key)
    return value


def _split_list(value: Any) -> Any:
    """Accept a list, or a ``;``-separated string (CSV cells), for list fields."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, set | frozenset):
        raise ValueError("must be a list (a set has no stable order)")
    return value


_INVISIBLE_CONTROLS = {0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return (code < 32 and ch not in "\n\t") or 127 <= code <= 159 or code in _INVISIBLE_CONTROLS


def _no_control_chars(value: str) -> str:
    bad = [ch for ch in value if _is_control(ch)]
    if bad:
        raise ValueError(f"contains control character {bad[0]!r}")
    return value


ShortText = Annotated[str, Field(max_length=300)]
ListField = Annotated[list[Annotated[str, Field(min_length=1, max_length=80)]], BeforeValidator(_split_list)]


class Brief(BaseModel):
    """One article to write. Field names are part of the public file formats (YAML, JSON, JSONL, CSV)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    id: str | None = Field(None, description="Stable id (custom_id); derived from the content when absent.")
    title: ShortText = Field(..., min_length=1, description="Title or topic of the article.")
    content_type: Annotated[ContentType, BeforeValidator(_normalise_content_type)] = Field(
        ContentType.EXPLAINER, description="how-to, listicle, explainer, news or review."
    )
    audience: ShortText = Field("general readers", description="Who the article is for.")
    category: ShortText = Field("", description="Editorial category, used for routing.")
    tags: ListField = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    keywords: ListField = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    target_words: int = Field(
        600, description=f"Target length in words, capped to {MIN_TARGET_WORDS}-{MAX_TARGET_WORDS}."
    )
    tone: ShortText = Field("neutral", description="Desired tone, for example friendly, formal, upbeat.")
    style: str | None = Field(None, description="Pin a style by name; wins over routing.")
    notes: str = Field("", max_length=MAX_TEXT, description="Free-form guidance for the writer.")

    @field_validator("title", "audience", "category", "tone", "notes")
    @classmethod
    def _text_is_clean(cls, value: str) -> str:
        return _no_control_chars(value)

    @field_validator("tags", "keywords")
    @classmethod
    def _items_are_clean(cls, value: list[str]) -> list[str]:
        return [_no_control_chars(item.strip()) for item in value]

    @field_validator("audience", "category", "tone")
    @classmethod
    def _lowercase_metadata(cls, value: str) -> str:
        return value.lower()

    @field_validator("target_words", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a whole number of words")
        return value

    @field_validator("target_words")
    @classmethod
    def _cap_target_words(cls, value: int) -> int:
        return min(max(value, MIN_TARGET_WORDS), MAX_TARGET_WORDS)

    @field_validator("id", "style")
    @classmethod
    def _safe_names(cls, value: str | None, info: Any) -> str | None:
        if value is None or value == "":
            return None
        return check_safe_name(info.field_name, value)

    @model_validator(mode="after")
    def _derive_id(self) -> Brief:
        if self.id is None:
            object.__setattr__(self, "id", derive_brief_id(self))
        return self

    @property
    def brief_id(self) -> str:
        """The id, never ``None`` after validation."""
        if self.id is None:  # pragma: no cover - _derive_id always sets it
            raise RuntimeError("brief id was not derived")
        return self.id

    def content_dict(self) -> dict[str, Any]:
        """The brief's content without its id: what the derived id and duplicates checks hash."""
        return self.model_dump(mode="json", exclude={"id"})


def derive_brief_id(brief: Brief) -> str:
    """Deterministic id from the brief's content: ``b-`` and 16 hex digits of a SHA-256."""
    canonical = json.dumps(brief.content_dict(), sort_keys=True, ensure_ascii=False)
    return "b-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
