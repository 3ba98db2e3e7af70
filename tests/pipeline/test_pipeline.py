"""Tests of :mod:`worker.pipeline.pipeline` on the tiny random llama in fp32: a mixed batch of styles, one of them
served by a real LoRA adapter, with per-brief errors, gates that cannot pass, provenance and reproducibility.

The tiny model writes random words, so the styles here are built for the test: ``alpha`` serves a LoRA
adapter, ``beta`` runs on the base model with no gates (always passes), ``gamma`` has gates no draft can pass
(a 5 % length tolerance on 200 words with a 16-token budget, and on_topic min 1.0), and ``delta`` serves an
adapter whose weights file is random bytes.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from model_fixtures import TINY_MODEL_ID, adapter_a_dir, adapter_b_dir, copy_dir, one_torch_thread, tiny_model_dir

from worker.config import Settings
from worker.engine.adapters import ADAPTER_META, ADAPTER_WEIGHTS, adapter_sha256
from worker.engine.base_model import weights_hash
from worker.engine.engine import Engine, GenerationOutput, GenerationRequest
from worker.errors import StyleError
from worker.intake.briefs import Brief
from worker.pipeline.pipeline import BriefOutcome, Pipeline, derive_seed, max_new_tokens
from worker.pipeline.prompts import PromptRenderer
from worker.results import ArticleResult, ArticleStatus
from worker.scoring.embeddings import Embedder, default_embedder
from worker.styles.catalog import StyleCatalog, brief_bucket, load_style
from worker.styles.score_names import SCORE_NAMES

__all__ = ["adapter_a_dir", "adapter_b_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOKEN_BUDGET = 16  # the styles' max_new_tokens: the least a style allows, so that generation stays fast
MAX_ATTEMPTS = 2
BASE_SEED = 4242


def write_style(
    styles_dir: Path,
    name: str,
    *,
    categories: dict[str, float],
    gates: list[str],
    candidates: int,
    adapter: str | None = None,
    targets: dict[str, Any] | None = None,
) -> Path:
    directory = styles_dir / name
    directory.mkdir(parents=True)
    data: dict[str, Any] = {
        "name": name,
        "description": f"test style {name}",
        "system_prompt": "You write short articles.",  # the same for every style: only the adapter differs
        "routing": {"categories": categories},
        "gates": gates,
        "generation": {
            "temperature": 0.8,
            "top_p": 0.95,
            "repetition_penalty": 1.1,
            "candidates": candidates,
            "tokens_per_word": 1.5,
            "max_new_tokens": TOKEN_BUDGET,
        },
        "adapter": adapter,
    }
    if targets:
        data["targets"] = targets
    (directory / "style.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


class RecordingEngine(Engine):
    """The real engine, also keeping every raw output by request key.

    The pipeline hands back cleaned drafts only, and cleaning trims the tiny model's random words (which
    rarely end a sentence) down to the title, so reproducibility is checked on the raw text as well.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw: dict[str, GenerationOutput] = {}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        outputs = super().generate(requests)
        self.raw.update((output.key, output) for output in outputs)
        return outputs


@dataclass
class World:
    """Everything the module's tests share: the styles, settings, engine and the mixed batch's outcomes."""

    styles_dir: Path
    settings: Settings
    engine: RecordingEngine
    embedder: Embedder
    briefs: list[Brief]
    outcomes: list[BriefOutcome]
    progress: list[tuple[str, int]]
    raw: dict[str, GenerationOutput]  # the mixed batch's raw outputs by key

    def outcome(self, brief_id: str) -> BriefOutcome:
        return next(o for o in self.outcomes if o.brief.brief_id == brief_id)

    def result(self, brief_id: str) -> ArticleResult:
        found = self.outcome(brief_id)
        assert found.result is not None, found.error
        return found.result

    def pipeline(self, engine: Engine | None = None) -> Pipeline:
        return Pipeline(self.settings, engine or self.engine, embedder=self.embedder)


