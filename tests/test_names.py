"""Unit tests of :mod:`worker.names`: which names may become parts of paths and keys."""

from __future__ import annotations

import pytest

from worker.names import check_safe_name, is_safe_name

UNSAFE = [
    pytest.param("", id="empty"),
    pytest.param("..", id="dotdot"),
    pytest.param(".", id="dot"),
    pytest.param("../x", id="parent-traversal"),
    pytest.param("a/../b", id="inner-traversal"),
    pytest.param("a..b", id="double-dot-inside"),
    pytest.param("a/b", id="slash"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("/abs", id="absolute"),
    pytest.param("a\0b", id="nul"),
    pytest.param("a\nb", id="newline-inside"),
    pytest.param("name\n", id="trailing-newline"),
    pytest.param("a b", id="space"),
    pytest.param(".hidden", id="leading-dot"),
    pytest.param("-rf", id="leading-dash"),
    pytest.param("_x", id="leading-underscore"),
    pytest.param("x" * 129, id="129-chars"),
    pytest.param("{{x}}", id="template"),
    pytest.param("$(id)", id="shell"),
    pytest.param("café", id="non-ascii"),
    pytest.param("a:b", id="colon"),
]

SAFE = ["a", "plain-howto", "tech_deepdive.v2", "A1", "9lives", "x" * 128, "b-0123456789abcdef"]


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_names_are_refused(value: str) -> None:
    assert not is_safe_name(value)
    with pytest.raises(ValueError, match="not a safe name"):
        check_safe_name("style name", value)


@pytest.mark.parametrize("value", SAFE)
def test_safe_names_are_accepted_unchanged(value: str) -> None:
    assert is_safe_name(value)
    assert check_safe_name("brief id", value) is value


def test_error_names_the_kind_and_shortens_long_values() -> None:
    with pytest.raises(ValueError) as exc:
        check_safe_name("job name", "y" * 500)
    message = str(exc.value)
    assert message.startswith("job name ")
    assert "y" * 57 + "..." in message
    assert "y" * 61 not in message
