"""The shared readers of YAML, JSON, JSONL and CSV files (:mod:`worker.intake.readers`), which brief files,
job files and job data files all use: parsed records with their labels, or problems, never an exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.intake.loading import iter_brief_file
from worker.intake.problems import BriefProblem
from worker.intake.readers import (
    Parsed,
    duplicate_keys,
    iter_csv,
    iter_jsonl,
    parse_json,
    parse_yaml,
    read_document,
    read_text,
)
from worker.jobs.data_rows import iter_data_rows


def written(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def upper_names(row: list[str]) -> list[str] | str:
    return [name.upper() for name in row] if row else "no names"


def test_jsonl_rows_are_labelled_by_line_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = written(tmp_path, "r.jsonl", '{"a": 1}\n\n  \nnot json\n[2]\n')
    items = list(iter_jsonl(path, "r.jsonl"))
    assert items[0] == ("line 1", {"a": 1})
    assert items[1] == BriefProblem("r.jsonl", "line 4", "", "invalid JSON at column 1: Expecting value")
    assert items[2] == ("line 5", [2])
    assert len(items) == 3


def test_csv_rows_keep_the_cells_that_are_not_blank_as_written(tmp_path: Path) -> None:
    path = written(tmp_path, "r.csv", "\ufeffa,b\n x ,\n,\n1,2,3\n")
    items = list(iter_csv(path, "r.csv", upper_names))
    assert items == [
        ("line 2", {"A": " x "}),
        BriefProblem("r.csv", "line 4", "", "has 3 cells but the header row has 2"),
    ]


def test_csv_header_check_decides_the_names_or_the_problem(tmp_path: Path) -> None:
    path = written(tmp_path, "h.csv", "\na,b\n")
    assert list(iter_csv(path, "h.csv", upper_names)) == [BriefProblem("h.csv", "", "", "no names")]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("e.jsonl", b"", "expected one JSON object a line, found nothing (an empty file)"),
        ("e.jsonl", b"\n  \r\n\n", "expected one JSON object a line, found nothing (an empty file)"),
        ("e.csv", b"", "expected a header row naming the columns, found nothing (an empty file)"),
    ],
)
def test_an_empty_streamed_file_is_one_problem_with_the_file(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = written(tmp_path, name, content)
    reader = iter_jsonl(path, name) if name.endswith(".jsonl") else iter_csv(path, name, upper_names)
    assert list(reader) == [BriefProblem(name, "", "", expected)]


@pytest.mark.parametrize("suffix", [".yaml", ".jsonl", ".csv"])
def test_empty_brief_and_data_files_are_reported_alike(tmp_path: Path, suffix: str) -> None:
    path = written(tmp_path, f"empty{suffix}", b"")
    for items in (list(iter_brief_file(path)), list(iter_data_rows(path))):
        assert len(items) == 1 and isinstance(items[0], BriefProblem)
        assert (items[0].record, items[0].field) == ("", "")
        assert "found nothing" in items[0].message


def test_whole_documents_by_suffix(tmp_path: Path) -> None:
    assert read_document(written(tmp_path, "d.json", '{"a": [1]}'), "d.json") == Parsed({"a": [1]})
    assert read_document(written(tmp_path, "d.yml", "a: [1]\n"), "d.yml") == Parsed({"a": [1]})
    assert read_document(written(tmp_path, "n.yaml", ""), "n.yaml") == Parsed(None)
    bad = read_document(written(tmp_path, "u.yaml", b"a: \xff\n"), "u.yaml")
    assert bad == BriefProblem("u.yaml", "", "", "invalid UTF-8 at line 1 (byte 4 of the file)")


def test_read_text_caps_the_size(tmp_path: Path) -> None:
    path = written(tmp_path, "big.yaml", "x" * 2000)
    problem = read_text(path, "big.yaml", 1000)
    assert isinstance(problem, BriefProblem) and "larger than" in problem.message
    assert read_text(path, "big.yaml", 5000) == "x" * 2000


def test_yaml_refusals_and_json_duplicate_keys() -> None:
    alias = parse_yaml("a: &x 1\nb: *x\n", "f.yaml")
    assert isinstance(alias, BriefProblem) and alias.message.startswith("refused YAML at line 2")
    duplicate = parse_yaml("a: 1\na: 2\n", "f.yaml")
    assert isinstance(duplicate, BriefProblem) and "duplicate key 'a'" in duplicate.message
    parsed = parse_json('{"a": 1, "a": 2, "b": 3}', "f.json")
    assert isinstance(parsed, Parsed) and duplicate_keys(parsed.value) == ("a",)
    assert duplicate_keys({"a": 1}) == ()
    broken = parse_json("[1,", "f.json")
    assert isinstance(broken, BriefProblem) and broken.message.startswith("invalid JSON at line 1")