def mixed_briefs() -> list[Brief]:
    common: dict[str, Any] = {"target_words": 200, "keywords": ["soil", "water"], "notes": "Keep it short."}
    return [
        Brief(id="alpha-routed", title="How to plant tomatoes", content_type="how-to", category="alpha-cat", **common),
        Brief(id="unknown-pin", title="A brief for a style nobody wrote", style="nope", **common),
        Brief(
            id="beta-pinned", title="Why caches make programs fast", content_type="explainer", style="beta", **common
        ),
        Brief(id="delta-routed", title="A brief for the broken adapter", category="delta-cat", **common),
        Brief(
            id="gamma-routed",
            title="Ten things to pack for a hike",
            content_type="listicle",
            category="gamma-cat",
            **common,
        ),
        Brief(id="alpha-pinned", title="Seven salads for summer", content_type="listicle", style="alpha", **common),
        Brief(id="delta-pinned", title="Another brief for the broken adapter", style="delta", **common),
        Brief(id="default-routed", title="Notes on nothing in particular", category="unrouted", **common),
    ]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, adapter_a_dir: Path, adapter_b_dir: Path
) -> World:
    root = tmp_path_factory.mktemp("pipeline")
    styles_dir = root / "styles"
    alpha = write_style(
        styles_dir, "alpha", categories={"alpha-cat": 3}, gates=["style_rules"], candidates=2, adapter="v1"
    )
    copy_dir(adapter_a_dir, alpha / "adapters" / "v1")
    write_style(styles_dir, "beta", categories={"beta-cat": 3}, gates=[], candidates=1)
    write_style(
        styles_dir,
        "gamma",
        categories={"gamma-cat": 3},
        gates=["length", "on_topic"],
        candidates=2,
        targets={"length_tolerance": 0.05, "min_on_topic": 1.0},
    )
    delta = write_style(styles_dir, "delta", categories={"delta-cat": 3}, gates=[], candidates=1, adapter="v1")
    broken = copy_dir(adapter_b_dir, delta / "adapters" / "v1")
    (broken / ADAPTER_WEIGHTS).write_bytes(random.Random(7).randbytes(4096))

    settings = Settings(
        home=root / "home",
        model=str(tiny_model_dir),
        dtype="float32",
        device="cpu",
        styles_dir=styles_dir,
        default_style="beta",
        max_attempts=MAX_ATTEMPTS,
        seed=BASE_SEED,
        batch_size=3,  # several batches of mixed styles in one attempt
    )
    engine = RecordingEngine.from_settings(settings)
    embedder = default_embedder()
    briefs = mixed_briefs()
    progress: list[tuple[str, int]] = []
    pipeline = Pipeline(settings, engine, embedder=embedder)
    outcomes = pipeline.run(briefs, lambda message, done: progress.append((message, done)))
    return World(styles_dir, settings, engine, embedder, briefs, outcomes, progress, dict(engine.raw))


GOOD = ("alpha-routed", "beta-pinned", "gamma-routed", "alpha-pinned", "default-routed")


# ------------------------------------------------------------------------------------- outcomes of a batch


def test_every_brief_gets_an_outcome_in_input_order(world: World) -> None:
    assert [o.brief.brief_id for o in world.outcomes] == [b.brief_id for b in world.briefs]
    for outcome in world.outcomes:
        assert (outcome.result is None) != (outcome.error is None), outcome.brief.brief_id
    with_results = [o.brief.brief_id for o in world.outcomes if o.result is not None]
    assert with_results == [b.brief_id for b in world.briefs if b.brief_id in GOOD]
    for outcome in world.outcomes:
        if outcome.result is not None:
            assert outcome.result.brief_id == outcome.brief.brief_id


def test_styles_are_routed_pinned_or_defaulted(world: World) -> None:
    assert world.result("alpha-routed").style == "alpha"
    assert world.result("alpha-pinned").style == "alpha"
    assert world.result("beta-pinned").style == "beta"
    assert world.result("gamma-routed").style == "gamma"
    assert world.result("default-routed").style == "beta"
    routing = {brief_id: world.result(brief_id).provenance["routing"] for brief_id in GOOD}
    assert routing["alpha-routed"]["reason"].startswith("highest score 3")
    assert "category=alpha-cat" in routing["alpha-routed"]["reason"]
    assert routing["alpha-pinned"]["reason"] == "pinned by the brief"
    assert routing["default-routed"]["reason"] == "no routing rule matched: default style"


def test_unknown_pinned_style_is_an_error_naming_the_known_styles(world: World) -> None:
    error = world.outcome("unknown-pin").error
    assert error is not None
    assert "'nope'" in error
    assert "known styles: alpha, beta, delta, gamma" in error


def test_corrupt_adapter_fails_only_the_briefs_of_its_style(world: World) -> None:
    for brief_id in ("delta-routed", "delta-pinned"):
        error = world.outcome(brief_id).error
        assert error is not None
        assert "adapter delta v1" in error
        assert "corrupt or unreadable" in error
    assert all(world.outcome(brief_id).result is not None for brief_id in GOOD)


