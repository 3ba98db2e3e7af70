"""Training at archive scale: --max-articles (stable, stratified), sections cut at headings, the token-length
report before training, and --time-budget stopping a real (tiny-model) run cleanly with its best checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from corpus_fixtures import body, write_style, write_voice
from model_fixtures import one_torch_thread, tiny_model_dir

from worker.config import Settings
from worker.errors import TrainingError
from worker.intake.briefs import Brief
from worker.lab.corpus import load_corpus
from worker.lab.examples import Example
from worker.lab.options import TrainingOptions
from worker.lab.training import train_style
from worker.lab.training_scale import BudgetPlan, choose_articles, parse_budget, split_example
from worker.scoring.embeddings import default_embedder
from worker.styles.layout import HELDOUT_FILE

__all__ = ["one_torch_thread", "tiny_model_dir"]

FAST = {"max_length": 160, "batch_size": 2, "lora_r": 4, "lora_alpha": 8, "min_words": 30, "eval_fraction": 0.25}


def test_time_budgets_parse_and_refuse_nonsense() -> None:
    assert (parse_budget("45m"), parse_budget("2h"), parse_budget("900s"), parse_budget("1.5")) == (2700, 7200, 900, 90)
    assert parse_budget(None) is None
    for bad in ("soon", "0m", "-5m", "10d"):
        with pytest.raises(TrainingError, match="not a duration"):
            parse_budget(bad)


def test_max_articles_is_a_stable_stratified_choice(tmp_path: Path) -> None:
    corpus = load_corpus(write_voice(tmp_path / "c", "plain", 12), min_words=30)
    first = choose_articles(corpus, 6, seed=0)
    assert [a.id for a in first.articles] == [a.id for a in choose_articles(corpus, 6, seed=0).articles]
    assert len(first.articles) == 6 and {a.id for a in first.articles} <= {a.id for a in corpus.articles}
    assert [a.id for a in choose_articles(corpus, 6, seed=1).articles] != [a.id for a in first.articles]
    assert choose_articles(corpus, None, seed=0) is corpus and choose_articles(corpus, 50, seed=0) is corpus


def _example(body: str) -> Example:
    return Example("post", "corpus", Brief(id="post", title="Post", target_words=100, notes="Author: Ana."), body)


def test_long_articles_become_sections_at_headings_code_kept_whole() -> None:
    words = " ".join(["word"] * 40)
    body = f"# Post\n\n{words}\n\n## Two\n\n{words}\n\n```sh\n# not a heading\n{words}\n```\n\n## Three\n\n{words}"
    parts = split_example(_example(body), max_words=90)
    assert [p.id for p in parts] == ["post", "post", "post"]  # the article's id, so held-out sets stay by article
    assert parts[0].completion.startswith("# Post") and parts[1].completion.startswith("## Two")
    assert "# not a heading" in parts[1].completion  # a comment in fenced code never splits
    assert parts[1].brief.notes == "Author: Ana. Part 2 of 3 of the article."
    assert parts[1].brief.title == "Post" and parts[1].brief.target_words == len(parts[1].completion.split())
    assert "\n\n".join(p.completion for p in parts) == body
    assert split_example(_example(body), max_words=500) == [_example(body)]


def test_a_long_part_without_headings_is_cut_at_its_paragraphs() -> None:
    words = " ".join(["word"] * 40)
    body = f"# Post\n\n{words}\n\n{words}\n\n```sh\n{words}\n\n{words}\n```\n\n{words}"
    parts = split_example(_example(body), max_words=50)
    assert len(parts) == 4 and parts[0].completion == f"# Post\n\n{words}"  # the title stays with its text
    assert parts[2].completion == f"```sh\n{words}\n\n{words}\n```"  # a blank line in code never cuts
    assert "\n\n".join(p.completion for p in parts) == body


def test_a_budget_plan_stops_when_a_step_and_an_evaluation_no_longer_fit() -> None:
    plan = BudgetPlan(seconds=10.0, eval_seconds=2.0, started=0.0, last=0.0)
    assert plan.step_done(1, 100, now=1.0) is False  # 1 s per step: 1 + 1 + 2.4 <= 10
    assert plan.planned_steps == 7
    for step in range(2, 7):
        assert plan.step_done(step, 100, now=float(step)) is False
    assert plan.step_done(7, 100, now=7.0) is True  # 7 + 1 + 2.4 > 10
    assert plan.step_done(100, 100, now=99.0) is False  # the last step: nothing to stop


def test_a_time_budget_stops_a_real_run_cleanly_with_sections_and_a_length_report(
    tmp_path: Path, tiny_model_dir: Path, one_torch_thread: None
) -> None:
    settings = Settings(
        home=tmp_path / "home", styles_dir=tmp_path / "styles", model=str(tiny_model_dir), device="cpu", dtype="float32"
    )
    write_style(settings.styles_dir, "calm")
    corpus_dir = tmp_path / "corpus"
    for i in range(10):
        text = f"---\ntitle: Post {i}\ndate: 2024-0{i % 9 + 1}-01\n---\n{body(f'a{i}')}\n\n## More\n\n{body(f'b{i}')}\n"
        (corpus_dir / f"post-{i}.md").parent.mkdir(parents=True, exist_ok=True)
        (corpus_dir / f"post-{i}.md").write_text(text)
    options = TrainingOptions(
        epochs=50, learning_rate=5e-3, early_stopping_patience=50, time_budget="20s", sections=True,
        max_articles=8, **FAST,
    )  # fmt: skip
    started = time.perf_counter()
    result = train_style(settings, "calm", corpus_dir=corpus_dir, options=options, embedder=default_embedder())
    took = time.perf_counter() - started
    metrics = result.metrics
    assert metrics["stopped_by_time_budget"] is True and metrics["epochs_run"] < 50
    assert metrics["train_seconds"] <= 20 * 1.5, metrics["train_seconds"]
    assert metrics["best_eval_loss"] == min(row["eval_loss"] for row in metrics["history"] if "eval_loss" in row)
    lengths = metrics["token_lengths"]["train"]
    assert lengths["max_length"] == 160 and lengths["articles"] == metrics["train_examples"]
    assert 60 < lengths["median"] <= lengths["max"] < 1000  # prompt and section in tokens, not a dict's keys
    assert metrics["seconds_per_1000_tokens"] > 0
    assert metrics["train_examples"] + metrics["heldout_examples"] > 8  # sections: more examples than articles
    meta = json.loads((result.directory / "copydesk-adapter.json").read_text())
    heldout_sections = [json.loads(line) for line in (result.directory / HELDOUT_FILE).read_text().splitlines()]
    assert meta["heldout_ids"] == sorted({h["id"] for h in heldout_sections})  # one id per article, not per section
    assert took < 120
