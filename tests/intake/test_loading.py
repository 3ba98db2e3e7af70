"""Tests of :mod:`worker.intake.loading`: brief files in every format, good and hostile."""

from __future__ import annotations

import csv
import inspect
import io
import itertools
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.intake import readers, validation
from worker.intake.briefs import MAX_TARGET_WORDS, Brief, ContentType
from worker.intake.loading import (
    BriefProblem,
    LoadReport,
    SourcedBrief,
    iter_brief_file,
    load_brief_files,
)

DATA = Path(__file__).parent.parent / "data" / "briefs"
REPO = Path(__file__).parent.parent.parent


def split(items: Iterable[SourcedBrief | BriefProblem]) -> tuple[list[SourcedBrief], list[BriefProblem]]:
    briefs: list[SourcedBrief] = []
    problems: list[BriefProblem] = []
    for item in items:
        assert isinstance(item, SourcedBrief | BriefProblem), item
        (briefs if isinstance(item, SourcedBrief) else problems).append(item)
    return briefs, problems


def load(path: Path) -> tuple[list[SourcedBrief], list[BriefProblem]]:
    return split(iter_brief_file(path))


def by_record(items: Iterable[SourcedBrief | BriefProblem]) -> dict[str, Any]:
    return {item.record: item for item in items}


# ----------------------------------------------------------------------------------- interface bits


def test_problem_str_is_one_line() -> None:
    problem = BriefProblem("briefs.csv", "line 7", "target_words", "must be a whole number")
    assert str(problem) == "briefs.csv, line 7, field 'target_words': must be a whole number"
    assert str(BriefProblem("b.yaml", "", "", "file not found")) == "b.yaml: file not found"
    assert str(BriefProblem("b.yaml", "record 2", "", "oops")) == "b.yaml, record 2: oops"
    hostile = str(BriefProblem("a\nb.yaml", "line 1", "x\ry", "two\nlines\x1b[31m\u2028"))
    assert "\n" not in hostile
    assert "\r" not in hostile
    assert "\x1b" not in hostile
    assert "\u2028" not in hostile
    assert "\\n" in hostile


def test_sourced_brief_source_and_report_ok() -> None:
    item = SourcedBrief(Brief(title="t"), "x.jsonl", "line 3")
    assert item.source == "x.jsonl:line 3"
    assert LoadReport([item], []).ok
    assert not LoadReport([item], [BriefProblem("x", "", "", "bad")]).ok
    assert load_brief_files([]).ok


def test_problems_and_briefs_are_frozen() -> None:
    problem = BriefProblem("f", "", "", "m")
    with pytest.raises(AttributeError):
        problem.message = "changed"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ good files


def test_good_yaml_list() -> None:
    briefs, problems = load(DATA / "good.yaml")
    assert problems == []
    assert [item.record for item in briefs] == ["record 1", "record 2"]
    first = briefs[0].brief
    assert first.id == "yaml-one"
    assert first.content_type is ContentType.HOW_TO
    assert first.audience == "beginner gardeners"
    assert first.tags == ["roses", "pruning"]
    assert first.keywords == ["prune roses", "rose care"]
    assert first.target_words == 250
    assert first.notes == "Keep {{ 7*7 }} and {% if x %} literally; it is data."
    second = briefs[1].brief
    assert second.id is not None
    assert second.id.startswith("b-")
    assert second.content_type is ContentType.EXPLAINER
    assert second.target_words == MAX_TARGET_WORDS
    assert briefs[0].source == f"{DATA / 'good.yaml'}:record 1"


def test_good_yml_mapping_shape() -> None:
    briefs, problems = load(DATA / "good.yml")
    assert problems == []
    assert len(briefs) == 1
    brief = briefs[0].brief
    assert (brief.id, brief.content_type, brief.target_words) == ("yml-one", ContentType.LISTICLE, 180)
    assert brief.tags == ["salads", "summer", "food"]


def test_good_json_both_shapes() -> None:
    briefs, problems = load(DATA / "good.json")
    assert problems == []
    assert [item.brief.id for item in briefs] == ["json-one", "json-two"]
    assert briefs[0].brief.tags == ["postgres", "performance"]
    assert briefs[1].brief.content_type is ContentType.REVIEW
    assert briefs[1].record == "record 2"
    briefs, problems = load(DATA / "good_mapping.json")
    assert problems == []
    assert [(item.brief.id, item.brief.content_type) for item in briefs] == [("json-map-one", ContentType.NEWS)]


