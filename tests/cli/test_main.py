"""Tests of the ``copydesk`` command line (:mod:`worker.cli.main`) with Typer's CliRunner and the tiny model.

Every command runs with ``COPYDESK_HOME`` in a temporary directory, the tiny random llama in fp32 and
styles made for the test (``alpha`` serves a real LoRA adapter, ``beta`` runs on the base model, and
``gamma`` has a gate no draft can pass), except ``route``, which uses the shipped styles.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from model_fixtures import TINY_MODEL_ID, adapter_a_dir, copy_dir, one_torch_thread, tiny_model_dir
from typer.testing import CliRunner

from worker.cli.main import app
from worker.config import PROJECT_ROOT
from worker.errors import ConfigError, JobFileError, NotFoundError, QueueError
from worker.store.article_files import read_article_file

__all__ = ["adapter_a_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIXED = [
    {"id": "cli-alpha", "title": "How to plant tomatoes", "content_type": "how-to", "category": "alpha-cat"},
    {"id": "cli-beta", "title": "Why caches make programs fast", "style": "beta", "tags": ["caching"]},
    {"id": "cli-gamma", "title": "Ten things to pack for a hike", "content_type": "listicle", "category": "gamma-cat"},
    {"id": "cli-bad", "title": "A brief pinned to a style nobody wrote", "style": "nope"},
]
WRITTEN = {"cli-alpha": "needs_review", "cli-beta": "needs_review", "cli-gamma": "needs_attention"}


def write_style(styles_dir: Path, name: str, *, gates: list[str], adapter: str | None = None, **targets: Any) -> Path:
    directory = styles_dir / name
    directory.mkdir(parents=True)
    data: dict[str, Any] = {
        "name": name,
        "description": f"test style {name}",
        "system_prompt": "You write short articles.",
        "routing": {"categories": {f"{name}-cat": 3}},
        "gates": gates,
        "generation": {"candidates": 1, "max_new_tokens": 16},
        "adapter": adapter,
    }
    if targets:
        data["targets"] = targets
    (directory / "style.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


@dataclass(frozen=True)
class Files:
    root: Path
    styles: Path
    config: Path
    mixed: Path
    good: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, adapter_a_dir: Path) -> Files:
    root = tmp_path_factory.mktemp("cli")
    styles = root / "styles"
    copy_dir(adapter_a_dir, write_style(styles, "alpha", gates=[], adapter="v1") / "adapters" / "v1")
    write_style(styles, "beta", gates=[])
    write_style(styles, "gamma", gates=["length"], length_tolerance=0.05)  # 16 tokens cannot make 600 words
    config = root / "copydesk.toml"
    config.write_text("seed = 77\nmax_attempts = 2\n")
    mixed = root / "mixed.yaml"
    mixed.write_text(yaml.safe_dump({"briefs": MIXED}, sort_keys=False))
    good = root / "good.json"
    good.write_text(json.dumps([{"id": "cli-extra", "title": "How a compiler reads code", "style": "beta"}]))
    return Files(root, styles, config, mixed, good)


def environment(home: Path, files: Files, model_dir: Path, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "COPYDESK_HOME": str(home),
        "COPYDESK_MODEL": str(model_dir),
        "COPYDESK_DTYPE": "float32",
        "COPYDESK_DEVICE": "cpu",
        "COPYDESK_STYLES_DIR": str(files.styles),
        "COPYDESK_DEFAULT_STYLE": "beta",
        "COPYDESK_CONFIG": str(files.config),
        "COPYDESK_STORE_URL": None,
        "COPYDESK_DEBUG": None,
        "HF_HUB_OFFLINE": "1",
    }
    env.update(extra)
    return env


class Cli:
    """Runs ``copydesk`` commands in one environment."""

    def __init__(self, env: dict[str, str | None]) -> None:
        self.env = env

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env)

    def json(self, *args: str, code: int | None = 0) -> Any:
        """The command's ``--json`` output; its exit code must be ``code`` (any, with ``None``)."""
        result = self(*args, "--json")
        assert code is None or result.exit_code == code, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(tmp_path: Path, files: Files, tiny_model_dir: Path) -> Cli:
    return Cli(environment(tmp_path / "home", files, tiny_model_dir))


