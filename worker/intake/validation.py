"""Validating one parsed record as a :class:`~worker.intake.briefs.Brief`: plain data only (no sets, dates or
bytes, nesting capped), each pydantic error turned into a short message for the person who wrote the file."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from worker.intake.briefs import Brief
from worker.intake.problems import BriefProblem, kind_of, shorten
from worker.intake.readers import duplicate_keys

logger = logging.getLogger(__name__)

MAX_RECORD_DEPTH = 6
"""Deepest nesting of collections inside one record (a brief needs 2: the mapping and its lists)."""
MAX_FIELD_NAME_CHARS = 80
MAX_PROBLEMS_PER_RECORD = 20
"""A record with more validation errors than this gets the first ones and a count of the rest."""

FIELD_NAMES = tuple(Brief.model_fields)
_PLAIN_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class SourcedBrief:
    """A validated brief and the place it was read from."""

    brief: Brief
    file: str
    record: str

    @property
    def source(self) -> str:
        """``"file:record"``, for messages and provenance."""
        return f"{self.file}:{self.record}"


def validate_record(
    data: Any, file: str, record: str, *, yaml_hints: bool = False
) -> Iterator[SourcedBrief | BriefProblem]:
    """Turn one parsed record into a :class:`SourcedBrief`, or yield its problems."""
    if not isinstance(data, dict):
        yield BriefProblem(file, record, "", f"expected a mapping of brief fields, found {kind_of(data)}")
        return
    duplicates = duplicate_keys(data)
    for key in duplicates:
        yield BriefProblem(file, record, field_name((key,)), "is given more than once")
    if duplicates:
        return
    shape = shape_problem(data)
    if shape:
        yield BriefProblem(file, record, *shape)
        return
    try:
        brief = Brief.model_validate(data)
    except ValidationError as exc:
        yield from validation_problems(exc, file, record, yaml_hints=yaml_hints)
        return
    yield SourcedBrief(brief, file, record)


def validation_problems(
    exc: ValidationError, file: str, record: str, *, yaml_hints: bool = False, prefix: Sequence[str] = ()
) -> Iterator[BriefProblem]:
    """One problem for each of the first :data:`MAX_PROBLEMS_PER_RECORD` errors, then a count of the rest;
    field names start with ``prefix`` (``("defaults",)``)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    shown = errors if len(errors) <= MAX_PROBLEMS_PER_RECORD else errors[: MAX_PROBLEMS_PER_RECORD - 1]
    for error in shown:
        message = error_message(error["type"], error["msg"], yaml_hints=yaml_hints)
        yield BriefProblem(file, record, field_name((*prefix, *error.get("loc", ()))), message)
    if len(shown) < len(errors):
        yield BriefProblem(file, record, "", f"and {len(errors) - len(shown)} more problems in this record")


def error_message(kind: str, msg: str, *, yaml_hints: bool) -> str:
    """A short message for one pydantic error, written for the person who wrote the file."""
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"is not a brief field (fields: {', '.join(FIELD_NAMES)})"
    if kind == "invalid_key":
        return "field names must be text"
    if kind in {"int_type", "int_parsing", "int_from_float", "int_parsing_size"}:
        return "must be a whole number"
    msg = msg.removeprefix("Value error, ")
    if yaml_hints and kind == "string_type":
        msg += " (in YAML, put numbers, dates and yes/no values that are meant as text in quotes)"
    return msg


def field_name(loc: Sequence[Any]) -> str:
    """A dotted field name (``tags.2``), shortened for messages."""
    return shorten(".".join(str(part) for part in loc), MAX_FIELD_NAME_CHARS)


def shape_problem(record: dict[Any, Any]) -> tuple[str, str] | None:
    """``(field, message)`` when a record is not plain data (too deep, or sets, bytes, dates...), else None.

    Walks without recursion. Plain data is what JSON can express; YAML can express more (``!!set``,
    ``!!binary``, timestamps), which would otherwise be coerced silently, or in the case of sets, in a
    random order that would make derived ids non-deterministic.
    """
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(record, 1, ())]
    while stack:
        value, depth, loc = stack.pop()
        if isinstance(value, dict):
            children: Iterator[tuple[Any, Any]] = iter(value.items())
        elif isinstance(value, list):
            children = enumerate(value)
        elif isinstance(value, _PLAIN_SCALARS):
            continue
        else:
            return field_name(loc), f"{kind_of(value)} is not allowed here: use text, numbers or lists"
        if depth > MAX_RECORD_DEPTH:
            return field_name(loc), f"is nested more than {MAX_RECORD_DEPTH} levels deep"
        stack.extend((child, depth + 1, (*loc, key)) for key, child in children)
    return None


__all__ = [
    "FIELD_NAMES",
    "MAX_PROBLEMS_PER_RECORD",
    "MAX_RECORD_DEPTH",
    "SourcedBrief",
    "error_message",
    "field_name",
    "shape_problem",
    "validate_record",
    "validation_problems",
]