def test_progress_reports_each_attempt(world: World) -> None:
    messages = [message for message, _ in world.progress]
    assert messages[0] == f"attempt 1: generating {len(GOOD)} brief(s)"
    assert messages[1] == "attempt 1 scored"
    # gamma cannot pass, so a second attempt always runs, for fewer briefs than the first
    assert messages[-1] == f"attempt {MAX_ATTEMPTS} scored"
    assert re.fullmatch(rf"attempt {MAX_ATTEMPTS}: generating [1-4] brief\(s\)", messages[-2])
    done_after_first = world.progress[1][1]
    assert done_after_first == sum(1 for brief_id in GOOD if world.result(brief_id).provenance["attempts_used"] == 1)


# ---------------------------------------------------------------------------------------------- results


def test_results_carry_scores_title_and_markdown(world: World) -> None:
    for brief_id in GOOD:
        result = world.result(brief_id)
        assert set(result.scores) == set(SCORE_NAMES)
        assert result.body_markdown.startswith("# ")
        assert result.body_markdown.endswith("\n")
        assert result.title
        assert result.body_markdown.splitlines()[0] == f"# {result.title}"


def test_status_follows_the_gates(world: World) -> None:
    beta = world.result("beta-pinned")  # no gates: always passes, in the first attempt
    assert beta.status == ArticleStatus.NEEDS_REVIEW
    assert beta.failing_gates == []
    assert beta.provenance["attempts_used"] == 1
    for brief_id in GOOD:
        result = world.result(brief_id)
        expected = ArticleStatus.NEEDS_REVIEW if not result.failing_gates else ArticleStatus.NEEDS_ATTENTION
        assert result.status == expected, brief_id
        if result.status == ArticleStatus.NEEDS_REVIEW:
            assert result.provenance["attempts_used"] == result.provenance["attempt"]


def test_gates_that_cannot_pass_give_needs_attention_after_max_attempts(world: World) -> None:
    result = world.result("gamma-routed")
    assert result.status == ArticleStatus.NEEDS_ATTENTION
    assert result.failing_gates == ["length", "on_topic"]
    assert result.scores["length"]["passed"] is False
    assert result.scores["on_topic"]["passed"] is False
    assert result.scores["on_topic"]["value"] < 1.0
    assert result.provenance["attempts_used"] == MAX_ATTEMPTS
    assert sorted({c.attempt for c in result.candidates}) == list(range(1, MAX_ATTEMPTS + 1))
    assert all(not c.passed and c.failing_gates for c in result.candidates)


def test_candidates_are_candidates_times_attempts_and_one_is_selected(world: World) -> None:
    styles = StyleCatalog.load(world.styles_dir)
    for brief_id in GOOD:
        result = world.result(brief_id)
        per_attempt = styles.get(result.style).generation.candidates
        attempts = result.provenance["attempts_used"]
        assert len(result.candidates) == per_attempt * attempts, brief_id
        expected_slots = [(a, i) for a in range(1, attempts + 1) for i in range(per_attempt)]
        assert [(c.attempt, c.index) for c in result.candidates] == expected_slots
        selected = [c for c in result.candidates if c.selected]
        assert len(selected) == 1, brief_id
        chosen = selected[0]
        assert chosen.text == result.body_markdown
        assert (chosen.attempt, chosen.index) == (result.provenance["attempt"], result.provenance["candidate_index"])
        assert chosen.failing_gates == result.failing_gates
        assert chosen.scores == result.scores
        assert chosen.seed == result.provenance["seed"]
        assert len({c.seed for c in result.candidates}) == len(result.candidates)
        for c in result.candidates:
            assert c.seed == derive_seed(BASE_SEED, brief_id, c.attempt, c.index)
            assert 0 <= c.new_tokens <= TOKEN_BUDGET
            assert c.generation_seconds > 0


# ------------------------------------------------------------------------------------------- provenance


