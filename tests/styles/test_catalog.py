"""Unit tests of :mod:`worker.styles.catalog`: style files, validation, the catalog and the shipped styles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from style_helpers import BASE_A, BASE_B, two_base_style, write_version

from worker.config import DEFAULT_MODEL, PROJECT_ROOT, load_settings
from worker.errors import StyleError
from worker.styles.catalog import GATE_NAMES, Style, StyleCatalog, brief_bucket, load_style
from worker.styles.served import ANY_BASE

SHIPPED = ("plain-howto", "tech-deepdive", "upbeat-lifestyle")


def write_style(root: Path, directory: str, body: dict[str, object] | str) -> Path:
    folder = root / directory
    folder.mkdir(parents=True, exist_ok=True)
    text = body if isinstance(body, str) else yaml.safe_dump(body)
    path = folder / "style.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def minimal(name: str, **fields: object) -> dict[str, object]:
    return {"name": name, "description": f"the {name} style", **fields}


# ------------------------------------------------------------------------------------------- load_style


def test_minimal_style_gets_defaults(tmp_path: Path) -> None:
    style = load_style(write_style(tmp_path, "calm", minimal("calm")))
    assert style.name == "calm"
    assert style.directory == tmp_path / "calm"
    assert style.gates == ["length", "structure", "repetition", "on_topic", "memorisation"]
    assert style.targets.grade == (5.0, 11.0)
    assert style.generation.candidates == 2
    assert style.adapter is None
    assert style.adapter_dir is None


def test_name_defaults_to_directory(tmp_path: Path) -> None:
    style = load_style(write_style(tmp_path, "calm", {"description": "no name given"}))
    assert style.name == "calm"


def test_name_must_equal_directory(tmp_path: Path) -> None:
    path = write_style(tmp_path, "calm", minimal("loud"))
    with pytest.raises(StyleError) as exc:
        load_style(path)
    assert "'loud'" in str(exc.value)
    assert "'calm'" in str(exc.value)


def test_routing_keys_are_lowercased_and_stripped(tmp_path: Path) -> None:
    body = minimal("calm", routing={"categories": {" Home & Garden ": 2}, "tags": {"DIY": 1}, "priority": 3})
    style = load_style(write_style(tmp_path, "calm", body))
    assert style.routing.categories == {"home & garden": 2}
    assert style.routing.tags == {"diy": 1}
    assert style.routing.priority == 3


def test_adapter_dir_points_at_the_version(tmp_path: Path) -> None:
    style = load_style(write_style(tmp_path, "calm", minimal("calm", adapter="v3")))
    assert style.adapter_dir == tmp_path / "calm" / "adapters" / "v3"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"gates": ["length", "vibes"]}, "vibes", id="unknown-gate"),
        pytest.param({"targets": {"grade": [12, 4]}}, "targets.grade", id="reversed-grade"),
        pytest.param({"targets": {"reading_ease": [90, 10]}}, "targets.reading_ease", id="reversed-ease"),
        pytest.param({"targets": {"sentiment": [0.5, -0.5]}}, "targets.sentiment", id="reversed-sentiment"),
        pytest.param({"targets": {"grade": [5]}}, "targets.grade", id="range-of-one"),
        pytest.param({"adapter": "latest"}, "v1, v2", id="adapter-version"),
        pytest.param({"adapter": "../v1"}, "adapter", id="adapter-traversal"),
        pytest.param({"generation": {"temperature": 3}}, "generation.temperature", id="temperature"),
        pytest.param({"generation": {"candidates": 0}}, "generation.candidates", id="candidates"),
        pytest.param({"rules": {"heading_case": "shouting"}}, "rules.heading_case", id="heading-case"),
        pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
    ],
)
def test_invalid_style_is_refused_with_the_field(tmp_path: Path, fields: dict[str, object], expected: str) -> None:
    path = write_style(tmp_path, "calm", minimal("calm", **fields))
    with pytest.raises(StyleError) as exc:
        load_style(path)
    assert str(path) in str(exc.value)
    assert expected in str(exc.value)


def test_unknown_gate_message_lists_the_known_gates(tmp_path: Path) -> None:
    path = write_style(tmp_path, "calm", minimal("calm", gates=["vibes"]))
    with pytest.raises(StyleError) as exc:
        load_style(path)
    for gate in GATE_NAMES:
        assert gate in str(exc.value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name: [unclosed\n", id="yaml-syntax"),
        pytest.param("- just\n- a list\n", id="not-a-mapping"),
        pytest.param("", id="empty"),
        pytest.param("description: x\ndirectory: /etc\n", id="directory-key"),
        pytest.param("description: x\n1: numeric key\n", id="non-string-key"),
    ],
)
def test_malformed_style_file_is_a_style_error(tmp_path: Path, text: str) -> None:
    path = write_style(tmp_path, "calm", text)
    with pytest.raises(StyleError, match="calm"):
        load_style(path)


def test_undecodable_style_file_is_a_style_error(tmp_path: Path) -> None:
    path = write_style(tmp_path, "calm", "x")
    path.write_bytes(b"description: \xff\xfe\n")
    with pytest.raises(StyleError, match="cannot read"):
        load_style(path)


@pytest.mark.parametrize("name", ["../x", "a/b", "", "..", "a\0b", "x" * 129, ".calm"])
def test_unsafe_style_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a safe name"):
        Style(name=name, description="d")


# ---------------------------------------------------------------------------------------------- catalog


def test_catalog_reports_broken_styles_and_loads_the_others(tmp_path: Path) -> None:
    write_style(tmp_path, "good", minimal("good"))
    write_style(tmp_path, "also-good", minimal("also-good"))
    write_style(tmp_path, "broken", "name: [unclosed\n")
    write_style(tmp_path, "bad-gate", minimal("bad-gate", gates=["vibes"]))
    write_style(tmp_path, "misnamed", minimal("other-name"))
    write_style(tmp_path, "bad name", minimal("bad-name"))
    write_style(tmp_path, "sneaky", "description: x\ndirectory: /etc\n")
    (tmp_path / "no-style-file").mkdir()
    catalog = StyleCatalog.load(tmp_path)
    assert catalog.names == ["also-good", "good"]
    assert set(catalog.problems) == {"broken", "bad-gate", "misnamed", "bad name", "sneaky"}
    assert "vibes" in catalog.problems["bad-gate"]
    assert "not a safe style name" in catalog.problems["bad name"]


def test_catalog_of_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StyleError, match="does not exist"):
        StyleCatalog.load(tmp_path / "missing")


def test_unknown_style_error_lists_known_styles(tmp_path: Path) -> None:
    write_style(tmp_path, "alpha", minimal("alpha"))
    write_style(tmp_path, "beta", minimal("beta"))
    catalog = StyleCatalog.load(tmp_path)
    assert catalog.get("beta").name == "beta"
    with pytest.raises(StyleError) as exc:
        catalog.get("gamma")
    assert "unknown style 'gamma'" in str(exc.value)
    assert "known styles: alpha, beta" in str(exc.value)


def test_get_of_a_broken_style_says_why(tmp_path: Path) -> None:
    write_style(tmp_path, "alpha", minimal("alpha"))
    write_style(tmp_path, "broken", minimal("broken", gates=["vibes"]))
    catalog = StyleCatalog.load(tmp_path)
    with pytest.raises(StyleError) as exc:
        catalog.get("broken")
    assert "vibes" in str(exc.value)
    assert "known styles: alpha" in str(exc.value)


@pytest.mark.parametrize("name", ["../alpha", "a/b", "", "..", "a\0b", "x" * 129])
def test_get_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    write_style(tmp_path, "alpha", minimal("alpha"))
    catalog = StyleCatalog.load(tmp_path)
    with pytest.raises(StyleError) as exc:
        catalog.get(name)
    assert "not a valid style name" in str(exc.value)
    assert "known styles: alpha" in str(exc.value)


# -------------------------------------------------------------------------------------- per base model


def test_a_two_base_style_serves_each_base_its_own_version_and_profile_targets(tmp_path: Path) -> None:
    path = two_base_style(tmp_path)
    on_a, on_b = load_style(path, BASE_A), load_style(path, BASE_B)
    assert (on_a.adapter, on_a.served_version(), on_a.base_model) == ("v1", "v1", BASE_A)
    assert (on_b.adapter, on_b.served_version(), on_b.base_model) == ("v2", "v2", BASE_B)
    assert on_a.served == on_b.served == {BASE_A: "v1", BASE_B: "v2"}
    assert on_a.targets.reading_ease == (10, 20) and on_b.targets.reading_ease == (30, 40)  # each served profile
    assert on_a.adapter_dir == path.parent / "adapters" / "v1"
    assert {on_a.version_for(f"b-{n}") for n in range(50)} == {"v1"}
    catalog = StyleCatalog.load(tmp_path, BASE_B)
    assert catalog.base_model == BASE_B and catalog.get("duo").adapter == "v2"


def test_a_deployments_catalog_is_loaded_for_its_configured_base_model(tmp_path: Path) -> None:
    two_base_style(tmp_path)
    for base, served in ((BASE_A, "v1"), (BASE_B, "v2")):  # a local GGUF file's model id is its name
        settings = load_settings(model=str(tmp_path / f"{base}.gguf"), styles_dir=tmp_path)
        catalog = StyleCatalog.for_settings(settings)
        assert (catalog.base_model, catalog.get("duo").adapter) == (base, served)


def test_a_base_the_style_serves_nothing_on_fails_its_briefs_naming_the_base_and_versions(tmp_path: Path) -> None:
    style = load_style(two_base_style(tmp_path), "base-c")  # the style itself loads: routing and listing go on
    assert style.adapter is None and style.profile_targets == []
    for call in (style.served_version, lambda: style.version_for("b-1")):
        with pytest.raises(StyleError) as refused:
            call()
        assert "serves no adapter version on base model 'base-c'" in str(refused.value)
        assert "v1 (base-a), v2 (base-b), v3 (base-a)" in str(refused.value)


def test_an_explicit_null_serves_the_base_model_alone_on_that_base_only(tmp_path: Path) -> None:
    path = two_base_style(tmp_path, "adapter: {base-a: null, base-b: v2}\n")
    assert load_style(path, BASE_A).served_version() is None
    assert load_style(path, BASE_B).served_version() == "v2"
    with pytest.raises(StyleError, match="base-c"):
        load_style(path, "base-c").served_version()


def test_an_old_single_adapter_line_serves_its_version_on_its_base_as_before(tmp_path: Path) -> None:
    path = two_base_style(tmp_path, "adapter: v1\n")
    unknown, on_a = load_style(path), load_style(path, BASE_A)
    assert (unknown.adapter, on_a.adapter) == ("v1", "v1")  # loaded without a base model, as it always was
    assert unknown.targets == on_a.targets and on_a.targets.reading_ease == (10, 20)
    assert unknown.served == {BASE_A: "v1"}
    with pytest.raises(StyleError, match="serves no adapter version on base model 'base-b'"):
        load_style(path, BASE_B).version_for("b-1")  # before: the adapter was refused when it loaded
    write_version(path.parent, "v4", None)  # recording no base model, it serves every base model, as before
    path.write_text(path.read_text().replace("adapter: v1", "adapter: v4"))
    assert load_style(path, BASE_B).served == {ANY_BASE: "v4"} and load_style(path, BASE_B).adapter == "v4"


def test_a_canary_runs_on_its_versions_base_only_with_a_stable_split(tmp_path: Path) -> None:
    path = two_base_style(tmp_path, "adapter: {base-a: v1, base-b: v2}\ncanary: {version: v3, share: 0.5}\n")
    on_a, on_b = load_style(path, BASE_A), load_style(path, BASE_B)
    assert on_a.canary_base == BASE_A and on_a.active_canary == on_a.canary and on_b.active_canary is None
    ids = [f"brief-{n}" for n in range(400)]
    split = {i: on_a.version_for(i) for i in ids}
    assert split == {i: "v3" if brief_bucket("duo", i) < 0.5 else "v1" for i in ids}
    assert {load_style(path, BASE_A).version_for(i) for i in ids if split[i] == "v3"} == {"v3"}  # stable
    assert {on_b.version_for(i) for i in ids} == {"v2"}  # base-b's workers never run base-a's canary
    with pytest.raises(StyleError, match="already the served version"):
        load_style(write_style(tmp_path, "duo", path.read_text().replace("v3, share", "v2, share")), BASE_A)


@pytest.mark.parametrize("computed", ["base_model", "served", "canary_base"])
def test_what_copydesk_works_out_per_base_cannot_be_written(tmp_path: Path, computed: str) -> None:
    with pytest.raises(StyleError, match="not a style field"):
        load_style(write_style(tmp_path, "calm", minimal("calm", **{computed: "x"})))


# ------------------------------------------------------------------------------------------ shipped styles


@pytest.fixture(scope="module")
def shipped() -> StyleCatalog:
    return StyleCatalog.load(PROJECT_ROOT / "styles")


def test_the_three_shipped_styles_load_without_problems(shipped: StyleCatalog) -> None:
    assert shipped.names == list(SHIPPED)
    assert shipped.problems == {}
    for name in SHIPPED:
        style = shipped.get(name)
        assert style.description
        assert style.system_prompt
        assert style.directory == PROJECT_ROOT / "styles" / name
        assert set(style.gates) <= set(GATE_NAMES)


def test_the_shipped_single_adapter_lines_serve_the_same_on_their_base_model(shipped: StyleCatalog) -> None:
    on_default = StyleCatalog.load(PROJECT_ROOT / "styles", DEFAULT_MODEL)
    assert on_default.problems == {}
    for name in SHIPPED:
        before, now = shipped.get(name), on_default.get(name)
        assert before.adapter is not None and now.served_version() == before.adapter
        assert now.served == {DEFAULT_MODEL: before.adapter}
        assert (now.targets, now.canary, now.profile_targets) == (before.targets, before.canary, before.profile_targets)


def test_shipped_styles_have_clearly_different_targets(shipped: StyleCatalog) -> None:
    plain, tech, upbeat = (shipped.get(name) for name in SHIPPED)
    # The deep-dive reads at a higher grade and lower ease than the how-to voice.
    assert tech.targets.grade[0] >= plain.targets.grade[1]
    assert sum(tech.targets.grade) / 2 > sum(plain.targets.grade) / 2 + 5
    assert tech.targets.reading_ease[1] <= plain.targets.reading_ease[0] + 10
    # The deep-dive is the most formal; the lifestyle voice is the most positive and the least formal.
    assert tech.targets.formality[0] > upbeat.targets.formality[0]
    assert tech.targets.formality[1] > upbeat.targets.formality[1]
    assert upbeat.targets.sentiment[0] > plain.targets.sentiment[0]
    assert upbeat.targets.sentiment[0] > tech.targets.sentiment[0]
    # Each style gates on what defines it.
    assert "grade" in tech.gates
    assert "sentiment" in upbeat.gates
    assert "readability" in plain.gates


def test_shipped_styles_route_on_their_own_content_types(shipped: StyleCatalog) -> None:
    routing = {name: shipped.get(name).routing for name in SHIPPED}
    best_for = {
        content_type: max(SHIPPED, key=lambda name: routing[name].content_types.get(content_type, 0))
        for content_type in ("how-to", "explainer", "listicle")
    }
    assert best_for == {"how-to": "plain-howto", "explainer": "tech-deepdive", "listicle": "upbeat-lifestyle"}
