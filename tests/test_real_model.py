"""End to end with the REAL default base model (SmolLM2-135M-Instruct from the packaged GGUF).

The first run ever converts the GGUF into ``COPYDESK_MODEL_CACHE_DIR`` (default ``~/.cache/copydesk/models``,
~25 s, once); later runs load the converted safetensors. One short article goes through the whole pipeline
and the store.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from model_fixtures import one_torch_thread

from worker.config import DEFAULT_MODEL, PROJECT_ROOT, Settings
from worker.engine.base_model import weights_hash
from worker.engine.engine import Engine
from worker.intake.briefs import Brief
from worker.pipeline.pipeline import Pipeline
from worker.pipeline.runner import write_briefs
from worker.scoring.embeddings import default_embedder
from worker.scoring.markdown import strip_markdown
from worker.scoring.memorisation import NEAR_DUPLICATE
from worker.scoring.text import words
from worker.store import Store
from worker.store.article_files import read_article_file
from worker.styles.score_names import SCORE_NAMES

__all__ = ["one_torch_thread"]  # fixture used by name

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

COMMON_WORDS = {"the", "a", "and", "to", "of", "is", "your", "you", "it", "in", "for", "with", "are", "that"}


def one_candidate_style(styles_dir: Path) -> None:
    """The shipped plain-howto style on the base model alone, generating one candidate per attempt.

    (Its trained adapter is exercised by tests/lab/test_evaluation.py::test_shipped_adapters_*.)"""
    data = yaml.safe_load((PROJECT_ROOT / "styles" / "plain-howto" / "style.yaml").read_text())
    data["generation"]["candidates"] = 1
    data["adapter"] = None
    (styles_dir / "plain-howto").mkdir(parents=True)
    (styles_dir / "plain-howto" / "style.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def test_one_short_article_end_to_end_with_the_real_model(tmp_path: Path) -> None:
    one_candidate_style(tmp_path / "styles")
    settings = Settings(home=tmp_path / "home", styles_dir=tmp_path / "styles", max_attempts=1, device="cpu")
    assert settings.model == DEFAULT_MODEL
    engine = Engine.from_settings(settings)
    store = Store(settings.effective_store_url)
    store.migrate()
    brief = Brief(
        id="real-houseplants",
        title="How to water houseplants",
        content_type="how-to",
        category="home",
        audience="beginners",
        tone="friendly",
        keywords=["watering can", "drainage"],
        target_words=60,
    )
    store.add_brief(brief)

    pipeline = Pipeline(settings, engine, embedder=default_embedder())
    (outcome,) = write_briefs([brief.brief_id], store=store, pipeline=pipeline, owner="real-test", lease_seconds=1900)

    assert outcome.error is None
    assert outcome.status in ("needs_review", "needs_attention")
    article = store.get_article(brief.brief_id)
    assert article.style == "plain-howto"
    body = article.body_markdown
    assert body.startswith("# ")
    prose = words(strip_markdown("\n".join(body.splitlines()[1:])))
    assert len(prose) >= 15, body
    letters = re.findall(r"[^\W\d_]", body)
    assert sum(ch.isascii() for ch in letters) / len(letters) > 0.95, body  # English, not another script
    assert len(COMMON_WORDS & {w.lower() for w in prose}) >= 4, body

    assert set(article.scores) == {*SCORE_NAMES, NEAR_DUPLICATE}  # the last one is added at store time
    assert all(isinstance(score["value"], float | int) for score in article.scores.values())
    provenance = article.provenance
    assert provenance["model"]["id"] == "smollm2-135m-instruct"
    assert provenance["model"]["weights_sha256"] == weights_hash(engine.source.directory)
    assert engine.source.directory.is_relative_to(settings.model_cache_dir)
    assert provenance["adapter"]["note"] == "no adapter: base model only"
    assert provenance["attempts_used"] == 1
    assert 0 < provenance["tokens"]["new"] <= provenance["generation"]["max_new_tokens"] == 60 * 3 // 2 + 24
    assert len(store.list_candidates(brief.brief_id)) == 1

    meta, text = read_article_file(Path(article.file_path or ""))
    assert meta["article_id"] == article.id
    assert text == body

    converted = {f.name: f.stat().st_mtime_ns for f in engine.source.directory.iterdir()}
    again = Engine.from_settings(settings)  # from the converted cache: nothing converted or rewritten again
    assert again.source == engine.source
    assert {f.name: f.stat().st_mtime_ns for f in again.source.directory.iterdir()} == converted