def test_provenance_names_model_adapter_template_settings_seed_tokens_timings(
    world: World, tiny_model_dir: Path
) -> None:
    renderer = PromptRenderer(world.settings.templates_dir)
    for brief_id in GOOD:
        result = world.result(brief_id)
        brief = world.outcome(brief_id).brief
        style = load_style(world.styles_dir / result.style / "style.yaml")
        prov = result.provenance
        assert prov["model"] == {
            "id": TINY_MODEL_ID,
            "weights_sha256": weights_hash(tiny_model_dir),
            "dtype": "float32",
            "device": "cpu",
            "exact_rows": True,  # dtype float32 set: the text this row gives alone
        }
        assert re.fullmatch(r"[0-9a-f]{64}", prov["model"]["weights_sha256"])
        assert prov["scoring"] == {"embedder_dtype": "float32"}  # the on_topic scores' precision
        template = f"prompts/{brief.content_type}.j2"
        assert prov["template"] == {"name": template, "sha256_16": renderer.template_hash(template)}
        assert re.fullmatch(r"[0-9a-f]{16}", prov["template"]["sha256_16"])
        generation = prov["generation"]
        assert generation["max_new_tokens"] == max_new_tokens(brief, style) == TOKEN_BUDGET
        assert generation["candidates_per_attempt"] == style.generation.candidates
        assert generation["top_p"] == style.generation.top_p
        if prov["attempt"] == 1:  # later attempts sample cooler
            assert generation["temperature"] == style.generation.temperature
            assert generation["repetition_penalty"] == style.generation.repetition_penalty
        else:
            assert generation["temperature"] < style.generation.temperature
        assert prov["base_seed"] == BASE_SEED
        assert prov["seed"] == derive_seed(BASE_SEED, brief_id, prov["attempt"], prov["candidate_index"])
        chosen = next(c for c in result.candidates if c.selected)
        assert prov["tokens"]["new"] == chosen.new_tokens
        assert prov["tokens"]["prompt"] > 20
        assert isinstance(prov["tokens"]["hit_eos"], bool)
        assert set(prov["timings_s"]) == {"plan_s", "generate_s", "score_s"}
        assert prov["timings_s"]["generate_s"] > 0
        assert all(value >= 0 for value in prov["timings_s"].values())
        assert prov["language"] == "en"
        assert prov["copydesk_version"]
        assert result.adapter_version == style.adapter


def test_provenance_records_the_adapter_or_says_there_is_none(world: World) -> None:
    for brief_id in ("alpha-routed", "alpha-pinned"):
        assert world.result(brief_id).provenance["adapter"] == {
            "style": "alpha",
            "version": "v1",
            "path": str(world.styles_dir / "alpha" / "adapters" / "v1"),
            "sha256": adapter_sha256(world.styles_dir / "alpha" / "adapters" / "v1"),  # the exact bytes
        }
        assert world.result(brief_id).adapter_version == "v1"
    for brief_id, style in (("beta-pinned", "beta"), ("gamma-routed", "gamma"), ("default-routed", "beta")):
        assert world.result(brief_id).provenance["adapter"] == {
            "style": style,
            "version": None,
            "note": "no adapter: base model only",
        }
        assert world.result(brief_id).adapter_version is None


# -------------------------------------------------------------------------------------- reproducibility


def candidate_texts(result: ArticleResult) -> list[tuple[int, int, int, int, str]]:
    return [(c.attempt, c.index, c.seed, c.new_tokens, c.text) for c in result.candidates]


def raw_rows(raw: dict[str, GenerationOutput], brief_id: str) -> dict[str, tuple[str, int, int, bool]]:
    """The raw outputs of one brief's candidates: key -> (text, prompt tokens, new tokens, hit EOS)."""
    return {
        key: (out.text, out.prompt_tokens, out.new_tokens, out.hit_eos)
        for key, out in raw.items()
        if key.startswith(f"{brief_id}/")
    }


def brief(world: World, brief_id: str) -> Brief:
    return next(b for b in world.briefs if b.brief_id == brief_id)


def run_alone(pipeline: Pipeline, briefs: Sequence[Brief]) -> list[ArticleResult]:
    outcomes = pipeline.run(briefs)
    assert all(o.result is not None for o in outcomes), [o.error for o in outcomes]
    return [o.result for o in outcomes if o.result is not None]


@pytest.mark.parametrize("brief_id", ["alpha-pinned", "gamma-routed", "beta-pinned"])
def test_a_brief_alone_writes_the_same_text_as_in_the_mixed_batch(world: World, brief_id: str) -> None:
    batch_raw = raw_rows(world.raw, brief_id)
    world.engine.raw.clear()
    (alone,) = run_alone(world.pipeline(), [brief(world, brief_id)])
    batch = world.result(brief_id)
    alone_raw = raw_rows(world.engine.raw, brief_id)
    assert len(batch_raw) == len(batch.candidates)
    assert alone_raw == batch_raw
    assert any(text.strip() for text, *_ in alone_raw.values())  # the comparison is not between empty texts
    assert candidate_texts(alone) == candidate_texts(batch)
    assert alone.body_markdown == batch.body_markdown
    assert alone.scores == batch.scores
    assert alone.status == batch.status


