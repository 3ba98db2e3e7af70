"""docs/api.md lists exactly the routes of the OpenAPI schema."""

from __future__ import annotations

from pathlib import Path

from worker.api.reference import current_schema, route_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_route_table_in_the_docs_matches_the_schema() -> None:
    text = DOC.read_text()
    documented = text.split("<!-- routes:begin -->\n", 1)[1].split("<!-- routes:end -->", 1)[0]
    expected = route_table(current_schema())
    assert documented == expected, f"paste this table into docs/api.md:\n{expected}"
    assert expected.count("\n| ") >= 13
