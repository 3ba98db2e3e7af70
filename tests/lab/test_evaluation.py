"""Tests of :mod:`worker.lab.evaluation` on the tiny model: held-out perplexity base vs adapter, style fidelity of
drafts for the shared evaluation briefs (profile distance, voice classifier, sign test), the table and the PNG
plot, and refusals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from corpus_fixtures import voice_body
from training_fixtures import World, copy_world, one_torch_thread, tiny_model_dir, trained_world
from typer.testing import CliRunner

from worker.cli.main import app
from worker.engine.adapters import ADAPTER_META
from worker.engine.engine import Engine
from worker.errors import AdapterError, EvaluationError
from worker.intake.briefs import Brief
from worker.lab.eval_inputs import (
    EVAL_BRIEFS_FILE,
)
from worker.lab.eval_measures import draft_key, draft_requests
from worker.lab.eval_report import machine_summary, report_markdown
from worker.lab.evaluation import ISA_VARIABLES, cpu_features, evaluate_style, evaluate_styles, machine_record
from worker.lab.options import EvalOptions
from worker.lab.stylometry import FUNCTION_WORDS, VOICE_FEATURE_NAMES, voice_features, voice_matrix
from worker.scoring.embeddings import default_embedder
from worker.styles.catalog import StyleCatalog

__all__ = ["one_torch_thread", "tiny_model_dir", "trained_world"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

EVAL_BRIEFS = """\
target_words: 60
briefs:
  - {id: bread, title: Keeping bread fresh}
  - {id: bikes, title: Choosing a bicycle}
  - {id: typing, title: Learning to type}