def test_a_base_model_brief_is_the_same_on_an_engine_without_adapters(world: World) -> None:
    """A fresh engine has never wrapped the model in PEFT: base-model rows must not notice the difference."""
    fresh = RecordingEngine.from_settings(world.settings)
    (alone,) = run_alone(world.pipeline(fresh), [brief(world, "gamma-routed")])
    assert not fresh.adapters.loaded
    assert raw_rows(fresh.raw, "gamma-routed") == raw_rows(world.raw, "gamma-routed")
    assert candidate_texts(alone) == candidate_texts(world.result("gamma-routed"))


def test_the_adapter_changes_what_the_model_writes(world: World) -> None:
    """The same brief pinned to the adapter-free beta style writes different text: same prompt, same seed
    and same sampling settings, so the adapter is the only difference."""
    as_beta = brief(world, "alpha-pinned").model_copy(update={"style": "beta"})
    world.engine.raw.clear()
    (result,) = run_alone(world.pipeline(), [as_beta])
    assert result.provenance["adapter"]["version"] is None
    catalog = StyleCatalog.load(world.styles_dir)
    alpha, beta = catalog.get("alpha"), catalog.get("beta")
    assert alpha.system_prompt == beta.system_prompt
    assert alpha.generation.model_copy(update={"candidates": 1}) == beta.generation
    with_adapter = raw_rows(world.raw, "alpha-pinned")["alpha-pinned/1/0"]
    without = raw_rows(world.engine.raw, "alpha-pinned")["alpha-pinned/1/0"]
    assert with_adapter[1] == without[1]  # the same prompt
    assert with_adapter[0] != without[0]


def test_a_different_base_seed_writes_different_text(world: World) -> None:
    settings = world.settings.model_copy(update={"seed": BASE_SEED + 1})
    world.engine.raw.clear()
    (other,) = run_alone(Pipeline(settings, world.engine, embedder=world.embedder), [brief(world, "beta-pinned")])
    assert other.provenance["seed"] != world.result("beta-pinned").provenance["seed"]
    assert raw_rows(world.engine.raw, "beta-pinned") != raw_rows(world.raw, "beta-pinned")


# ----------------------------------------------------------------------------------- derive_seed, budget


def test_derive_seed_is_deterministic_and_distinct_per_brief_attempt_and_index() -> None:
    assert derive_seed(1, "brief-a", 1, 0) == derive_seed(1, "brief-a", 1, 0)
    seeds = {
        derive_seed(base, brief_id, attempt, index)
        for base in (1, 2)
        for brief_id in ("brief-a", "brief-b", "brief-a1")
        for attempt in (1, 2, 3)
        for index in range(4)
    }
    assert len(seeds) == 2 * 3 * 3 * 4
    # the seed must fit torch.Generator.manual_seed, which takes a non-negative 63-bit integer
    assert all(0 <= seed < 2**63 for seed in seeds)
    torch.Generator().manual_seed(max(seeds))


def test_max_new_tokens_follows_target_length_capped_by_the_style(world: World) -> None:
    style = load_style(world.styles_dir / "beta" / "style.yaml")
    roomy = style.model_copy(update={"generation": style.generation.model_copy(update={"max_new_tokens": 4096})})
    brief = Brief(title="A medium article", target_words=100)
    assert max_new_tokens(brief, roomy) == 150 + 24
    longer = Brief(title="A longer article", target_words=1000)
    assert max_new_tokens(longer, roomy) == 1500 + 24
    assert max_new_tokens(longer, roomy) > max_new_tokens(brief, roomy)
    assert max_new_tokens(brief, style) == TOKEN_BUDGET  # the style's cap wins
    dense = roomy.model_copy(update={"generation": roomy.generation.model_copy(update={"tokens_per_word": 1.55})})
    assert max_new_tokens(Brief(title="Odd", target_words=51), dense) == 80 + 24  # ceil(79.05)


# ---------------------------------------------------------------------------------------- per base model


def other_base_copy(source: Path, destination: Path) -> Path:
    """A copy of a tiny-model adapter that records another base model (it is never loaded here)."""
    copy_dir(source, destination)
    meta = json.loads((destination / ADAPTER_META).read_text())
    (destination / ADAPTER_META).write_text(json.dumps({**meta, "base_model_id": "other-model"}))
    return destination