@pytest.mark.parametrize("name", ["good.jsonl", "good.ndjson"])
def test_good_jsonl_skips_blank_lines(name: str) -> None:
    briefs, problems = load(DATA / name)
    prefix = name.split(".")[1]
    assert problems == []
    assert [(item.brief.id, item.record) for item in briefs] == [
        (f"{prefix}-one", "line 1"),
        (f"{prefix}-two", "line 3"),
        (f"{prefix}-three", "line 4"),
    ]
    assert briefs[0].brief.content_type is ContentType.HOW_TO
    assert briefs[2].brief.tone == "upbeat"


@pytest.mark.parametrize(("name", "prefix"), [("good.csv", "csv"), ("good_bom.csv", "bom")])
def test_good_csv_with_and_without_bom(name: str, prefix: str) -> None:
    raw = (DATA / name).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == (prefix == "bom")
    briefs, problems = load(DATA / name)
    assert problems == []
    assert [item.record for item in briefs] == ["line 2", "line 3", "line 5"]
    one, two, three = (item.brief for item in briefs)
    assert one.id == f"{prefix}-one"  # the BOM did not end up in the first column name or value
    assert one.content_type is ContentType.HOW_TO
    assert one.tags == ["diy", "painting"]
    assert one.keywords == ["fence paint"]
    assert one.target_words == 220
    assert one.notes == ""
    assert two.title == "Indexes, explained"
    assert two.keywords == []  # empty cell: not given
    assert two.target_words == 600  # empty cell: the default
    assert two.notes == "Line one\nline two"
    assert three.id is not None
    assert three.id.startswith("b-")  # empty id cell: derived
    assert three.notes == '=HYPERLINK("http://x")'


def test_csv_formula_cells_stay_text() -> None:
    briefs, problems = load(DATA / "formula.csv")
    assert problems == []
    brief = briefs[0].brief
    assert brief.title == "=1+1"
    assert brief.notes == "+cmd|' /C calc'!A0"
    assert brief.tags == ["@SUM(A1)", "-2+3"]
    assert brief.audience == "-people"