"""


@pytest.fixture
def world(tmp_path: Path, trained_world: World) -> World:
    """The trained world with calm's corpus in its corpus/ folder (the voice classifier reads corpus folders)
    and three shared evaluation briefs."""
    copied = copy_world(trained_world, tmp_path)
    shutil.copytree(trained_world.root / "calm-corpus", copied.styles_dir / "calm" / "corpus")
    (copied.styles_dir / EVAL_BRIEFS_FILE).write_text(EVAL_BRIEFS, encoding="utf-8")
    return copied


def test_eval_reports_perplexity_fidelity_and_writes_table_and_plot(world: World) -> None:
    settings = world.settings()
    v1 = world.styles_dir / "calm" / "adapters" / "v1"
    shutil.copytree(v1, v1.with_name("v2"))  # a second version to compare against
    engine = Engine.from_settings(settings)
    report = evaluate_style(
        settings,
        "calm",
        version="v1",
        against="v2",
        options=EvalOptions(briefs=2, seeds=2, max_new_tokens=24),
        engine=engine,
        embedder=default_embedder(),
    )
    data = report.data
    assert report.variants == ["base", "v1", "v2"]
    assert data["machine"]["dtype"] == str(engine.dtype).removeprefix("torch.") and data["machine"]["device"] == "cpu"
    assert set(data["machine"]["cpu_flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert data["machine"]["cpu_capability"] and data["machine"]["threads"] == 1
    assert [row["variant"] for row in data["table"]] == ["base", "v1", "v2", "held-out articles"]
    perplexity = data["perplexity"]
    assert all(math.isfinite(value) and value > 1 for value in perplexity.values())
    assert perplexity["v1"] == perplexity["v2"]  # the same weights
    assert perplexity["v1"] < perplexity["base"]  # the adapter fits its held-out articles better
    # Drafts are written for the shared briefs (the first two), not for the held-out briefs.
    assert data["eval_briefs"]["titles"] == ["Keeping bread fresh", "Choosing a bicycle"]
    assert data["eval_briefs"]["target_words"] == 60
    for label in ("base", "v1", "v2"):
        fidelity = data["fidelity"][label]
        assert fidelity["profile_distance"] >= 0 and 0 <= fidelity["embedding_distance"] <= 2
        assert 0 <= fidelity["attribution_accuracy"] <= 1 and 0 <= fidelity["style_probability"] <= 1
        # Two seeds per brief: four drafts per variant, each measured on its own for the pairing.
        assert len(fidelity["attributed_to"]) == 4 and set(fidelity["attributed_to"]) <= {"calm", "stiff"}
        assert len(data["drafts"][label]) == 4 and len(set(data["drafts"][label])) > 1
        assert len(fidelity["style_probabilities"]) == len(fidelity["profile_distances"]) == 4
        assert all(draft.startswith("# ") for draft in data["drafts"][label])
        assert fidelity["memorisation_trips"] == 0.0  # a random model copies nothing of the corpus
        assert fidelity["memorisation_interval"][0] == 0.0 and 0 < fidelity["memorisation_interval"][1] < 1
        low, high = fidelity["profile_distance_interval"]
        assert low <= fidelity["profile_distance"] <= high
        low, high = fidelity["attribution_interval"]  # Wilson: never empty, inside [0, 1]
        assert 0 <= low <= fidelity["attribution_accuracy"] <= high <= 1 and high - low > 0.2
    assert data["seeds_per_brief"] == 2 and data["drafts_per_variant"] == 4
    # The paired change adapter - base per draft, with its interval and Wilcoxon test, and the verdict from it.
    assert set(data["paired"]) == set(data["verdict"]) == {"v1", "v2"}
    assert data["paired"]["v1"] == data["paired"]["v2"]  # the same weights write the same drafts
    change = data["paired"]["v1"]["style_probability"]
    assert change["up"] + change["down"] <= 4 and change["interval"][0] <= change["mean"] <= change["interval"][1]
    assert 0 <= change["wilcoxon"]["p_value"] <= 1 and "profile_distance" in data["paired"]["v1"]
    assert data["verdict"]["v1"]["verdict"] in {"the adapter moves the voice", "no evidence", "worse"}
    probe = data["memorisation_probe"]  # drafts for briefs of articles v1 trained on, where copying would show
    assert probe["briefs"] == 2
    for label in ("base", "v1", "v2"):
        assert probe[label]["memorisation_tripped"] == 0 and len(probe[label]["drafts"]) == 2
        assert 0 <= probe[label]["longest_copied_run"] < 40
    assert set(data["sign_test"]) == {"v1", "v2"}
    assert data["sign_test"]["v1"] == data["sign_test"]["v2"]  # the same weights write the same drafts
    check = data["classifier"]
    assert check["styles"] == ["calm", "stiff"]
    assert check["heldout_articles"] == 2  # calm's held-out articles; stiff has no version, holds none out
    assert check["training_articles"] == 14 and check["loo_articles"] == 16
    assert check["loo_accuracy"] == 1.0  # the fixture's voices are far apart
    # The real held-out articles are the ceiling: close to the profile and attributed to the style.
    assert data["reference"]["attribution_accuracy"] == 1.0
    assert data["reference"]["profile_distance"] < data["fidelity"]["base"]["profile_distance"]
    assert data["caveats"] == ["only 2 held-out article(s): treat perplexity differences as indicative"]

    files = {key: Path(value) for key, value in report.files.items()}
    assert files["plot"] == v1 / "eval" / "against-v2.png"
    assert files["plot"].read_bytes()[:8] == PNG_MAGIC
    assert json.loads(files["json"].read_text())["perplexity"] == perplexity
    markdown = files["markdown"].read_text()
    assert markdown == report_markdown(report)
    assert "| variant | perplexity (held-out) |" in markdown and "| v1 |" in markdown
    assert "leave-one-out accuracy 1.00 over all 16 articles" in markdown
    assert "exact sign test" in markdown
    assert "paired change v1 − base in P(style)" in markdown and "verdict, v1:" in markdown
    assert "Machine: " in markdown and " [" in markdown  # intervals in the table
    assert "memorisation probe, drafts for 2 briefs of articles the version trained on" in markdown


def test_eval_without_a_second_corpus_reports_no_attribution(world: World) -> None:
    shutil.rmtree(world.styles_dir / "stiff" / "corpus")
    settings = world.settings()
    report = evaluate_style(settings, "calm", options=EvalOptions(briefs=1, seeds=1, max_new_tokens=8))
    assert report.data["fidelity"]["base"].get("attribution_accuracy") is None
    assert report.data["sign_test"] == {}
    assert report.data["machine"]["dtype"] == "float32"  # the evaluation's default: the engine's exact mode
    assert list(report.data["paired"]["v1"]) == ["profile_distance"]  # no P(style) without a classifier
    assert report.data["verdict"]["v1"]["verdict"] == "no evidence"  # one brief: no interval
    assert any("drafts not attributed" in note for note in report.data["caveats"])
    assert "n/a" in report_markdown(report)


def test_fp32_drafts_are_the_same_from_run_to_run_and_batch_to_batch(world: World) -> None:
    """The default (fp32, exact rows): a second run, with another version in the batch, writes the same drafts; the
    evaluation keeps exact rows where serving is set to go without them."""
    settings = world.settings().model_copy(update={"exact_rows": False})
    options = EvalOptions(briefs=2, seeds=2, max_new_tokens=12)
    first = evaluate_style(settings, "calm", options=options)
    v1 = world.styles_dir / "calm" / "adapters" / "v1"
    shutil.copytree(v1, v1.with_name("v2"))
    second = evaluate_style(settings, "calm", version="v1", against="v2", options=options)
    assert first.data["machine"]["dtype"] == second.data["machine"]["dtype"] == "float32"
    assert first.data["machine"]["exact_rows"] is second.data["machine"]["exact_rows"] is True
    for label in ("base", "v1"):
        assert second.data["drafts"][label] == first.data["drafts"][label]
    assert second.data["drafts"]["v2"] == first.data["drafts"]["v1"]  # the same weights under another name
    assert second.data["paired"]["v1"] == first.data["paired"]["v1"]  # and so the same statistics


def test_eval_command_prints_the_table(world: World) -> None:
    output = world.root / "report"
    result = CliRunner().invoke(
        app,
        ["styles", "eval", "calm", "--briefs", "1", "--seeds", "2", "--max-new-tokens", "16", "--output", str(output)],
        env=world.env(),
    )
    assert result.exit_code == 0, result.output
    for text in ("calm v1 against base", "perplexity", "attributed (voice)", "held-out", "leave-one-out"):
        assert text in result.output
    for text in ("paired change v1 − base in P(style)", "Wilcoxon signed-rank", "verdict, v1:", "float32 on cpu"):
        assert text in result.output
    assert json.loads((output / "against-base.json").read_text())["drafts_per_variant"] == 2
    assert (output / "against-base.png").read_bytes()[:8] == PNG_MAGIC
    assert (output / "against-base.md").is_file()


def test_eval_all_evaluates_every_style_with_a_version(world: World) -> None:
    command = ["styles", "eval", "--all", "--briefs", "1", "--seeds", "1", "--max-new-tokens", "8"]
    result = CliRunner().invoke(app, command, env=world.env())
    assert result.exit_code == 0, result.output
    assert "calm v1 against base" in result.output and "stiff v" not in result.output  # stiff has no version
    assert (world.styles_dir / "calm" / "adapters" / "v1" / "eval" / "against-base.json").is_file()
    shutil.copytree(world.styles_dir / "calm" / "adapters" / "v1", world.styles_dir / "stiff" / "adapters" / "v1")
    result = CliRunner().invoke(app, command, env=world.env())
    assert result.exit_code == 0, result.output
    assert "stiff v1 against base" in result.output
    assert "summary" in result.output and "all styles" in result.output  # both styles' drafts pooled
    assert "verdict" in result.output
    for bad in (["styles", "eval"], ["styles", "eval", "calm", "--all"]):
        refused = CliRunner().invoke(app, bad, env=world.env())
        assert refused.exit_code == 2 and "give one style NAME or --all" in refused.output


def test_eval_refuses_an_adapter_for_another_base_model(world: World) -> None:
    meta_path = world.styles_dir / "calm" / "adapters" / "v1" / ADAPTER_META
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "base_model_id": "some-other-model"}))
    result = CliRunner().invoke(app, ["styles", "eval", "calm"], env=world.env())
    assert result.exit_code == AdapterError.exit_code
    assert "was trained for base model 'some-other-model'" in result.output


def test_eval_needs_a_version_and_the_shared_briefs(world: World) -> None:
    settings = world.settings()
    with pytest.raises(EvaluationError, match="no adapter version yet"):
        evaluate_style(settings, "stiff")
    with pytest.raises(EvaluationError, match="has no version 'v7'"):
        evaluate_style(settings, "calm", against="v7")
    with pytest.raises(EvaluationError, match="apply to one style"):
        evaluate_styles(settings, ["calm", "stiff"], against="v1")
    with pytest.raises(EvaluationError, match="is the version under evaluation"):
        shutil.copytree(world.styles_dir / "calm" / "adapters" / "v1", world.styles_dir / "calm" / "adapters" / "v2")
        evaluate_style(settings, "calm", version="v2", against="v2")
    (world.styles_dir / EVAL_BRIEFS_FILE).unlink()
    with pytest.raises(EvaluationError, match="no shared evaluation briefs"):
        evaluate_style(settings, "calm")
    assert StyleCatalog.load(settings.styles_dir).names == ["calm", "stiff"]  # the briefs file is not a style


# ------------------------------------------------------------------------------------------- pieces


def test_draft_requests_pair_variants_and_seed_each_brief_twice(world: World) -> None:
    from worker.pipeline.pipeline import derive_seed
    from worker.pipeline.prompts import PromptRenderer

    settings = world.settings()
    style = StyleCatalog.load(settings.styles_dir).get("calm")
    briefs = [Brief(id=f"eval-{n}", title=f"Topic {n}", target_words=60, style="calm") for n in ("a", "b")]
    refs = {"base": None, "v1": None}
    requests = draft_requests(settings, PromptRenderer(settings.templates_dir), style, briefs, refs, 32, seeds=2)
    keys = [r.key for r in requests]
    assert keys[:4] == [draft_key("calm", "base", brief, seed) for brief in ("eval-a", "eval-b") for seed in (0, 1)]
    assert len(set(keys)) == 8
    seeds = {r.key: r.settings.seed for r in requests}
    # Seed 0 is what a one-seed evaluation always used (the pipeline's first candidate); variants share seeds.
    assert seeds["calm/base/eval-a#0"] == derive_seed(settings.seed, "eval-a", 1, 0) == seeds["calm/v1/eval-a#0"]
    assert seeds["calm/base/eval-a#1"] == derive_seed(settings.seed, "eval-a", 1, 1) != seeds["calm/base/eval-a#0"]


def test_cpu_features_from_cpuinfo() -> None:
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16 sse\n"
    assert cpu_features(cpuinfo) == {
        "cpu_model": "AMD EPYC 9R14",
        "cpu_flags": {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_bf16": False},
    }
    assert cpu_features("") == {
        "cpu_model": None,
        "cpu_flags": dict.fromkeys(("avx2", "avx512f", "avx512_bf16", "amx_bf16"), False),
    }


def test_machine_summary_names_the_flags_the_cpu_has_and_lacks() -> None:
    machine = {
        "dtype": "float32",
        "device": "cpu",
        "torch": "2.13.0+cpu",
        "threads": 2,
        "cpu_capability": "AVX2",
        "cpu_model": "AMD EPYC",
        "cpu_flags": {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_bf16": False},
        "isa_overrides": {"ATEN_CPU_CAPABILITY": "avx2"},
    }
    summary = machine_summary(machine)
    assert "AMD EPYC (with avx2, avx512f, avx512_bf16; without amx_bf16)" in summary
    assert summary.endswith("ISA forced: ATEN_CPU_CAPABILITY=avx2.")
    none = machine_summary({**machine, "cpu_flags": dict.fromkeys(("avx2", "amx_bf16"), False), "isa_overrides": {}})
    assert "(with none; without avx2, amx_bf16)." in none
    assert machine_summary({}) == "Machine: not recorded."


def test_the_machine_record_names_every_isa_limit_set(monkeypatch: pytest.MonkeyPatch) -> None:
    forced = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    for name in ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in forced.items():
        monkeypatch.setenv(name, value)
    record = machine_record(object())  # nothing read from the engine but its dtype and device
    assert record["isa_overrides"] == forced and (record["dtype"], record["device"]) == ("unknown", "unknown")


def test_a_machine_record_without_an_engine_claims_no_dtype_or_device() -> None:
    record = machine_record(None)  # the benches that record each engine's dtype themselves
    assert "dtype" not in record and "device" not in record
    assert record["threads"] >= 1 and set(record["cpu_flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


def test_voice_features_measure_voice_not_topic() -> None:
    assert len(VOICE_FEATURE_NAMES) == len(set(VOICE_FEATURE_NAMES)) == voice_matrix(["# T\n\nHi."]).shape[1]
    chatty = "# Bread\n\nYou'll love this! It's easy, and it's quick; really, it is (promise).\n"
    features = voice_features(chatty)
    assert features["contractions_per_100_words"] > 0 and features["semicolons_per_100_words"] > 0
    assert features["parentheses_per_100_words"] > 0 and features["exclamations"] > 0
    assert features["fw_really"] > 0 and features["fw_the"] == 0
    assert not {"bread", "pan", "database"} & set(FUNCTION_WORDS)
    # Same voice, other topic: closer than same topic, other voice.
    plain_a, plain_b, formal_a = voice_body("plain", 0), voice_body("plain", 5), voice_body("formal", 0)
    x = voice_matrix([plain_a, plain_b, formal_a])
    scale = x.std(axis=0) + 1e-6
    assert np.linalg.norm((x[0] - x[1]) / scale) < np.linalg.norm((x[0] - x[2]) / scale)


# ------------------------------------------------------------------------------------------- shipped adapters


@pytest.mark.real_model
def test_shipped_adapters_load_and_change_the_voice_on_the_real_model(tmp_path: Path) -> None:
    """Every shipped style serves a trained adapter that loads on the real default model and changes its output."""
    import torch

    from worker.config import DEFAULT_MODEL, PROJECT_ROOT, Settings
    from worker.engine.adapters import AdapterRef, check_adapter
    from worker.engine.engine import GenerationRequest
    from worker.engine.sampling import RowSettings
    from worker.pipeline.prompts import PromptRenderer

    settings = Settings(home=tmp_path, device="cpu", dtype="float32")
    catalog = StyleCatalog.load(PROJECT_ROOT / "styles")
    engine = Engine.from_settings(settings)
    renderer = PromptRenderer(settings.templates_dir)
    brief = Brief(title="How to keep herbs fresh", content_type="how-to", target_words=80)
    for name in ("plain-howto", "tech-deepdive", "upbeat-lifestyle"):
        style = catalog.get(name)
        assert style.adapter is not None and style.adapter_dir is not None
        ref = AdapterRef(name, style.adapter, style.adapter_dir)
        check_adapter(ref, DEFAULT_MODEL)
        assert (style.adapter_dir / "adapter_model.safetensors").stat().st_size < 12_000_000  # r=8, all linear layers
        assert (style.adapter_dir / "corpus_ngrams.safetensors").is_file()  # the memorisation guard's index
        engine.load_adapter(ref)
        messages = renderer.render(brief, style).messages()
        ids = engine.tokenizer(engine.chat_prompt(messages), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            base = engine.model(**ids, adapter_names=["__base__"]).logits[0, -1]
            tuned = engine.model(**ids, adapter_names=[ref.name]).logits[0, -1]
        assert float((base - tuned).abs().max()) > 1e-2  # the adapter changes the next-token distribution
        row = RowSettings(0.0, 1.0, 1.0, 12, 0)
        (out,) = engine.generate([GenerationRequest(name, messages, row, ref)])
        assert out.new_tokens > 0 and out.text.strip()
