"""The reliability ledger: what each fault-injection or hostile-input test did and what it counted.

Every test in ``tests/reliability`` records its figures on a :class:`Row` (one row per fault or input class):
how many runs, how many faults it injected, how many briefs were involved, and what it *measured* afterwards —
briefs lost, articles duplicated, worker processes that crashed when they should not have. The figures come
from the store and the process table, never from constants; the test then asserts them. At the end of the
session the ledger is written as JSON and as a Markdown table (``COPYDESK_RELIABILITY_REPORT``, default
``build/reliability.md``); ``python tests/reliability/ledger.py splice`` puts that table into
docs/reliability.md. ``scripts/reliability.sh`` does both in one command.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_ENV = "COPYDESK_RELIABILITY_REPORT"
DEFAULT_REPORT = Path("build/reliability.md")
TABLE_START = "<!-- reliability-table:start -->"
TABLE_END = "<!-- reliability-table:end -->"
COLUMNS = (
    "area",
    "fault or input",
    "how injected",
    "what was checked",
    "runs",
    "faults",
    "briefs",
    "lost",
    "duplicates",
    "crashes",
    "result",
)


@dataclass
class Row:
    """One fault or input class. Tests add to it with :meth:`add`; the same key may be shared by tests."""

    area: str
    fault: str
    injection: str
    checked: str
    runs: int = 0
    faults: int = 0
    briefs: int = 0
    lost: int = 0
    duplicates: int = 0
    crashes: int = 0
    tests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(
        self, *, runs: int = 1, faults: int = 0, briefs: int = 0, lost: int = 0, duplicates: int = 0, crashes: int = 0
    ) -> None:
        self.runs += runs
        self.faults += faults
        self.briefs += briefs
        self.lost += lost
        self.duplicates += duplicates
        self.crashes += crashes

    @property
    def result(self) -> str:
        if self.failed:
            return "FAILED"
        return "ok" if self.lost == self.duplicates == self.crashes == 0 else "NOT OK"


@dataclass
class Ledger:
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    current_test: str = ""

    def row(self, area: str, fault: str, *, injection: str, checked: str) -> Row:
        key = (area, fault)
        if key not in self.rows:
            self.rows[key] = Row(area, fault, injection, checked)
        row = self.rows[key]
        if self.current_test and self.current_test not in row.tests:
            row.tests.append(self.current_test)
        return row

    def mark_failed(self, nodeid: str) -> None:
        for row in self.rows.values():
            if nodeid in row.tests and nodeid not in row.failed:
                row.failed.append(nodeid)

    def totals(self) -> Row:
        total = Row("", "total", "", "")
        for row in self.rows.values():
            total.add(
                runs=row.runs,
                faults=row.faults,
                briefs=row.briefs,
                lost=row.lost,
                duplicates=row.duplicates,
                crashes=row.crashes,
            )
            total.failed.extend(row.failed)
        return total

    def markdown(self) -> str:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        ordered = sorted(self.rows.values(), key=lambda r: (AREA_ORDER.get(r.area, 99), r.area, r.fault))
        for row in [*ordered, self.totals()]:
            bold = row.fault == "total"
            cells = [
                row.area,
                f"**{row.fault}**" if bold else row.fault,
                row.injection,
                row.checked,
                *(str(v) for v in (row.runs, row.faults, row.briefs, row.lost, row.duplicates, row.crashes)),
                row.result,
            ]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, markdown_path: Path) -> None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(self.markdown(), encoding="utf-8")
        data = [asdict(row) for row in self.rows.values()]
        markdown_path.with_suffix(".json").write_text(json.dumps(data, indent=2), encoding="utf-8")


AREA_ORDER = {
    area: i
    for i, area in enumerate(
        [
            "crashes",
            "broker faults",
            "store faults",
            "poison and hang",
            "hostile input",
            "hostile assets",
            "limits",
            "API",
            "webhooks",
        ]
    )
}


def report_path() -> Path:
    return Path(os.environ.get(REPORT_ENV) or DEFAULT_REPORT)


# ------------------------------------------------------------------------------------------- counting


def lost_and_duplicated(article_counts: Counter[str], brief_ids: Iterable[str]) -> tuple[int, int]:
    """Briefs with no article, and articles beyond the first for any brief."""
    ids = list(brief_ids)
    lost = sum(1 for brief_id in ids if article_counts.get(brief_id, 0) == 0)
    duplicates = sum(max(0, article_counts.get(brief_id, 0) - 1) for brief_id in ids)
    return lost, duplicates


# ------------------------------------------------------------------------------------------- splice


def splice(table: str, document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    document.write_text(text[: start + len(TABLE_START)] + "\n" + table + text[end:], encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["splice"])
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--document", type=Path, default=Path("docs/reliability.md"))
    args = parser.parse_args(argv)
    splice((args.report or report_path()).read_text(encoding="utf-8"), args.document)


if __name__ == "__main__":
    main()
