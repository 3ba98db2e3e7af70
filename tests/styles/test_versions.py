"""Promoting per base model (:func:`worker.styles.versions.promote`): a version sets the entry of the base model it
was trained on and leaves the other base models' entries alone, the line keeps its old form while one base model is
served, and a canary runs on one base model (refused where that base model serves nothing, or while another base
model's canary runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from style_helpers import BASE_A, BASE_B, two_base_style, write_style, write_version

from worker.errors import AdapterError, StyleError
from worker.styles.catalog import load_style
from worker.styles.versions import list_versions, promote, set_adapter_line

COMMENT = "# duo: this comment survives every promote"


def test_a_version_sets_its_own_bases_entry_and_leaves_the_other_alone(tmp_path: Path) -> None:
    path = two_base_style(tmp_path)
    promoted = promote(load_style(path, BASE_B), "v3", BASE_B)  # v3 is base-a's, promoted from a base-b machine
    assert (promoted.base_model, promoted.adapter) == (BASE_A, "v3")
    text = path.read_text()
    assert "adapter: {base-a: v3, base-b: v2}  # per base" in text and COMMENT in text
    assert load_style(path, BASE_B).adapter == "v2"
    assert load_style(path, BASE_A).targets.reading_ease == (50, 60)  # v3's profile, on base-a only
    back = promote(load_style(path, BASE_A), "none", BASE_A)  # `none`: the configured base model's entry
    assert back.adapter is None and "adapter: {base-a: null, base-b: v2}" in path.read_text()
    assert load_style(path, BASE_B).adapter == "v2"
    promote(load_style(path, BASE_B), "none", BASE_B)  # no base model serves a version any more
    assert "adapter: null  # per base" in path.read_text()


def test_a_style_on_one_base_keeps_its_single_adapter_line(tmp_path: Path) -> None:
    path = two_base_style(tmp_path, "adapter: null  # served version\n")
    promote(load_style(path, BASE_A), "v1", BASE_A)
    assert "adapter: v1  # served version" in path.read_text()
    promote(load_style(path, BASE_A), "v3", BASE_A)
    assert "adapter: v3  # served version" in path.read_text()
    promote(load_style(path, BASE_A), "none", BASE_A)
    assert "adapter: null  # served version" in path.read_text()


def test_a_second_base_pins_what_served_every_base_to_the_configured_one(tmp_path: Path) -> None:
    path = two_base_style(tmp_path, "adapter: null\n")
    promote(load_style(path, BASE_A), "v2", BASE_A)  # base-b's version, promoted on a base-a machine
    assert "adapter: {base-a: null, base-b: v2}" in path.read_text()  # base-a keeps the base model alone
    assert load_style(path, BASE_A).served_version() is None
    with pytest.raises(StyleError, match="base-c"):
        load_style(path, "base-c").served_version()


def test_a_version_is_checked_against_its_own_base_and_the_configured_weights(tmp_path: Path) -> None:
    path = two_base_style(tmp_path)
    write_version(path.parent, "v4", BASE_A, weights_sha256="0" * 64)
    before = path.read_text()
    with pytest.raises(AdapterError, match="0" * 64):
        promote(load_style(path, BASE_A), "v4", BASE_A, base_weights_sha256="f" * 64)
    (path.parent / "adapters" / "v2" / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match=r"has no adapter_model\.safetensors"):
        promote(load_style(path, BASE_A), "v2", BASE_A)
    assert path.read_text() == before
    promote(load_style(path, BASE_B), "v4", BASE_B, base_weights_sha256="f" * 64)  # other weights are base-a's
    assert load_style(path, BASE_A).adapter == "v4"


def test_listing_marks_what_each_base_serves_and_what_can_serve_here(tmp_path: Path) -> None:
    style = load_style(two_base_style(tmp_path), BASE_A)
    listed = {v.version: v for v in list_versions(style, BASE_A)}
    assert {name: v.served for name, v in listed.items()} == {"v1": True, "v2": True, "v3": False}
    assert {name: v.problem is None for name, v in listed.items()} == {"v1": True, "v2": False, "v3": True}
    assert listed["v2"].to_dict()["base_model_id"] == BASE_B


def test_a_canary_runs_on_its_versions_base_and_ends_only_there(tmp_path: Path) -> None:
    path = two_base_style(tmp_path)
    started = promote(load_style(path, BASE_B), "v3", BASE_B, share=0.2)  # base-a's canary, from a base-b machine
    assert (started.base_model, started.adapter, started.canary.version) == (BASE_A, "v1", "v3")  # type: ignore[union-attr]
    assert "canary: {version: v3, share: 0.2}" in path.read_text()
    assert load_style(path, BASE_B).active_canary is None
    write_version(path.parent, "v4", BASE_B)
    with pytest.raises(StyleError, match="runs a canary of v3 on base model 'base-a'"):
        promote(load_style(path, BASE_B), "v4", BASE_B, share=0.1)
    promote(load_style(path, BASE_B), "v4", BASE_B)  # base-b's version to every brief: base-a's canary goes on
    assert load_style(path, BASE_A).active_canary is not None and "canary:" in path.read_text()
    assert load_style(path, BASE_B).adapter == "v4"
    promote(load_style(path, BASE_A), "v3", BASE_A)  # base-a's canary version to every brief: the canary ends
    text = path.read_text()
    assert "canary:" not in text and "adapter: {base-a: v3, base-b: v4}" in text


def test_a_canary_is_refused_where_its_base_serves_nothing_or_already_serves_it(tmp_path: Path) -> None:
    path = two_base_style(tmp_path, "adapter: {base-b: v2}\n")
    before = path.read_text()
    with pytest.raises(StyleError, match="serves nothing on base model 'base-a'"):
        promote(load_style(path, BASE_A), "v3", BASE_A, share=0.1)
    with pytest.raises(StyleError, match="already serves v2"):
        promote(load_style(path, BASE_A), "v2", BASE_A, share=0.1)
    assert path.read_text() == before


def test_a_multi_line_adapter_block_is_refused_not_half_rewritten(tmp_path: Path) -> None:
    path = write_style(tmp_path, "duo", "adapter:\n  base-a: v1\n")
    write_version(path.parent, "v1", BASE_A)
    assert load_style(path, BASE_A).adapter == "v1"
    with pytest.raises(StyleError, match="make it one line by hand"):
        set_adapter_line(path.read_text(), "v2")