def per_base_styles(root: Path, adapter_a_dir: Path, adapter_b_dir: Path) -> Path:
    """``duo`` serves v1 on the tiny model and v2 on other-model, with a canary of v3 (tiny) on half its briefs;
    ``lone`` serves other-model only (the old single line); ``elsewhere`` runs its canary on other-model."""
    styles_dir = root / "styles"
    lines = {
        "duo": {"adapter": {TINY_MODEL_ID: "v1", "other-model": "v2"}, "canary": {"version": "v3", "share": 0.5}},
        "lone": {"adapter": "v1"},
        "elsewhere": {"adapter": "v1", "canary": {"version": "v2", "share": 0.5}},
    }
    for name, fields in lines.items():
        folder = write_style(styles_dir, name, categories={}, gates=[], candidates=1)
        data = yaml.safe_load((folder / "style.yaml").read_text())
        (folder / "style.yaml").write_text(yaml.safe_dump({**data, **fields}, sort_keys=False))
    copy_dir(adapter_a_dir, styles_dir / "duo" / "adapters" / "v1")
    other_base_copy(adapter_b_dir, styles_dir / "duo" / "adapters" / "v2")
    copy_dir(adapter_b_dir, styles_dir / "duo" / "adapters" / "v3")
    other_base_copy(adapter_a_dir, styles_dir / "lone" / "adapters" / "v1")
    copy_dir(adapter_a_dir, styles_dir / "elsewhere" / "adapters" / "v1")
    other_base_copy(adapter_b_dir, styles_dir / "elsewhere" / "adapters" / "v2")
    return styles_dir


def test_each_style_writes_with_what_it_serves_on_the_loaded_base_model(
    world: World, tmp_path: Path, adapter_a_dir: Path, adapter_b_dir: Path
) -> None:
    styles_dir = per_base_styles(tmp_path, adapter_a_dir, adapter_b_dir)
    settings = world.settings.model_copy(update={"styles_dir": styles_dir})
    pipeline = Pipeline(settings, world.engine, embedder=world.embedder)
    ids = [f"duo-{n}" for n in range(40)]
    duo_ids = [i for i in ids if brief_bucket("duo", i) < 0.5][:3] + [i for i in ids if brief_bucket("duo", i) >= 0.5][
        :3
    ]
    batch = [Brief(id=i, title=f"How to water plant {i}", style="duo", target_words=40) for i in duo_ids]
    batch += [Brief(id=f"lone-{n}", title="A note", style="lone", target_words=40) for n in range(1)]
    batch += [Brief(id=f"elsewhere-{n}", title="Notes", style="elsewhere", target_words=40) for n in range(4)]
    outcomes = {o.brief.brief_id: o for o in pipeline.run(batch)}

    duo = load_style(styles_dir / "duo" / "style.yaml", TINY_MODEL_ID)
    written = {i: outcomes[i].result.adapter_version for i in duo_ids}  # type: ignore[union-attr]
    assert written == {i: duo.version_for(i) for i in duo_ids} and set(written.values()) == {"v1", "v3"}
    for i in duo_ids:
        provenance = outcomes[i].result.provenance  # type: ignore[union-attr]
        assert provenance["model"]["id"] == TINY_MODEL_ID and provenance["canary"]["served"] == "v1"
        assert provenance["canary"]["arm"] == ("canary" if written[i] == "v3" else "served")
    again = Pipeline(settings, world.engine, embedder=world.embedder).run(list(reversed(batch[:6])))
    assert {o.brief.brief_id: o.result.adapter_version for o in again} == written  # type: ignore[union-attr]

    error = outcomes["lone-0"].error or ""
    assert "style 'lone' serves no adapter version on base model 'tiny-random-llama'" in error
    assert "v1 on other-model" in error and "versions: v1 (other-model)" in error
    for n in range(4):  # other-model's canary does not run on the tiny model
        result = outcomes[f"elsewhere-{n}"].result
        assert result is not None and result.adapter_version == "v1" and "canary" not in result.provenance


def test_a_catalog_loaded_for_another_base_model_is_refused(world: World) -> None:
    with pytest.raises(StyleError, match="loaded for base model 'other-model'"):
        Pipeline(world.settings, world.engine, catalog=StyleCatalog.load(world.styles_dir, "other-model"))