@dataclass(frozen=True)
class Generated:
    home: Path
    result: Result
    outcomes: list[dict[str, Any]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, files: Files, tiny_model_dir: Path) -> Generated:
    """``copydesk generate --json mixed.yaml`` run once; tests read its store through a copy of its home."""
    home = tmp_path_factory.mktemp("generated") / "home"
    result = Cli(environment(home, files, tiny_model_dir))("generate", str(files.mixed), "--json")
    return Generated(home, result, json.loads(result.stdout))


@pytest.fixture
def after_generate(tmp_path: Path, generated: Generated, files: Files, tiny_model_dir: Path) -> Cli:
    """A CLI whose home is a private copy of the generated one (the SQLite store and article files)."""
    home = tmp_path / "home"
    shutil.copytree(generated.home, home)
    return Cli(environment(home, files, tiny_model_dir))


def plain(output: str) -> str:
    """A usage-error box's text on one line, without the box."""
    return " ".join(output.replace("│", " ").split())


def one_line_error(result: Result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------------- config


def test_config_json_shows_environment_and_file_values(cli: Cli, files: Files, tiny_model_dir: Path) -> None:
    values = cli.json("config")
    home = Path(cli.env["COPYDESK_HOME"] or "")
    assert values["home"] == str(home)
    assert values["model"] == str(tiny_model_dir)
    assert values["dtype"] == "float32"
    assert values["styles_dir"] == str(files.styles)
    assert values["default_style"] == "beta"
    assert values["seed"] == 77  # from the config file
    assert values["effective_store_url"] == f"sqlite:///{home.resolve() / 'copydesk.db'}"
    assert values["batch_size"] is None and (values["effective_batch_size"], values["effective_flush_size"]) == (32, 16)


def test_config_table_lists_settings_with_their_variables(cli: Cli) -> None:
    result = cli("config")
    assert result.exit_code == 0, result.output
    assert "copydesk configuration" in result.stdout
    dtype_row = next(line for line in result.stdout.splitlines() if " dtype " in line)
    assert "float32" in dtype_row
    assert "COPYDESK_DTYPE" in dtype_row
    seed_row = next(line for line in result.stdout.splitlines() if " seed " in line)
    assert "77" in seed_row


def test_invalid_configuration_is_one_line_and_its_own_exit_code(
    tmp_path: Path, files: Files, tiny_model_dir: Path
) -> None:
    result = Cli(environment(tmp_path, files, tiny_model_dir, COPYDESK_DTYPE="float64"))("config")
    assert result.exit_code == ConfigError.exit_code == 16
    line = one_line_error(result)
    assert line.startswith("error: invalid configuration: dtype")


# ------------------------------------------------------------------------------------------------- validate


def test_validate_a_good_file_exits_0(cli: Cli, files: Files) -> None:
    result = cli("validate", str(files.good))
    assert result.exit_code == 0, result.output
    assert "1 valid brief(s), 0 problem(s)" in result.stdout


def test_validate_refuses_a_pinned_unknown_style_as_route_does(cli: Cli, files: Files) -> None:
    result = cli("validate", str(files.mixed), str(files.good))
    assert result.exit_code == 1, result.output
    assert "4 valid brief(s), 1 problem(s)" in result.stdout
    (problem,) = [line for line in result.stderr.splitlines() if line.startswith("invalid:")]
    assert problem.startswith(f"invalid: {files.mixed}, record 4, field 'style': unknown style 'nope'")
    report = cli.json("validate", str(files.mixed), code=1)
    assert report["valid"] == ["cli-alpha", "cli-beta", "cli-gamma"]
    assert [(p["record"], p["field"]) for p in report["problems"]] == [("record 4", "style")]
    routed = cli.json("route", str(files.mixed), code=1)
    assert report["problems"][0]["message"] == routed[3]["error"]  # one check, one message


def test_validate_a_bad_file_names_file_record_and_field(cli: Cli, tmp_path: Path, files: Files) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = [{"title": "A fine brief"}, {"title": "A brief with a bad length", "target_words": "many"}]
    bad.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = cli("validate", str(files.good), str(bad))
    assert result.exit_code == 1
    assert "2 valid brief(s), 1 problem(s)" in result.stdout
    problems = [line for line in result.stderr.splitlines() if line.startswith("invalid:")]
    assert problems == [f"invalid: {bad}, line 2, field 'target_words': must be a whole number"]


# ---------------------------------------------------------------------------------------------------- route


def test_route_json_sends_three_sample_briefs_to_each_shipped_style(cli: Cli) -> None:
    cli.env.update(COPYDESK_STYLES_DIR=str(PROJECT_ROOT / "styles"), COPYDESK_DEFAULT_STYLE="plain-howto")
    rows = cli.json("route", str(PROJECT_ROOT / "briefs" / "samples.yaml"))
    assert len(rows) == 9
    assert Counter(row["style"] for row in rows) == {"plain-howto": 3, "tech-deepdive": 3, "upbeat-lifestyle": 3}
    expected = {"howto": "plain-howto", "explainer": "tech-deepdive", "listicle": "upbeat-lifestyle"}
    expected["review"] = "upbeat-lifestyle"
    for row in rows:
        assert row["style"] == expected[row["brief"].split("-")[0]], row
        assert row["reason"].startswith("highest score")
        assert row["scores"][row["style"]] == max(row["scores"].values())
        assert set(row["scores"]) == {"plain-howto", "tech-deepdive", "upbeat-lifestyle"}


def test_route_table_and_errors(cli: Cli, files: Files) -> None:
    result = cli("route", str(files.mixed))
    assert result.exit_code == 1  # cli-bad pins an unknown style
    assert "routing" in result.stdout
    rows = cli.json("route", str(files.mixed), code=1)
    assert [row["brief"] for row in rows] == [brief["id"] for brief in MIXED]
    assert [row.get("style") for row in rows] == ["alpha", "beta", "gamma", None]
    assert rows[1]["reason"] == "pinned by the brief"
    assert "unknown style 'nope'" in rows[3]["error"]
    assert "known styles: alpha, beta, gamma" in rows[3]["error"]


# --------------------------------------------------------------------------------------------------- prompt


def test_prompt_shows_brief_values_literally(cli: Cli, tmp_path: Path) -> None:
    brief = tmp_path / "template.yaml"
    brief.write_text(yaml.safe_dump([{"id": "literal", "title": "{{ 7*7 }} ways to test", "style": "beta"}]))
    result = cli("prompt", "--no-chat", str(brief))
    assert result.exit_code == 0, result.output
    assert "Title: {{ 7*7 }} ways to test" in result.stdout
    assert "49" not in result.stdout
    assert "[system]" in result.stdout and "[user]" in result.stdout
    assert "literal · beta · prompts/explainer.j2" in result.stdout

    chat = cli("prompt", str(brief))
    assert chat.exit_code == 0, chat.output
    assert "<|im_start|>user" in chat.stdout
    assert "{{ 7*7 }}" in chat.stdout
    (row,) = cli.json("prompt", "--no-chat", str(brief))
    assert (row["brief"], row["style"], row["template"]) == ("literal", "beta", "prompts/explainer.j2")
    assert row["text"].startswith("[system]") and "Title: {{ 7*7 }} ways to test" in row["text"]


# ------------------------------------------------------------------------------------------------- generate


def test_generate_reports_every_brief_and_exits_1_when_one_failed(generated: Generated) -> None:
    statuses = {o["brief_id"]: o["status"] for o in generated.outcomes}
    assert statuses == {**WRITTEN, "cli-bad": "failed"}
    assert generated.result.exit_code == 1  # because cli-bad failed
    bad = next(o for o in generated.outcomes if o["brief_id"] == "cli-bad")
    assert bad["article_id"] is None and "unknown style 'nope'" in bad["error"]
    for outcome in generated.outcomes:
        if outcome["brief_id"] in WRITTEN:
            assert outcome["article_id"] == f"a-{outcome['brief_id']}"
            assert outcome["error"] is None
            meta, _ = read_article_file(Path(outcome["file"]))
            assert meta["article_id"] == outcome["article_id"]
            assert Path(outcome["file"]).is_relative_to(generated.home / "articles" / outcome["style"])


def test_generate_exits_0_when_every_brief_is_written(after_generate: Cli, files: Files) -> None:
    result = after_generate("generate", str(files.good))
    assert result.exit_code == 0, result.output
    assert "cli-extra" in result.stdout
    assert "1 article(s) written" in result.stdout
    assert after_generate.json("articles", "show", "cli-extra")["status"] == "needs_review"


def test_generate_an_invalid_file_exits_1_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("title,target_words\nA brief,many\n")
    result = cli("generate", str(bad))
    assert result.exit_code == 1
    assert "nothing to generate" in result.stderr
    assert f"invalid: {bad}, line 2, field 'target_words'" in result.stderr
    assert cli.json("articles", "list") == []


def test_resubmitting_a_file_reports_already_written_and_writes_no_duplicate(after_generate: Cli, files: Files) -> None:
    before = after_generate.json("articles", "list")
    shown = {a["id"]: after_generate.json("articles", "show", a["id"]) for a in before}

    outcomes = after_generate.json("generate", str(files.mixed), code=None)

    assert [o["brief_id"] for o in outcomes] == ["cli-bad"]
    assert outcomes[0]["status"] == "skipped: failed"
    assert after_generate.json("articles", "list") == before
    assert {a["id"]: after_generate.json("articles", "show", a["id"]) for a in before} == shown

    result = after_generate("generate", str(files.mixed))
    for brief_id in WRITTEN:
        assert f"already written: brief {brief_id} has an article" in result.stderr
    assert "cli-alpha" not in result.stdout


# ------------------------------------------------------------------------------------------------- articles


def test_articles_list_filters_by_status_and_style(after_generate: Cli) -> None:
    everything = after_generate.json("articles", "list")
    assert {a["brief_id"]: a["status"] for a in everything} == WRITTEN
    assert {a["brief_id"]: a["style"] for a in everything} == {
        "cli-alpha": "alpha",
        "cli-beta": "beta",
        "cli-gamma": "gamma",
    }
    review = after_generate.json("articles", "list", "--status", "needs_review")
    assert sorted(a["brief_id"] for a in review) == ["cli-alpha", "cli-beta"]
    attention = after_generate.json("articles", "list", "--status", "needs_attention")
    assert [(a["brief_id"], a["failing_gates"]) for a in attention] == [("cli-gamma", ["length"])]
    assert [a["brief_id"] for a in after_generate.json("articles", "list", "--style", "alpha")] == ["cli-alpha"]
    assert after_generate.json("articles", "list", "--style", "gamma", "--status", "needs_review") == []
    assert len(after_generate.json("articles", "list", "--limit", "1")) == 1

    table = after_generate("articles", "list")
    assert table.exit_code == 0
    assert "3 article(s)" in table.stdout
    unknown = after_generate("articles", "list", "--status", "pending")
    assert unknown.exit_code == 2 and "unknown status 'pending': use needs_review" in plain(unknown.output)


def test_articles_show_json_has_body_scores_provenance_brief_and_candidates(after_generate: Cli) -> None:
    data = after_generate.json("articles", "show", "a-cli-gamma")
    assert data["id"] == "a-cli-gamma"
    assert data["body_markdown"].startswith("# ")
    assert data["scores"]["length"]["passed"] is False
    assert data["failing_gates"] == ["length"]
    assert data["provenance"]["model"]["id"] == TINY_MODEL_ID
    assert data["provenance"]["base_seed"] == 77
    assert data["provenance"]["attempts_used"] == 2
    assert data["brief"]["title"] == "Ten things to pack for a hike"
    assert data["brief"]["id"] == "cli-gamma"
    assert [(c["attempt"], c["index"]) for c in data["candidates"]] == [(1, 0), (2, 0)]
    assert sum(c["selected"] for c in data["candidates"]) == 1
    assert all("text" not in c and "scores" in c for c in data["candidates"])
    assert Path(data["file"]).is_file()

    by_brief = after_generate.json("articles", "show", "cli-alpha")
    assert by_brief["id"] == "a-cli-alpha"
    assert by_brief["adapter_version"] == "v1"
    assert by_brief["provenance"]["adapter"]["version"] == "v1"


def test_articles_show_table(after_generate: Cli) -> None:
    result = after_generate("articles", "show", "cli-beta")
    assert result.exit_code == 0, result.output
    for part in ("a-cli-beta", "scorecard", "provenance", "Why caches make programs fast", "1 candidate(s)"):
        assert part in result.stdout


def test_articles_show_unknown_id_is_one_clear_line(after_generate: Cli) -> None:
    result = after_generate("articles", "show", "nope")
    assert result.exit_code == NotFoundError.exit_code
    assert isinstance(result.exception, SystemExit)
    assert one_line_error(result) == "error: no article with id or brief id 'nope' in the store"
    assert result.stdout == ""


def test_the_embedded_worker_imports_this_package_even_from_a_folder_with_another_worker(tmp_path: Path) -> None:
    import subprocess
    import sys

    import worker
    from worker.cli.queue import embedded_worker_command

    shadow = tmp_path / "worker"  # another checkout's package in the current directory
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise SystemExit('imported the shadowing worker package')\n")
    command, env = embedded_worker_command()
    assert command[:4] == [sys.executable, "-P", "-m", "worker.cli.main"]
    probe = [sys.executable, "-P", "-c", "import worker; print(worker.__file__)"]
    found = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found) == Path(worker.__file__).resolve()
    plain = subprocess.run([sys.executable, "-c", "import worker"], cwd=tmp_path, env=env, capture_output=True)
    assert plain.returncode != 0  # without -P the shadowing package wins: the case this guards against


