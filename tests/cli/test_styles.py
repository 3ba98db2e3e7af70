"""The style commands through Typer's CliRunner: list, show, train, promote (a version trained for another base
model sets that base model's entry; a style serving only another base model fails its briefs), plus the
corpus-profile targets that a served version gives a style."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus_fixtures import write_voice
from training_fixtures import World, copy_world, one_torch_thread, tiny_model_dir, trained_world
from typer.testing import CliRunner

from worker.cli.main import app
from worker.engine.adapters import ADAPTER_META
from worker.errors import StyleError
from worker.styles.catalog import load_style
from worker.styles.versions import set_adapter_line

__all__ = ["one_torch_thread", "tiny_model_dir", "trained_world"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def world(tmp_path: Path, trained_world: World) -> World:
    return copy_world(trained_world, tmp_path)


def run(world: World, *args: str) -> object:
    return CliRunner().invoke(app, list(args), env=world.env())


def other_base_model_version(world: World) -> Path:
    """v2: the same adapter, but recorded as trained for another base model."""
    import shutil

    v2 = world.styles_dir / "calm" / "adapters" / "v2"
    shutil.copytree(world.styles_dir / "calm" / "adapters" / "v1", v2)
    meta = json.loads((v2 / ADAPTER_META).read_text())
    meta["base_model_id"] = "some-other-model"
    (v2 / ADAPTER_META).write_text(json.dumps(meta))
    return v2


def test_list_shows_versions_and_what_each_style_serves(world: World) -> None:
    result = run(world, "styles", "list", "--json")
    assert result.exit_code == 0, result.output
    data = {row["style"]: row for row in json.loads(result.output)["styles"]}
    assert data["calm"]["served"] is None
    (version,) = data["calm"]["versions"]
    assert version["version"] == "v1" and version["usable"] and version["articles"] == 8
    assert version["eval_loss"] < version["base_eval_loss"]
    assert data["stiff"]["versions"] == []
    table = run(world, "styles", "list")
    assert table.exit_code == 0
    assert "v1:" in table.output and "base model" in table.output


def test_show_lists_metrics_and_where_targets_come_from(world: World) -> None:
    result = run(world, "styles", "show", "calm", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (version,) = data["versions"]
    assert version["metrics"]["history"][0]["epoch"] == 1.0
    assert version["base_model_id"] == "tiny-random-llama"
    assert data["targets_from_corpus_profile"] == []  # not served yet
    table = run(world, "styles", "show", "calm")
    assert table.exit_code == 0
    assert "held-out loss" in table.output and "v1" in table.output
    assert run(world, "styles", "show", "nope").exit_code == StyleError.exit_code


def test_promote_rewrites_only_the_adapter_line(world: World) -> None:
    path = world.styles_dir / "calm" / "style.yaml"
    before = path.read_text()
    result = run(world, "styles", "promote", "calm", "v1")
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert after == before.replace("adapter: null  # served version", "adapter: v1  # served version")
    assert "# A test style. This comment must survive a promote." in after
    style = load_style(path)
    assert style.adapter == "v1"
    # Served, the version's corpus profile fills the targets style.yaml leaves out.
    assert style.profile_targets == ["formality", "grade", "length_tolerance", "reading_ease", "sentiment"]
    profile = json.loads((world.styles_dir / "calm" / "adapters" / "v1" / "profile.json").read_text())
    assert list(style.targets.reading_ease) == profile["targets"]["reading_ease"]
    listed = json.loads(run(world, "styles", "list", "--json").output)
    assert {row["style"]: row["served"] for row in listed["styles"]}["calm"] == "v1"

    back = run(world, "styles", "promote", "calm", "none", "--json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout) == {
        "style": "calm",
        "base_model": "tiny-random-llama",
        "before": "v1",
        "served": None,
        "canary": None,
        "file": str(path),
    }
    assert path.read_text() == before.replace("adapter: null", "adapter: null")
    assert load_style(path).adapter is None


def test_targets_in_style_yaml_override_the_profile(world: World) -> None:
    path = world.styles_dir / "calm" / "style.yaml"
    text = set_adapter_line(path.read_text(), "v1") + "targets:\n  reading_ease: [10, 20]\n"
    path.write_text(text)
    style = load_style(path)
    assert style.targets.reading_ease == (10, 20)
    assert "reading_ease" not in style.profile_targets and "grade" in style.profile_targets


def test_promote_refuses_unknown_versions_and_sets_another_base_models_own_entry(world: World) -> None:
    unknown = run(world, "styles", "promote", "calm", "v9")
    assert unknown.exit_code == StyleError.exit_code
    assert "has no adapter version 'v9' (versions: v1)" in unknown.output
    other_base_model_version(world)
    path = world.styles_dir / "calm" / "style.yaml"
    other = run(world, "styles", "promote", "calm", "v2", "--json")  # v2 serves on its own base model only
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)["base_model"] == "some-other-model"
    assert "adapter: {some-other-model: v2, tiny-random-llama: null}  # served version" in path.read_text()
    assert load_style(path, "tiny-random-llama").adapter is None  # this machine's base model: as it was
    assert load_style(path, "some-other-model").adapter == "v2"
    listed = json.loads(run(world, "styles", "list", "--json").output)
    calm = listed["styles"][0]
    assert {v["version"]: v["usable"] for v in calm["versions"]} == {"v1": True, "v2": False}  # here, v2 cannot
    assert calm["served_per_base"] == {"some-other-model": "v2", "tiny-random-llama": None}
    shown = json.loads(run(world, "styles", "show", "calm", "--json").output)
    assert (shown["base_model"], shown["served"], shown["served_per_base"]) == (
        "tiny-random-llama",
        None,
        calm["served_per_base"],
    )
    assert [v["base_model_id"] for v in shown["versions"]] == ["tiny-random-llama", "some-other-model"]
    mine = run(world, "styles", "promote", "calm", "v1")
    assert mine.exit_code == 0 and "calm on tiny-random-llama: base model → v1" in mine.output
    assert "adapter: {some-other-model: v2, tiny-random-llama: v1}  # served version" in path.read_text()


def test_generation_refuses_a_style_that_serves_only_another_base_model(world: World, tmp_path: Path) -> None:
    other_base_model_version(world)
    path = world.styles_dir / "calm" / "style.yaml"
    path.write_text(set_adapter_line(path.read_text(), "v2"))  # pinned by hand, past the promote check
    briefs = tmp_path / "briefs.yaml"
    briefs.write_text("- {id: one, title: A short note, style: calm, target_words: 50}\n")
    result = run(world, "generate", str(briefs), "--json")
    assert result.exit_code == 1
    assert "style 'calm' serves no adapter version on base model 'tiny-random-llama'" in result.output
    assert "v1 (tiny-random-llama), v2 (some-other-model)" in result.output  # the versions there are, and their bases
    listed = json.loads(run(world, "styles", "list", "--json").output)["styles"]
    assert "nothing on tiny-random-llama" in next(row["serves"] for row in listed if row["style"] == "calm")


def test_set_adapter_line_keeps_comments_and_appends_when_missing() -> None:
    assert set_adapter_line("a: 1\nadapter: v1 # pinned\n", "v2") == "a: 1\nadapter: v2 # pinned\n"
    assert set_adapter_line("a: 1\nadapter: ~\n", None) == "a: 1\nadapter: null\n"
    assert set_adapter_line("a: 1", "v3") == "a: 1\nadapter: v3\n"
    assert set_adapter_line("routing:\n  adapter: x\n", "v1") == "routing:\n  adapter: x\nadapter: v1\n"
    with pytest.raises(StyleError, match="more than one"):
        set_adapter_line("adapter: v1\nadapter: v2\n", "v3")


def test_train_command_writes_the_next_version_with_a_progress_bar(world: World) -> None:
    corpus = write_voice(world.root / "more", "plain", 6)
    args = ["styles", "train", "calm", "--corpus", str(corpus), "--epochs", "1", "--lr", "0.005", "--rank", "4"]
    args += ["--max-length", "160", "--batch-size", "4", "--min-words", "30", "--target-modules", "q_proj, o_proj"]
    result = run(world, *args)
    assert result.exit_code == 0, result.output
    assert "trained calm v2" in result.output
    assert "styles promote calm v2" in result.output
    version = world.styles_dir / "calm" / "adapters" / "v2"
    assert (version / "adapter_model.safetensors").is_file()
    assert sorted(json.loads((version / "adapter_config.json").read_text())["target_modules"]) == ["o_proj", "q_proj"]
    bad_module = run(world, "styles", "train", "calm", "--corpus", str(corpus), "--target-modules", "../x")
    assert bad_module.exit_code == 11 and "training option target_modules" in bad_module.output
    missing = run(world, "styles", "train", "calm", "--corpus", str(world.root / "nope"))
    assert missing.exit_code == 10 and "does not exist" in missing.output
    nothing = run(world, "styles", "train", "calm", "--resume")
    assert nothing.exit_code == 11 and "no interrupted training run" in nothing.output