def test_csv_header_is_case_insensitive(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text(" ID , Title ,Target_Words\nabc,Hello,100\n", encoding="utf-8")
    briefs, problems = load(path)
    assert problems == []
    assert (briefs[0].brief.id, briefs[0].brief.title, briefs[0].brief.target_words) == ("abc", "Hello", 100)


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = tmp_path / "B.YAML"
    path.write_text("- title: Shouting\n", encoding="utf-8")
    briefs, problems = load(path)
    assert problems == []
    assert briefs[0].brief.title == "Shouting"


def test_samples_load_and_cover_three_voices() -> None:
    report = load_brief_files([REPO / "briefs" / "samples.yaml"])
    assert report.ok, [str(problem) for problem in report.problems]
    assert len(report.briefs) == 9
    briefs = [item.brief for item in report.briefs]
    assert all(150 <= brief.target_words <= 300 for brief in briefs)
    assert all(brief.keywords and brief.tags for brief in briefs)
    kinds = [brief.content_type for brief in briefs]
    assert kinds.count(ContentType.HOW_TO) == 3
    assert kinds.count(ContentType.EXPLAINER) == 3
    assert sum(kind in {ContentType.LISTICLE, ContentType.REVIEW} for kind in kinds) == 3
    assert sum(brief.audience == "developers" for brief in briefs) == 3


# ------------------------------------------------------------------------------------- malformed files


def test_jsonl_broken_line_in_the_middle() -> None:
    items = list(iter_brief_file(DATA / "broken_middle.jsonl"))
    records = by_record(items)
    assert [item.record for item in items] == [f"line {n}" for n in range(1, 7)]
    assert {records[f"line {n}"].brief.id for n in (1, 2, 6)} == {"line-one", "line-two", "line-six"}
    assert isinstance(records["line 3"], BriefProblem)
    assert "invalid JSON" in records["line 3"].message
    assert isinstance(records["line 4"], BriefProblem)
    assert "expected a mapping" in records["line 4"].message
    assert "a list" in records["line 4"].message
    assert (records["line 5"].field, records["line 5"].message) == ("target_words", "must be a whole number")
    assert str(records["line 3"]).startswith(f"{DATA / 'broken_middle.jsonl'}, line 3: invalid JSON")


def test_csv_bad_rows_name_line_and_field() -> None:
    briefs, problems = load(DATA / "bad_row.csv")
    assert [(item.record, item.brief.id) for item in briefs] == [
        ("line 2", "row-one"),
        ("line 5", "row-four"),
        ("line 7", "row-six"),
    ]
    assert briefs[1].brief.title == 'Fourth "quoted"'
    assert [(problem.record, problem.field) for problem in problems] == [
        ("line 3", "target_words"),
        ("line 4", ""),
    ]
    assert str(problems[0]).endswith("bad_row.csv, line 3, field 'target_words': must be a whole number")
    assert "5 cells" in problems[1].message


def test_csv_unknown_or_repeated_columns_are_a_file_problem(tmp_path: Path) -> None:
    briefs, problems = load(DATA / "unknown_column.csv")
    assert briefs == []
    assert len(problems) == 1
    assert (problems[0].record, problems[0].field) == ("", "")
    assert "'colour'" in problems[0].message
    path = tmp_path / "rep.csv"
    path.write_text("title,title\na,b\n", encoding="utf-8")
    briefs, problems = load(path)
    assert briefs == []
    assert "repeated column" in problems[0].message


def test_csv_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert [str(problem) for problem in load(empty)[1]] == [
        f"{empty}: expected a header row naming the columns, found nothing (an empty file)"
    ]
    blank_first = tmp_path / "blank.csv"
    blank_first.write_bytes(b"\nid,title\n")
    assert [problem.message.startswith("no header row") for problem in load(blank_first)[1]] == [True]
    header_only = tmp_path / "header.csv"
    header_only.write_bytes(b"\xef\xbb\xbfid,title\r\n")
    assert load(header_only) == ([], [])


def test_csv_row_of_other_whitespace_is_a_problem_not_a_blank_row(tmp_path: Path) -> None:
    # Found by tests/reliability/test_hostile_input.py: a title of 301 no-break spaces vanished without a word.
    path = tmp_path / "nbsp.csv"
    path.write_text("id,title\n, \t,\n\xa0\xa0,\u2003\nfine,Fine\n", encoding="utf-8")
    briefs, problems = load(path)
    assert [item.brief.id for item in briefs] == ["fine"]
    assert [(problem.record, problem.field) for problem in problems] == [("line 3", "title")]


def test_csv_unterminated_quote(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('id,title\nfine,Fine\nbad,"never closed\nmore,text\n', encoding="utf-8")
    briefs, problems = load(path)
    assert [item.brief.id for item in briefs] == ["fine"]
    assert len(problems) == 1
    assert problems[0].record == "line 3"


def test_csv_field_over_the_csv_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    huge = "x" * (csv.field_size_limit() + 10)
    path.write_text(f"id,title\nbefore,B\nhuge,{huge}\nafter,A\n", encoding="utf-8")
    briefs, problems = load(path)
    assert [item.brief.id for item in briefs] == ["before", "after"]
    assert [problem.record for problem in problems] == ["line 3"]
    assert "field limit" in problems[0].message


@pytest.mark.parametrize("name", ["invalid_utf8.jsonl", "invalid_utf8.csv"])
def test_invalid_utf8_line_costs_only_its_record(name: str) -> None:
    briefs, problems = load(DATA / name)
    assert [item.brief.title for item in briefs] == ["Fine", "Café"]
    assert len(problems) == 1
    line = "line 2" if name.endswith(".jsonl") else "line 3"
    assert problems[0].record == line
    assert "invalid UTF-8" in problems[0].message


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_invalid_utf8_whole_file_names_the_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    body = '[\n{"title": "ok"},\n{"title": "bad \xff"}\n]\n'
    path.write_bytes(body.encode("latin-1"))
    briefs, problems = load(path)
    assert briefs == []
    assert len(problems) == 1
    assert "invalid UTF-8 at line 3" in problems[0].message


def test_yaml_syntax_error_names_the_line() -> None:
    briefs, problems = load(DATA / "syntax_error.yaml")
    assert briefs == []
    assert len(problems) == 1
    assert problems[0].record == ""
    assert problems[0].message.startswith("invalid YAML at line ")


def test_json_syntax_error_names_the_line() -> None:
    briefs, problems = load(DATA / "syntax_error.json")
    assert briefs == []
    assert [problem.message.split(":")[0] for problem in problems] == ["invalid JSON at line 3, column 28"]


def test_yaml_alias_bomb_refused_quickly() -> None:
    start = time.perf_counter()
    briefs, problems = load(DATA / "alias_bomb.yaml")
    assert time.perf_counter() - start < 1.0
    assert briefs == []
    assert len(problems) == 1
    assert "aliases" in problems[0].message
    assert "line 2" in problems[0].message


def test_yaml_single_alias_refused(tmp_path: Path) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text("- title: &t Hello\n- title: *t\n", encoding="utf-8")
    briefs, problems = load(path)
    assert briefs == []
    assert "aliases" in problems[0].message


def test_yaml_deep_nesting_refused() -> None:
    briefs, problems = load(DATA / "deep.yaml")
    assert briefs == []
    assert len(problems) == 1
    assert "nested more than" in problems[0].message


def test_yaml_very_deep_nesting_is_fast_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "deeper.yaml"
    path.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    start = time.perf_counter()
    briefs, problems = load(path)
    assert time.perf_counter() - start < 2.0
    assert briefs == []
    assert "nested more than" in problems[0].message


def test_yaml_duplicate_keys_refused() -> None:
    briefs, problems = load(DATA / "dup_keys.yaml")
    assert briefs == []
    assert "duplicate key 'title'" in problems[0].message
    assert "line 2" in problems[0].message


def test_yaml_unsafe_tags_refused(tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text("- title: !!python/object/apply:os.system ['echo hacked']\n", encoding="utf-8")
    briefs, problems = load(path)
    assert briefs == []
    assert problems[0].message.startswith("invalid YAML")


def test_json_deep_nesting(tmp_path: Path) -> None:
    very_deep = tmp_path / "very_deep.json"
    very_deep.write_text('[{"title": "x", "notes": ' + "[" * 100_000 + "]" * 100_000 + "}]", encoding="utf-8")
    briefs, problems = load(very_deep)
    assert briefs == []
    assert [problem.message for problem in problems] == ["invalid JSON: nested too deeply"]
    # Moderately deep: only that record is refused.
    deep = tmp_path / "deep.json"
    deep.write_text(json.dumps([{"title": "ok"}, {"title": "x", "notes": [[[[[[[["deep"]]]]]]]]}]), encoding="utf-8")
    briefs, problems = load(deep)
    assert [item.brief.title for item in briefs] == ["ok"]
    assert [(problem.record, problem.field) for problem in problems] == [("record 2", "notes.0.0.0.0.0")]
    assert "nested more than" in problems[0].message


def test_jsonl_deep_line_and_huge_number(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    lines = ['{"title": "first"}', "[" * 100_000 + "]" * 100_000, '{"title": 1' + "0" * 5000 + "}", '{"title": "last"}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    briefs, problems = load(path)
    assert [item.brief.title for item in briefs] == ["first", "last"]
    assert [problem.record for problem in problems] == ["line 2", "line 3"]
    assert "nested too deeply" in problems[0].message


@pytest.mark.parametrize("name", ["not_mappings.yaml", "not_mappings.json"])
def test_records_that_are_not_mappings(name: str) -> None:
    briefs, problems = load(DATA / name)
    assert len(briefs) == 1
    assert briefs[0].record == "record 1"
    assert [problem.record for problem in problems] == ["record 2", "record 3", "record 4", "record 5"]
    for problem in problems[:3]:
        assert problem.message.startswith("expected a mapping of brief fields, found ")


def test_json_duplicate_keys_in_a_record() -> None:
    problems = load(DATA / "not_mappings.json")[1]
    assert (problems[-1].field, problems[-1].message) == ("title", "is given more than once")


def test_bad_records_yaml_one_problem_per_error() -> None:
    items = list(iter_brief_file(DATA / "bad_records.yaml"))
    records = by_record(items)
    assert isinstance(records["record 5"], SourcedBrief)
    assert records["record 5"].brief.id == "good-after-bad"
    expected = {
        "record 1": "target_words",
        "record 2": "id",
        "record 3": "colour",
        "record 4": "tags.1",
        "record 6": "tags",
    }
    assert {record: records[record].field for record in expected} == expected
    assert "not a safe name" in records["record 2"].message
    assert "not a brief field" in records["record 3"].message
    assert "quotes" in records["record 4"].message
    assert "set" in records["record 6"].message


def test_one_problem_per_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    record = {"title": "", "target_words": "x", "tags": ["ok", "bad\x00"], "extra": 1}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    problems = load(path)[1]
    assert {problem.field for problem in problems} == {"title", "target_words", "tags", "extra"}
    assert {problem.record for problem in problems} == {"line 1"}


def test_problems_per_record_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    record = {"title": "t", **{f"unknown{n}": n for n in range(100)}}
    path.write_text(json.dumps(record) + "\n" + json.dumps({"title": "next"}) + "\n", encoding="utf-8")
    briefs, problems = load(path)
    assert [item.brief.title for item in briefs] == ["next"]
    assert len(problems) == validation.MAX_PROBLEMS_PER_RECORD
    assert problems[-1].message == f"and {100 - validation.MAX_PROBLEMS_PER_RECORD + 1} more problems in this record"


def test_semicolon_separated_csv_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "euro.csv"
    path.write_text("id;title\nx;y\n", encoding="utf-8")
    problems = load(path)[1]
    assert len(problems) == 1
    assert problems[0].message.endswith("the file must be comma-separated")


def test_huge_csv_header_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(["title"] * 100_000 + [f"c{n}" for n in range(100_000)]) + "\n", encoding="utf-8")
    start = time.perf_counter()
    problems = load(path)[1]
    assert time.perf_counter() - start < 2.0
    assert len(problems) == 1
    assert len(str(problems[0])) < 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("title: a single brief\n", "looks like a single brief"),
        ("briefs: [{title: x}]\nextra: 1\n", "unexpected top-level key"),
        ("briefs: {title: x}\n", "found a mapping"),
        ("just text\n", "found text"),
        ("", "found nothing"),
        ("{other: 1}\n", "expected a list of briefs"),
    ],
)
def test_yaml_wrong_document_shapes(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "shape.yaml"
    path.write_text(text, encoding="utf-8")
    briefs, problems = load(path)
    assert briefs == []
    assert len(problems) == 1
    assert expected in problems[0].message
    assert problems[0].record == ""


def test_unknown_extension_missing_file_directory_and_fifo(tmp_path: Path) -> None:
    problems = load(DATA / "briefs.txt")[1]
    assert len(problems) == 1
    assert "unknown brief file type '.txt'" in problems[0].message
    assert load(tmp_path / "missing.yaml")[1][0].message == "file not found"
    folder = tmp_path / "folder.json"
    folder.mkdir()
    assert "directory" in load(folder)[1][0].message
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    assert load(fifo)[1][0].message == "is not a regular file"  # and it did not block


@pytest.mark.parametrize("suffix", [".yaml", ".jsonl", ".csv"])
def test_unreadable_file_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    path = tmp_path / f"secret{suffix}"
    path.write_text("title\nx\n", encoding="utf-8")

    def refuse(*args: Any, **kwargs: Any) -> Any:  # chmod 0 would not stop root, so simulate it
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    assert [str(problem) for problem in load(path)[1]] == [f"{path}: cannot read the file: Permission denied"]


# ------------------------------------------------------------------------------------------ limits


def test_whole_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "MAX_JSON_BYTES", 512 * 1024)
    monkeypatch.setattr(readers, "MAX_YAML_BYTES", 512 * 1024)
    records = [{"title": f"x{n}", "notes": "y" * 1000} for n in range(600)]
    for suffix, dump in ((".json", json.dumps), (".yaml", yaml.safe_dump)):
        path = tmp_path / f"big{suffix}"
        path.write_text(dump(records), encoding="utf-8")
        assert path.stat().st_size > 512 * 1024
        briefs, problems = load(path)
        assert briefs == []
        assert len(problems) == 1
        assert "larger than 0.5 MiB" in problems[0].message
        assert "JSONL or CSV" in problems[0].message


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_line_length_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 200)
    path = tmp_path / f"long{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps({"title": "before"}), json.dumps({"title": "x" * 5000}), json.dumps({"title": "after"})]
        long_line = "line 2"
    else:
        lines = ["title", "before", "x" * 5000, "after"]
        long_line = "line 3"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    briefs, problems = load(path)
    assert [item.brief.title for item in briefs] == ["before", "after"]
    assert [(problem.record, problem.message) for problem in problems] == [
        (long_line, "line is longer than 200 bytes; skipped")
    ]


# ------------------------------------------------------------------------------------------ duplicates


def test_duplicate_ids_within_and_across_files() -> None:
    report = load_brief_files([DATA / "dup_a.yaml", DATA / "dup_b.jsonl"])
    assert not report.ok
    assert [item.source for item in report.briefs] == [
        f"{DATA / 'dup_a.yaml'}:record 1",
        f"{DATA / 'dup_a.yaml'}:record 2",
        f"{DATA / 'dup_b.jsonl'}:line 2",
    ]
    assert [(problem.file, problem.record, problem.field) for problem in report.problems] == [
        (str(DATA / "dup_a.yaml"), "record 3", "id"),
        (str(DATA / "dup_b.jsonl"), "line 1", "id"),
    ]
    assert f"first seen at {DATA / 'dup_a.yaml'}:record 2" in report.problems[0].message
    assert "'shared-id'" in report.problems[1].message
    assert f"first seen at {DATA / 'dup_a.yaml'}:record 1" in report.problems[1].message


def test_load_brief_files_collects_everything() -> None:
    paths = [DATA / "good.yaml", DATA / "missing.csv", DATA / "broken_middle.jsonl", DATA / "good.csv"]
    report = load_brief_files(paths)
    assert len(report.briefs) == 2 + 3 + 3
    assert {problem.file for problem in report.problems} == {
        str(DATA / "missing.csv"),
        str(DATA / "broken_middle.jsonl"),
    }
    assert len({item.brief.brief_id for item in report.briefs}) == len(report.briefs)


# -------------------------------------------------------------------------------------------- streaming


def write_jsonl(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            record = {"id": f"brief-{number}", "title": f"Article number {number}", "notes": "n" * 200}
            handle.write(json.dumps(record) + "\n")


def test_jsonl_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    write_jsonl(path, 10_000)
    size = path.stat().st_size
    assert size > 2_000_000
    items = iter_brief_file(path)
    assert inspect.isgenerator(items)
    tracemalloc.start()
    try:
        first = list(itertools.islice(items, 5))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [item.brief.id for item in first] == [f"brief-{n}" for n in range(5)]
    assert peak < size / 10
    # The rest of the file has not been read yet: truncate it and the generator stops early.
    path.write_bytes(b"")
    rest = list(items)
    assert len(first) + len(rest) < 200


def test_csv_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "notes"])
        writer.writerows([f"row-{n}", f"Title {n}", "n" * 200] for n in range(10_000))
    items = iter_brief_file(path)
    first = list(itertools.islice(items, 3))
    assert [item.record for item in first] == ["line 2", "line 3", "line 4"]
    path.write_bytes(b"")
    assert len(list(items)) < 200


