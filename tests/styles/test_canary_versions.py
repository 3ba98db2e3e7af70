"""Canary versions (:meth:`Style.version_for`, ``styles promote --share``): the split by brief id is stable, the
pipeline writes each brief with its side's adapter and says which in provenance, and promote starts and ends
a canary in style.yaml; lineage by weights refuses a version trained on other base weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from model_fixtures import adapter_a_dir, adapter_b_dir, copy_dir, one_torch_thread, tiny_model_dir
from typer.testing import CliRunner

from worker.cli.main import app
from worker.config import Settings
from worker.engine.adapters import ADAPTER_META
from worker.engine.base_model import weights_hash
from worker.engine.engine import Engine
from worker.errors import AdapterError, StyleError
from worker.intake.briefs import Brief
from worker.pipeline.pipeline import Pipeline
from worker.store import Store
from worker.styles.catalog import Style, brief_bucket, load_style
from worker.styles.versions import list_versions, promote, set_canary_line

__all__ = ["adapter_a_dir", "adapter_b_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

STYLE_YAML = """# A canary test style. This comment must survive every promote.
name: alpha
description: test style alpha
system_prompt: You write short articles.
gates: []
generation: {candidates: 1, max_new_tokens: 16, temperature: 0.8}
adapter: v1  # served version
"""


def style_with(canary: dict[str, Any] | None, adapter: str | None = "v1") -> Style:
    return Style(name="alpha", description="d", adapter=adapter, canary=canary)


# ------------------------------------------------------------------------------------------- the split


def test_a_brief_always_gets_the_same_version_and_the_share_is_kept() -> None:
    style = style_with({"version": "v2", "share": 0.1})
    ids = [f"brief-{n}" for n in range(4000)]
    first = [style.version_for(brief_id) for brief_id in ids]
    again = [style_with({"version": "v2", "share": 0.1}).version_for(brief_id) for brief_id in reversed(ids)]
    assert first == list(reversed(again))
    share = first.count("v2") / len(ids)
    assert 0.085 < share < 0.115, share  # 4000 draws of p = 0.1: 5 standard deviations either side is 0.076..0.124
    assert set(first) == {"v1", "v2"}


def test_a_larger_share_keeps_the_briefs_it_had_and_other_styles_split_independently() -> None:
    ids = [f"b-{n}" for n in range(2000)]
    small = {i for i in ids if style_with({"version": "v2", "share": 0.1}).version_for(i) == "v2"}
    large = {i for i in ids if style_with({"version": "v2", "share": 0.3}).version_for(i) == "v2"}
    assert small < large
    other = {i for i in ids if brief_bucket("beta", i) < 0.1}
    assert len(other & small) < len(small) / 2  # a brief's bucket depends on the style too


def test_without_a_canary_every_brief_gets_the_served_version() -> None:
    assert {style_with(None).version_for(f"b-{n}") for n in range(200)} == {"v1"}
    assert {style_with(None, adapter=None).version_for(f"b-{n}") for n in range(50)} == {None}


@pytest.mark.parametrize(
    "canary",
    [{"version": "v2", "share": 0}, {"version": "v2", "share": 1}, {"version": "two", "share": 0.1}],
)
def test_a_canary_needs_a_version_and_a_share_between_0_and_1(canary: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="canary"):
        style_with(canary)


def test_a_canary_of_the_served_version_is_refused() -> None:
    with pytest.raises(ValueError, match="already the served version"):
        style_with({"version": "v1", "share": 0.2})


# ------------------------------------------------------------------------------------- style.yaml, promote


@pytest.fixture
def styles_dir(tmp_path: Path, adapter_a_dir: Path, adapter_b_dir: Path) -> Path:
    folder = tmp_path / "styles" / "alpha"
    folder.mkdir(parents=True)
    (folder / "style.yaml").write_text(STYLE_YAML)
    copy_dir(adapter_a_dir, folder / "adapters" / "v1")
    copy_dir(adapter_b_dir, folder / "adapters" / "v2")
    return tmp_path / "styles"


def env(styles_dir: Path, model_dir: Path) -> dict[str, str]:
    home = styles_dir.parent / "home"
    return {"COPYDESK_HOME": str(home), "COPYDESK_STYLES_DIR": str(styles_dir), "COPYDESK_MODEL": str(model_dir)}


def test_promote_with_a_share_starts_a_canary_and_without_one_ends_it(styles_dir: Path, tiny_model_dir: Path) -> None:
    runner, path = CliRunner(), styles_dir / "alpha" / "style.yaml"
    started = runner.invoke(
        app, ["styles", "promote", "alpha", "v2", "--share", "0.1"], env=env(styles_dir, tiny_model_dir)
    )
    assert started.exit_code == 0, started.output
    assert "canary v2 on 10% of briefs, v1 on the rest" in started.output
    style = load_style(path)
    assert (style.adapter, style.canary.version, style.canary.share) == ("v1", "v2", 0.1)  # type: ignore[union-attr]
    assert "# A canary test style. This comment must survive every promote." in path.read_text()
    assert "adapter: v1  # served version" in path.read_text()
    shown = runner.invoke(app, ["styles", "show", "alpha"], env=env(styles_dir, tiny_model_dir))
    assert "canary: v2 on 10% of briefs" in shown.output, shown.output
    ended = runner.invoke(app, ["styles", "promote", "alpha", "v2"], env=env(styles_dir, tiny_model_dir))
    assert ended.exit_code == 0, ended.output
    style = load_style(path)
    assert (style.adapter, style.canary) == ("v2", None)
    assert "canary:" not in path.read_text() and "adapter: v2  # served version" in path.read_text()


def test_promote_refuses_a_canary_of_the_served_version_none_or_a_bad_share(styles_dir: Path) -> None:
    style = load_style(styles_dir / "alpha" / "style.yaml")
    before = (styles_dir / "alpha" / "style.yaml").read_text()
    for version, share, message in (
        ("v1", 0.1, "already serves v1"),
        ("none", 0.1, "needs an adapter"),
        ("v2", 1.5, "below 1"),
    ):
        with pytest.raises(StyleError, match=message):
            promote(style, version, "tiny-random-llama", share=share)
    assert (styles_dir / "alpha" / "style.yaml").read_text() == before


def test_set_canary_line_replaces_appends_and_removes() -> None:
    text = "name: a\nadapter: v1\n"
    added = set_canary_line(text, "v3", 0.25)
    assert yaml.safe_load(added)["canary"] == {"version": "v3", "share": 0.25}
    assert set_canary_line(added, "v4", 0.5).count("canary:") == 1
    assert set_canary_line(added, None) == text
    with pytest.raises(StyleError, match="one line"):
        set_canary_line(text + "canary:\n  version: v2\n  share: 0.1\n", None)


def test_a_version_trained_on_other_weights_is_refused_naming_both_hashes(
    styles_dir: Path, tiny_model_dir: Path
) -> None:
    v2 = styles_dir / "alpha" / "adapters" / "v2"
    meta = json.loads((v2 / ADAPTER_META).read_text())
    (v2 / ADAPTER_META).write_text(json.dumps({**meta, "base_model_weights_sha256": "0" * 64}))
    style = load_style(styles_dir / "alpha" / "style.yaml")
    loaded = weights_hash(tiny_model_dir)
    with pytest.raises(AdapterError) as refused:
        promote(style, "v2", "tiny-random-llama", share=0.1, base_weights_sha256=loaded)
    assert "0" * 64 in str(refused.value) and loaded in str(refused.value)
    usable = {v.version: v.problem is None for v in list_versions(style, "tiny-random-llama", loaded)}
    assert usable == {"v1": True, "v2": False}
    cli = CliRunner().invoke(app, ["styles", "promote", "alpha", "v2"], env=env(styles_dir, tiny_model_dir))
    assert cli.exit_code != 0 and loaded in cli.output


# ------------------------------------------------------------------------------------------ the pipeline


def briefs(n: int) -> list[Brief]:
    return [
        Brief(id=f"canary-{i}", title=f"How to plant bulb number {i}", style="alpha", target_words=60) for i in range(n)
    ]


@pytest.mark.usefixtures("one_torch_thread")
def test_the_pipeline_writes_each_brief_with_its_sides_adapter_stably(
    styles_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    path = styles_dir / "alpha" / "style.yaml"
    path.write_text(set_canary_line(path.read_text(), "v2", 0.5))
    settings = Settings(
        home=tmp_path / "home", model=str(tiny_model_dir), dtype="float32", device="cpu", styles_dir=styles_dir,
        max_attempts=1, seed=7,
    )  # fmt: skip
    engine = Engine.from_settings(settings)
    style = load_style(path)
    batch = briefs(8)
    first = Pipeline(settings, engine).run(batch)
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.migrate()
        for outcome in first:
            assert outcome.result is not None, outcome.error
            store.add_brief(outcome.brief)
            store.save_article(outcome.result)
        stored = {a.brief_id: a.adapter_version for a in store.list_articles(style="alpha")}
    expected = {b.brief_id: style.version_for(b.brief_id) for b in batch}
    assert stored == expected and set(expected.values()) == {"v1", "v2"}
    digests = {}
    for outcome in first:
        provenance = outcome.result.provenance  # type: ignore[union-attr]
        version = expected[outcome.brief.brief_id]
        assert provenance["adapter"]["version"] == version
        assert provenance["canary"]["arm"] == ("canary" if version == "v2" else "served")
        assert provenance["canary"]["bucket"] == pytest.approx(brief_bucket("alpha", outcome.brief.brief_id), abs=1e-6)
        digests.setdefault(version, set()).add(provenance["adapter"]["sha256"])
    assert len(digests["v1"]) == len(digests["v2"]) == 1 and digests["v1"] != digests["v2"]
    shown = CliRunner().invoke(
        app, ["articles", "show", "canary-0"], env={"COPYDESK_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    )
    assert shown.exit_code == 0, shown.output
    sha = first[0].result.provenance["adapter"]["sha256"]  # type: ignore[union-attr]
    assert f"adapter sha256: {sha}" in shown.output
    again = Pipeline(settings, engine).run(list(reversed(batch[:5])))
    assert (
        {o.brief.brief_id: o.result.adapter_version for o in again}
        == {  # type: ignore[union-attr]
            b.brief_id: expected[b.brief_id] for b in batch[:5]
        }
    )
