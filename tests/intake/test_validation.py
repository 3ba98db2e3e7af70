"""Validating one parsed record as a brief (:mod:`worker.intake.validation`)."""

from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from worker.intake.briefs import Brief
from worker.intake.problems import BriefProblem
from worker.intake.validation import (
    MAX_PROBLEMS_PER_RECORD,
    SourcedBrief,
    shape_problem,
    validate_record,
    validation_problems,
)


def test_a_good_record_becomes_a_sourced_brief() -> None:
    (item,) = validate_record({"title": "Compost bins"}, "f.yaml", "record 1")
    assert isinstance(item, SourcedBrief)
    assert (item.brief.title, item.source) == ("Compost bins", "f.yaml:record 1")


def test_shape_problems_name_the_field() -> None:
    assert shape_problem({"title": "x", "tags": [datetime.date(2026, 1, 1)]}) == (
        "tags.0",
        "a date is not allowed here: use text, numbers or lists",
    )
    assert shape_problem({"notes": [[[[[["deep"]]]]]]}) == ("notes.0.0.0.0.0", "is nested more than 6 levels deep")
    assert shape_problem({"title": "x", "tags": ["a", 1, 2.5, True, None]}) is None


def test_validation_problems_take_a_prefix_and_are_capped() -> None:
    with pytest.raises(ValidationError) as info:
        Brief.model_validate({"title": "x", "target_words": "many"})
    (problem,) = validation_problems(info.value, "job.yaml", "", yaml_hints=True, prefix=("defaults",))
    assert problem == BriefProblem("job.yaml", "", "defaults.target_words", "must be a whole number")
    with pytest.raises(ValidationError) as many:
        Brief.model_validate({"title": "x", **{f"extra{n}": n for n in range(50)}})
    problems = list(validation_problems(many.value, "f.csv", "line 2"))
    assert len(problems) == MAX_PROBLEMS_PER_RECORD
    assert problems[-1].message == f"and {50 - MAX_PROBLEMS_PER_RECORD + 1} more problems in this record"
