"""Tests of :mod:`worker.lab.front_matter`: YAML, TOML and JSON front matter, and its refusals."""

from __future__ import annotations

import pytest

from worker.lab.front_matter import split_front_matter


def test_split_front_matter_formats_and_errors() -> None:
    assert split_front_matter("---\ntitle: A\n---\nbody")[:2] == ("yaml", {"title": "A"})
    assert split_front_matter('+++\ntitle = "A"\n+++\nbody')[:2] == ("toml", {"title": "A"})
    assert split_front_matter('{"title": "A"}\nbody') == ("json", {"title": "A"}, "\nbody")
    assert split_front_matter("\ufeffno front matter") == ("none", {}, "no front matter")
    with pytest.raises(ValueError, match="aliases"):
        split_front_matter("---\na: &x [1]\nb: *x\n---\n")
    with pytest.raises(ValueError, match="mapping"):
        split_front_matter("---\n- a list\n---\n")