def test_jsonl_10000_briefs_all_load(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    write_jsonl(path, 10_000)
    report = load_brief_files([path])
    assert report.ok
    assert len(report.briefs) == 10_000
    assert report.briefs[-1].record == "line 10000"


# -------------------------------------------------------------------------------------------- fuzzing

FIELDS = [*Brief.model_fields, "colour", "", "__class__", "{{ 7*7 }}"]
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["{{ 7*7 }}", "{% include '/etc/passwd' %}", "=cmd|'/C calc'!A0", "a;b;;c", "../x", "\x00"]),
    st.builds(lambda char, count: char * count, st.characters(), st.integers(0, 5000)),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=20),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**50), 10**50), st.floats(), texts)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(FIELDS) | texts, values, max_size=8)
documents = st.one_of(records, values)


def dump_csv(record: dict[str, Any]) -> str:
    names = [name for name in record if name]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names)
    writer.writerow(["" if record[name] is None else str(record[name]) for name in names])
    return buffer.getvalue()


def check_items(items: list[Any], path: Path) -> None:
    if path.suffix != ".csv":  # a CSV row of empty cells is a blank row, legitimately skipped
        assert items, "every record yields a brief or a problem"
    for item in items:
        assert isinstance(item, SourcedBrief | BriefProblem)
        assert item.file == str(path)
        if isinstance(item, BriefProblem):
            assert "\n" not in str(item)
            assert item.message
        else:
            assert item.brief.brief_id


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_records_never_raise(document: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files = {
            "r.jsonl": json.dumps(document),
            "r.json": json.dumps([document]),
            "r.yaml": yaml.safe_dump([document], allow_unicode=False),
        }
        if isinstance(document, dict) and any(document):
            files["r.csv"] = dump_csv(document)
        for name, text in files.items():
            path = root / name
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            check_items(list(iter_brief_file(path)), path)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([".yaml", ".json", ".jsonl", ".csv"]))
def test_random_bytes_never_raise(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"junk{suffix}"
        path.write_bytes(content)
        for item in iter_brief_file(path):
            assert isinstance(item, SourcedBrief | BriefProblem)
            assert "\n" not in str(item)