def test_config_still_prints_when_the_device_is_unavailable(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cli.env["COPYDESK_DEVICE"] = "cuda"
    cli.env["COPYDESK_DTYPE"] = "auto"
    values = cli.json("config")
    assert values["device"] == "cuda"
    assert str(values["effective_batch_size"]).startswith("unknown (COPYDESK_DEVICE=cuda but no CUDA device")


# ------------------------------------------------------------------------------- the same everywhere


def test_review_list_and_feedback_export_report_as_json(after_generate: Cli, tmp_path: Path) -> None:
    queue = after_generate.json("review", "--list")
    assert {row["id"]: row["status"] for row in queue} == {f"a-{k}": v for k, v in WRITTEN.items()}
    assert all(isinstance(row["quality"], float) for row in queue)
    assert after_generate.json("review", "--list", "--status", "approved") == []
    assert after_generate("approve", "cli-alpha").exit_code == 0
    summary = after_generate.json("feedback", "export", "--to", str(tmp_path / "sft.jsonl"))
    assert summary["examples"] == 1 and summary["examples_path"] == str(tmp_path / "sft.jsonl")
    assert len((tmp_path / "sft.jsonl").read_text().splitlines()) == 1


def test_submit_and_cancel_report_as_json(cli: Cli, files: Files) -> None:
    submitted = cli.json("submit", str(files.good))
    assert (submitted["enqueued"], submitted["invalid"], submitted["published"]) == (1, 0, True)
    cancelled = cli.json("cancel", submitted["job_id"])
    assert cancelled == {"job_id": submitted["job_id"], "cancelled": 1, "status": "cancelled"}


def test_submit_warns_about_a_pinned_unknown_style_and_enqueues_it(cli: Cli, files: Files) -> None:
    result = cli("submit", str(files.mixed), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["enqueued"] == 4  # the workers' catalog decides, and fails it naming the style
    warning = " ".join(line for line in result.stderr.splitlines() if "record 4" in line)
    assert "field 'style': unknown style 'nope'" in warning


@pytest.mark.parametrize(
    "command", [["jobs", "history", "nope"], ["jobs", "run", "nope"], ["jobs", "validate", "nope"]]
)
def test_every_jobs_command_refuses_an_unknown_job(cli: Cli, tmp_path: Path, command: list[str]) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    cli.env["COPYDESK_JOBS_DIR"] = str(jobs)
    result = cli(*command)
    assert result.exit_code == JobFileError.exit_code, result.output
    assert one_line_error(result).startswith(f"error: no job file nope.yaml in {jobs}")


def test_submit_and_jobs_run_with_the_broker_down_report_then_raise(cli: Cli, files: Files, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    rows = [{"k": "a", "t": "How to plant tomatoes"}]
    job = {"template": {"id": "{{ row.k }}", "title": "{{ row.t }}"}, "rows": rows}
    (jobs / "once.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    cli.env.update(COPYDESK_BROKER_URL="redis://127.0.0.1:1/0", COPYDESK_JOBS_DIR=str(jobs))
    for args, kept in [(["submit", str(files.good)], "saved in job"), (["jobs", "run", "once"], "saved in run")]:
        result = cli(*args, "--json")
        assert result.exit_code == QueueError.exit_code, result.output
        summary = json.loads(result.stdout)
        assert summary["enqueued"] == 1 and summary["published"] is False
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # after a logged warning
        assert "cannot reach the broker" in line and kept in line and "a worker will publish them" in line


def test_submit_without_a_styles_folder_enqueues_unchecked(cli: Cli, files: Files, tmp_path: Path) -> None:
    cli.env["COPYDESK_STYLES_DIR"] = str(tmp_path / "no-styles-here")  # the styles may live on the workers only
    result = cli("submit", str(files.mixed), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["enqueued"] == 4
    assert "pinned styles not checked: styles directory" in " ".join(result.stderr.split())
