"""``style.yaml``'s ``adapter:`` per base model (:mod:`worker.styles.served`): both forms read into one map, each
base model resolves to its own entry (never to another base's), and a promoted map is written back in the shortest
form that reads back the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from style_helpers import BASE_A, BASE_B, two_base_style, write_version

from worker.styles.catalog import load_style
from worker.styles.served import (
    ANY_BASE,
    adapter_value,
    not_served_message,
    resolve,
    served_map,
    version_base,
    with_entry,
)


@pytest.fixture
def duo(tmp_path: Path) -> Path:
    """The style folder of ``duo``: v1 and v3 on base-a, v2 on base-b."""
    return two_base_style(tmp_path).parent


def test_version_base_reads_each_versions_metadata(duo: Path) -> None:
    assert [version_base(duo, v) for v in ("v1", "v2", "v3")] == [BASE_A, BASE_B, BASE_A]
    assert version_base(duo, "v9") is None  # no such version: nothing recorded
    assert version_base(duo, "../v1") is None  # never taken as a path


def test_the_old_single_form_serves_the_version_on_its_own_base(duo: Path) -> None:
    assert served_map("v2", duo) == {BASE_B: "v2"}
    assert served_map(None, duo) == {ANY_BASE: None}  # `adapter: null`: the base model alone on every base model
    write_version(duo, "v4", None)  # an old version that records no base model
    assert served_map("v4", duo) == {ANY_BASE: "v4"}  # served on every base model, as before


def test_the_mapping_form_is_read_as_written(duo: Path) -> None:
    assert served_map({BASE_A: "v3", BASE_B: None}, duo) == {BASE_A: "v3", BASE_B: None}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({}, "names no base model"),
        ({"*": "v1"}, "not a base model id"),
        ({"": "v1"}, "not a base model id"),
        ({BASE_A: "latest"}, "must look like v1, v2"),
        ("../v1", "must look like v1, v2"),
        (3, r"a version \(v1, v2, ...\), null, or a mapping"),
    ],
)
def test_a_malformed_adapter_value_is_refused(duo: Path, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        served_map(value, duo)


def test_each_base_resolves_to_its_own_entry_and_an_unlisted_base_to_nothing() -> None:
    served = {BASE_A: "v1", BASE_B: "v2"}
    assert (resolve(served, BASE_A), resolve(served, BASE_B)) == ("v1", "v2")
    with pytest.raises(LookupError):
        resolve(served, "base-c")
    with pytest.raises(LookupError):
        resolve(served, None)  # two bases and the loaded one unknown: nothing to choose
    assert resolve({BASE_B: "v2"}, None) == "v2"  # one entry holds when the base model is not known
    assert resolve({ANY_BASE: None}, "base-c") is None
    assert resolve({ANY_BASE: "v4", BASE_A: "v1"}, BASE_A) == "v1"


def test_the_message_names_the_base_what_is_served_and_each_versions_base(duo: Path) -> None:
    style = load_style(duo / "style.yaml", "base-c")
    message = not_served_message(style, "base-c", style.served)
    assert "style 'duo' serves no adapter version on base model 'base-c'" in message
    assert "v1 on base-a, v2 on base-b" in message
    assert "versions: v1 (base-a), v2 (base-b), v3 (base-a)" in message
    assert "copydesk styles promote duo none" in message


def test_with_entry_keeps_other_bases_and_pins_an_every_base_entry_to_the_configured_base() -> None:
    assert with_entry({BASE_A: "v1", BASE_B: "v2"}, BASE_A, "v3", BASE_A) == {BASE_A: "v3", BASE_B: "v2"}
    assert with_entry({ANY_BASE: None}, BASE_B, "v2", BASE_A) == {BASE_A: None, BASE_B: "v2"}
    assert with_entry({ANY_BASE: None}, BASE_A, "v1", BASE_A) == {BASE_A: "v1"}


@pytest.mark.parametrize(
    ("served", "written"),
    [
        ({BASE_A: "v1"}, "v1"),  # one version on the base it records: the old form
        ({BASE_A: None}, "null"),
        ({BASE_A: None, BASE_B: None}, "null"),
        ({BASE_B: "v2", BASE_A: "v3"}, "{base-a: v3, base-b: v2}"),
        ({BASE_A: None, BASE_B: "v2"}, "{base-a: null, base-b: v2}"),
        ({BASE_B: "v1"}, "{base-b: v1}"),  # a version under another base than its own stays explicit
    ],
)
def test_adapter_value_writes_the_shortest_form_that_reads_back_the_same(
    duo: Path, served: dict[str, str | None], written: str
) -> None:
    value = adapter_value(served, duo)
    assert value == written
    back = served_map(yaml.safe_load(f"adapter: {value}")["adapter"], duo)
    for base, version in served.items():
        assert resolve(back, base) == version
