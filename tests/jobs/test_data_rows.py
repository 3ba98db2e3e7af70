"""Data files of job templates (:mod:`worker.jobs.data_rows`): every format, and bad files as problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.jobs.data_rows import iter_data_rows


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("rows.yaml", "rows:\n  - {a: 1}\n  - {a: x, b: [1, 2]}\n", [{"a": 1}, {"a": "x", "b": [1, 2]}]),
        ("rows.json", json.dumps([{"a": "1"}]), [{"a": "1"}]),
        ("rows.jsonl", '{"a": 1}\n\n{"a": 2}\n', [{"a": 1}, {"a": 2}]),
        ("rows.csv", "\ufeffa,b\n1,\n,\n3,4\n", [{"a": "1"}, {"a": "3", "b": "4"}]),
    ],
)
def test_data_file_formats(tmp_path: Path, name: str, content: str, expected: list[dict[str, Any]]) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    rows = list(iter_data_rows(path))
    assert [row for _, _, row in rows] == expected  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "a,a\n1,2\n", "every column once"),
        ("bad.csv", "a,b\n1,2,3\n", "has 3 cells"),
        ("bad.yaml", "a: 1\n", "expected a list of rows"),
        ("bad.yaml", "- x: &y 1\n- z: *y\n", "aliases"),
        ("bad.jsonl", '{"a": 1}\nnot json\n', "invalid JSON"),
        ("bad.json", '[{"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}]', "nested"),
        ("bad.txt", "x", "unknown data file type"),
    ],
)
def test_bad_data_files_are_problems(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    problems = [item for item in iter_data_rows(path) if not isinstance(item, tuple)]
    assert any(message in p.message for p in problems), problems
