"""Does DPO on editors' decisions teach a style its rules? SFT version against the DPO version trained from it.

Issue 17 item 4's demonstration, end to end through the real code paths, on a COPY of a shipped style in a
temporary home (the repository's styles/ is never touched):

a. **rule**: the served SFT version writes drafts for a few training topics, and the script counts how often
   they break each candidate rule (heading case ``title``, heading case ``sentence``, a required disclaimer). It
   picks the heading case the drafts break more often (a case the corpus does not use is the most learnable
   rule: the same few headings in another case), unless ``--rule`` names one; the rule is written into the
   copy's ``style.yaml`` (``rules:``), not into its ``gates``, so the pipeline's selection stays blind to it and
   the counts measure the model.
b. **editor**: the pipeline (``worker.pipeline.runner.write_briefs``) writes one article per training topic
   (``bench/briefs.yaml`` and ``briefs/samples.yaml`` titles, then :data:`EXTRA_TOPICS`; never
   ``styles/eval-briefs.yaml``) into a SQLite store; the script plays the editor with the real review actions
   (``worker.review.actions.rescore``, ``Store.edit_article``, ``Store.approve``): a draft that breaks the rule
   is edited (the mechanical fix: headings re-cased, or the disclaimer appended) and approved; one that keeps
   it is approved as written. The real ``feedback export`` writes the preference pairs (each edit over the
   draft it replaced).
c. **DPO**: ``styles train NAME --method dpo --feedback PAIRS`` (``worker.lab.training.train_style``, TRL's
   DPOTrainer) trains the next version from the served one.
d. **fresh briefs**: the 72 titles of ``styles/eval-briefs.yaml`` (x ``--seeds``), rendered as ``styles eval``
   renders them, written by the pipeline once with the SFT version served and once with the DPO version served:
   same brief ids, so the same candidate seeds. Per version: drafts breaking the rule per 100 (stored articles,
   and every first-attempt candidate), violations per 100, headings per draft (a version that stopped writing
   headings would "keep" a heading rule), gate pass rate and the mean scores the pipeline records; and an exact
   McNemar (sign) test on the drafts that break under one version only.
e. **voice**: ``styles eval NAME --version DPO --against SFT`` on the first ``--voice-briefs`` shared briefs.

It prints a table and writes everything as JSON (``--json``). Generation runs in the serving dtype
(``COPYDESK_DTYPE``, default ``auto``: bf16 on a CPU with bf16 units); DPO trains in fp32. torch runs one thread
(``COPYDESK_THREADS``, default 1 here): on a busy shared machine a second spinning thread costs far more than it
gives.

    .venv/bin/python bench/dpo_rules.py --json /tmp/dpo_rules.json     # run 3 of docs/styles.md (default model)
    .venv/bin/python bench/dpo_rules.py --epochs 2 --beta 0.1 --train-topics 96 --seeds 2 --voice-briefs 24
    .venv/bin/python bench/dpo_rules.py --probe-topics 2 --train-topics 4 --fresh-briefs 2 --voice-briefs 2  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread unless told otherwise: on a shared 2-core machine two spinning OpenMP threads were 15x slower
# than one (131 against 8.6 tok/s, 8 rows, bf16, measured while other jobs ran).
os.environ.setdefault("COPYDESK_THREADS", "1")

import yaml

from worker.scoring.markdown import parse_blocks, strip_markdown
from worker.scoring.style_rules import SMALL_WORDS, style_rule_violations
from worker.styles.catalog import StyleRules

ROOT = Path(__file__).resolve().parent.parent
TRAIN_BRIEF_FILES = (ROOT / "bench" / "briefs.yaml", ROOT / "briefs" / "samples.yaml")
DISCLAIMER = "This guide is general advice: check the manufacturer's instructions before you start."
RULE_CHOICES = ("auto", "title", "sentence", "disclaimer")
#: Neutral topics (noun phrases, no voice) beyond the two brief files, none of them in styles/eval-briefs.yaml.
EXTRA_TOPICS = (
    "A leaking garden hose",
    "Fresh herbs on a windowsill",
    "A wobbly kitchen chair",
    "Frost on the car windscreen",
    "A drawer full of old batteries",
    "Sorting the recycling",
    "A blocked shower drain",
    "Ironing a shirt",
    "A cluttered hallway",
    "Storing summer clothes",
    "A dripping outdoor tap",
    "Planting spring bulbs",
    "Cleaning an oven",
    "A squeaky floorboard",
    "Hanging a heavy mirror",
    "A slow kitchen sink",
    "Washing a wool jumper",
    "A tidy tool box",
    "Mould on a bathroom ceiling",
    "Draughts under the front door",
    "A new pair of running shoes",
    "Cleaning a barbecue grill",
    "Descaling a shower head",
    "A tangle of garden weeds",
    "Removing wallpaper",
    "A stiff window latch",
    "Polishing silver cutlery",
    "A shelf for heavy books",
    "Keeping a compost heap",
    "A bike chain that slips",
    "Cleaning grout between tiles",
    "A fridge that smells",
    "Storing potatoes and onions",
    "A tidy cupboard under the stairs",
    "Cleaning a microwave",
    "A lawn mower that will not start",
    "Defrosting a freezer",
    "Sewing on a button",
    "Cleaning a leather sofa",
    "Watering plants while away",
    "A loose door handle",
    "Cleaning a kettle",
    "Moving a heavy wardrobe",
    "Packing a suitcase",
    "A noisy radiator",
)
HEADING_LINE = re.compile(r"^(?P<marks>#{1,6})(?P<space>[ \t]+)(?P<text>\S.*?)[ \t]*$")
FENCE = re.compile(r"^\s*(```|~~~)")
CASE_WORD = re.compile(r"[^\W\d_][\w'’-]*")  # the words the heading-case check looks at (worker.scoring.style_rules)
SCORE_KEYS = ("quality", "on_topic", "readability", "grade", "length", "repetition", "sentiment", "formality")


# -- the editor's mechanical fix (no model) -----------------------------------------------------------------


def _plain(word: str) -> bool:
    """A word whose case says something: not an acronym (API) nor mixed case (iPhone)."""
    return not (word.isupper() and len(word) > 1) and not any(ch.isupper() for ch in word[1:])


def recase_heading(text: str, case: str) -> str:
    """``text`` in ``case``: ``title`` capitalises every plain word but the small ones inside (a, of, the, ...);
    ``sentence`` capitalises the first word and lowercases the later plain words (acronyms and mixed-case words
    are kept). Everything that is not a word (markup, digits, punctuation) is kept as it is."""
    spans = list(CASE_WORD.finditer(text))
    chars = list(text)
    last = len(spans) - 1
    for position, match in enumerate(spans):
        word = match.group()
        if not _plain(word):
            continue
        if case == "title":
            small = 0 < position < last and word.lower() in SMALL_WORDS
            new = word if small else word[0].upper() + word[1:]
        elif case == "sentence":
            new = word[0].upper() + word[1:] if position == 0 else word.lower()
        else:
            raise ValueError(f"unknown heading case {case!r}")
        chars[match.start() : match.end()] = list(new)
    return "".join(chars)


def fix_headings(markdown: str, case: str) -> str:
    """Every ATX heading of ``markdown`` (outside code fences) re-cased to ``case``; the rest unchanged."""
    lines = markdown.split("\n")
    fenced = False
    for number, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else HEADING_LINE.match(line)
        if heading:
            lines[number] = f"{heading['marks']}{heading['space']}{recase_heading(heading['text'], case)}"
    return "\n".join(lines)


def add_disclaimer(markdown: str, disclaimer: str) -> str:
    """``markdown`` with ``disclaimer`` as its last paragraph (once)."""
    if disclaimer in markdown:
        return markdown
    return markdown.rstrip() + "\n\n" + disclaimer + "\n"


def candidate_rules() -> dict[str, StyleRules]:
    """The rules a demonstration can use, by name: each one alone."""
    return {
        "title": StyleRules(heading_case="title"),
        "sentence": StyleRules(heading_case="sentence"),
        "disclaimer": StyleRules(required_disclaimer=DISCLAIMER),
    }


def editor_fix(rule: str) -> Callable[[str], str]:
    """What the editor does to a draft that breaks ``rule``."""
    if rule == "disclaimer":
        return lambda markdown: add_disclaimer(markdown, DISCLAIMER)
    return lambda markdown: fix_headings(markdown, rule)


def violations(markdown: str, rules: StyleRules) -> list[str]:
    """The style-rule violations of a draft, as the scorecard's ``style_rules`` score lists them."""
    return style_rule_violations(parse_blocks(markdown), strip_markdown(markdown), rules)


def heading_count(markdown: str) -> int:
    """Headings below the title (``##`` and deeper), as the scorer parses them."""
    blocks = [block for block in parse_blocks(markdown) if block.kind == "heading"]
    return max(0, len(blocks) - 1) if markdown.lstrip().startswith("# ") else len(blocks)


# -- counting and the paired test (no model) ----------------------------------------------------------------


@dataclass
class Tally:
    """Rule breaks of one version's drafts, keyed by what pairs them with the other version's (brief, seed)."""

    breaks: dict[str, bool] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    headings: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, markdown: str, rules: StyleRules) -> None:
        found = violations(markdown, rules)
        self.breaks[key] = bool(found)
        self.violations[key] = len(found)
        self.headings[key] = heading_count(markdown)

    def summary(self) -> dict[str, Any]:
        from worker.lab.eval_stats import wilson_interval

        drafts = len(self.breaks)
        broken = sum(self.breaks.values())
        low, high = wilson_interval(broken, drafts) if drafts else (0.0, 0.0)
        return {
            "drafts": drafts,
            "breaking": broken,
            "breaks_per_100": round(100 * broken / drafts, 1) if drafts else None,
            "breaks_per_100_interval": [round(100 * low, 1), round(100 * high, 1)],
            "violations_per_100": round(100 * sum(self.violations.values()) / drafts, 1) if drafts else None,
            "headings_per_draft": round(sum(self.headings.values()) / drafts, 2) if drafts else None,
            "drafts_without_subheadings": sum(1 for n in self.headings.values() if n == 0),
        }


def paired_test(sft: Tally, dpo: Tally) -> dict[str, Any]:
    """Exact McNemar test (a two-sided sign test on the discordant pairs) over the drafts both versions wrote
    for the same key: ``sft_only`` break under the SFT version only, ``dpo_only`` under the DPO version only."""
    from worker.lab.voice_classifier import sign_test

    keys = sorted(set(sft.breaks) & set(dpo.breaks))
    test = sign_test([not sft.breaks[k] for k in keys], [not dpo.breaks[k] for k in keys])
    return {
        "pairs": len(keys),
        "sft_only": test["adapter_only"],
        "dpo_only": test["base_only"],
        "p_value": test["p_value"],
    }


def mean_scores(articles: Sequence[Any]) -> dict[str, float | None]:
    """Mean of each recorded score's value (and ``quality``) over stored articles."""
    means: dict[str, float | None] = {}
    for key in SCORE_KEYS:
        values = [
            float(a.quality) if key == "quality" else float(a.scores[key]["value"])
            for a in articles
            if (key == "quality" and a.quality is not None)
            or (key in a.scores and a.scores[key].get("value") is not None)
        ]
        means[key] = round(sum(values) / len(values), 4) if values else None
    return means


def pick_rule(rates: dict[str, float], wanted: str) -> str:
    """``wanted``, or for ``auto`` the heading case broken more often (a disclaimer when neither is broken by at
    least a third of the drafts)."""
    if wanted != "auto":
        return wanted
    case = max(("title", "sentence"), key=lambda name: rates[name])
    return case if rates[case] >= 1 / 3 else "disclaimer"


# -- the run ---------------------------------------------------------------------------------------------


def say(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def training_titles(count: int, exclude: set[str]) -> list[tuple[str, str]]:
    """``(id, title)`` of up to ``count`` training topics: the brief files' titles, then :data:`EXTRA_TOPICS`."""
    topics: list[tuple[str, str]] = []
    for path in TRAIN_BRIEF_FILES:
        for item in yaml.safe_load(path.read_text(encoding="utf-8"))["briefs"]:
            topics.append((str(item["id"]), str(item["title"])))
    topics += [(re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-"), title) for title in EXTRA_TOPICS]
    seen: set[str] = set()
    unique = []
    for topic_id, title in topics:
        if title.lower() not in exclude and topic_id not in seen:
            seen.add(topic_id)
            unique.append((topic_id, title))
    return unique[:count]


def make_home(root: Path, style_name: str) -> Path:
    """A copy of the repository's styles/ (the shared evaluation briefs included) under ``root``."""
    styles = root / "styles"
    shutil.copytree(ROOT / "styles", styles, ignore=shutil.ignore_patterns("eval", "__pycache__"))
    if not (styles / style_name / "style.yaml").is_file():
        raise SystemExit(f"no style {style_name!r} in {ROOT / 'styles'}")
    return styles


def set_rule(styles: Path, style_name: str, rule: str) -> StyleRules:
    """Add ``rule`` to the copy's ``rules:`` (the shipped rules stay); the style's rules afterwards."""
    path = styles / style_name / "style.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = dict(data.get("rules") or {})
    if rule == "disclaimer":
        rules["required_disclaimer"] = DISCLAIMER
    else:
        rules["heading_case"] = rule
    data["rules"] = rules
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return StyleRules(**rules)


class Demo:
    """One demonstration: the temporary home, the engine and embedder shared by every pipeline run."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        from worker.config import load_settings
        from worker.engine.engine import Engine
        from worker.lab.eval_inputs import house_metadata, read_eval_topics, voice_corpus
        from worker.scoring.embeddings import default_embedder
        from worker.styles.catalog import StyleCatalog

        self.args = args
        self.root = root
        self.styles = make_home(root, args.style)
        os.environ["COPYDESK_STYLES_DIR"] = str(self.styles)
        os.environ["COPYDESK_HOME"] = str(root / "home")
        os.environ.pop("COPYDESK_STORE_URL", None)
        self.settings = load_settings(**({"model": args.model} if args.model else {}))
        if self.settings.threads:
            import torch

            torch.set_num_threads(self.settings.threads)
        style = StyleCatalog.for_settings(self.settings).get(args.style)
        if style.adapter is None:
            raise SystemExit(f"style {args.style!r} serves no adapter version: DPO starts from a served SFT version")
        self.sft = style.adapter
        corpus = voice_corpus(style, self.settings.language, self.sft)
        self.house = house_metadata(corpus.briefs if corpus else [])
        self.topics, self.target_words = read_eval_topics(self.styles / "eval-briefs.yaml")
        self.engine = Engine.from_settings(self.settings)
        self.embedder = default_embedder()
        self.timings: dict[str, float] = {}

    def briefs(self, topics: Sequence[tuple[str, str]], prefix: str) -> list[Any]:
        from worker.intake.briefs import Brief

        return [
            Brief(
                id=f"{prefix}{topic_id}",
                title=title,
                target_words=self.target_words,
                style=self.args.style,
                **self.house,
            )
            for topic_id, title in topics
        ]

    def pipeline(self, settings: Any) -> Any:
        from worker.pipeline.pipeline import Pipeline

        return Pipeline(settings, self.engine, embedder=self.embedder)  # reads style.yaml now: the served version

    def write(self, home: Path, briefs: Sequence[Any]) -> Any:
        """The pipeline writes ``briefs`` into a fresh store under ``home``; the open store."""
        from worker.pipeline.runner import worker_identity, write_briefs
        from worker.store import Store

        settings = self.settings.model_copy(update={"home": home})
        store = Store.from_settings(settings)
        store.migrate()
        for brief in briefs:
            store.add_brief(brief, source="bench/dpo_rules.py")
        outcomes = write_briefs(
            [b.brief_id for b in briefs],
            store=store,
            pipeline=self.pipeline(settings),
            owner=worker_identity("bench"),
            lease_seconds=self.settings.lease_seconds,
        )
        failed = [o.brief_id for o in outcomes if o.article is None]
        if failed:
            say(f"{len(failed)} brief(s) not written: {failed[:5]}")
        return store

    def timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.perf_counter() - started, 1)
        say(f"{name}: {self.timings[name]} s")


def probe(demo: Demo, topics: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Step a: the SFT version's drafts for a few training topics, against every candidate rule."""
    started = time.perf_counter()
    results = demo.pipeline(demo.settings).run(demo.briefs(topics, "probe-"))
    texts = [c.text for outcome in results if outcome.result for c in outcome.result.candidates if c.attempt == 1]
    rates = {}
    for name, rules in candidate_rules().items():
        rates[name] = sum(1 for text in texts if violations(text, rules)) / max(1, len(texts))
    rule = pick_rule(rates, demo.args.rule)
    demo.timed("probe", started)
    say(f"probe: {len(texts)} drafts; break rates {rates}; rule: {rule}")
    examples = [line for text in texts[:6] for line in text.splitlines() if line.startswith("#")]
    return {
        "drafts": len(texts),
        "break_rates": {k: round(v, 3) for k, v in rates.items()},
        "rule": rule,
        "heading_examples": examples[:20],
    }


def play_editor(demo: Demo, store: Any, home: Path, rules: StyleRules, fix: Callable[[str], str]) -> dict[str, int]:
    """Step b: every stored draft that breaks ``rules`` is edited (``fix``) and approved; the others approved."""
    from worker.review.actions import refresh_article_file, rescore

    settings = demo.settings.model_copy(update={"home": home})  # the store's home: its article files
    counts = {"drafts": 0, "edited": 0, "approved_as_written": 0, "fix_left_violations": 0}
    for article in store.list_articles(style=demo.args.style, limit=10_000):
        counts["drafts"] += 1
        if violations(article.body_markdown, rules):
            fixed = fix(article.body_markdown)
            counts["fix_left_violations"] += bool(violations(fixed, rules))
            scored = rescore(store, settings, article, fixed, embedder=demo.embedder)
            article = store.edit_article(
                article.id,
                actor="bench-editor",
                title=scored.title,
                body_markdown=fixed,
                scores=scored.scores,
                failing_gates=scored.failing_gates,
                expected_revision=article.revision,
                expected_status=article.status,
                quality=scored.quality,
                note="style rule: " + "; ".join(violations(article.body_markdown, rules))[:200],
            )
            counts["edited"] += 1
        else:
            counts["approved_as_written"] += 1
        article = store.approve(article.id, actor="bench-editor", expected_revision=article.revision)
        refresh_article_file(store, settings, article)
    return counts


def train_dpo(demo: Demo, pairs: Path) -> dict[str, Any]:
    """Step c: the real ``styles train --method dpo --feedback`` path."""
    from worker.lab.options import TrainingMethod, TrainingOptions
    from worker.lab.training import train_style

    args = demo.args
    options = TrainingOptions(
        method=TrainingMethod.DPO,
        epochs=args.epochs,
        dpo_beta=args.beta,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        early_stopping_patience=args.epochs,  # the held-out DPO loss picks the kept epoch; run every epoch
    )

    def progress(message: str, done: int, total: int) -> None:
        if done and (done % 10 == 0 or done == total or "held-out" in message):
            say(f"DPO {message}: step {done}/{total}")

    result = train_style(demo.settings, args.style, feedback=pairs, options=options, progress=progress)
    keep = ("heldout_before", "heldout", "epochs_run", "steps", "train_pairs", "heldout_pairs", "seconds", "beta")
    return {
        "version": result.version,
        **{key: result.metrics.get(key) for key in keep},
        "history": result.metrics.get("history"),
        "options": options.model_dump(mode="json"),
    }


def serve(demo: Demo, version: str) -> None:
    from worker.engine.base_model import resolve_base_model
    from worker.styles.catalog import StyleCatalog
    from worker.styles.versions import promote

    source = resolve_base_model(demo.settings)
    promote(
        StyleCatalog.for_settings(demo.settings).get(demo.args.style),
        version,
        source.model_id,
        base_weights_sha256=source.weights_hash,
    )


def fresh_side(demo: Demo, version: str, rules: StyleRules) -> tuple[dict[str, Any], Tally, Tally]:
    """Step d for one version: serve it, write the fresh briefs, count."""
    serve(demo, version)
    started = time.perf_counter()
    briefs = [
        brief
        for seed in range(demo.args.seeds)
        for brief in demo.briefs([(t.id, t.title) for t in demo.topics[: demo.args.fresh_briefs]], f"fresh-s{seed}-")
    ]
    store = demo.write(demo.root / f"fresh-{version}", briefs)
    demo.timed(f"fresh_{version}", started)
    articles = [a for a in store.list_articles(limit=100_000) if a.brief_id.startswith("fresh-")]
    stored, candidates = Tally(), Tally()
    for article in articles:
        stored.add(article.brief_id, article.body_markdown, rules)
        for candidate in store.list_candidates(article.brief_id):
            if candidate["attempt"] == 1:
                candidates.add(f"{article.brief_id}/{candidate['index']}", candidate["text"], rules)
    generated = sum(c["new_tokens"] or 0 for a in articles for c in store.list_candidates(a.brief_id))
    side = {
        "version": version,
        "articles": len(articles),
        "stored": stored.summary(),
        "first_attempt_candidates": candidates.summary(),
        "gate_pass_rate": round(sum(1 for a in articles if not a.failing_gates) / max(1, len(articles)), 4),
        "mean_attempts": round(sum(a.provenance.get("attempts_used", 1) for a in articles) / max(1, len(articles)), 3),
        "mean_scores": mean_scores(articles),
        "generated_tokens": generated,
        "examples": [a.body_markdown for a in articles[:3]],
    }
    store.close()
    return side, stored, candidates


def voice(demo: Demo, dpo: str) -> dict[str, Any]:
    """Step e: ``styles eval NAME --version DPO --against SFT`` on the first ``--voice-briefs`` shared briefs."""
    from worker.lab.eval_stats import paired_change
    from worker.lab.evaluation import evaluate_style
    from worker.lab.options import EvalOptions

    started = time.perf_counter()
    options = EvalOptions(
        briefs=demo.args.voice_briefs, seeds=1, dtype=demo.settings.dtype, output_dir=demo.root / "voice"
    )
    report = evaluate_style(
        demo.settings,
        demo.args.style,
        version=dpo,
        against=demo.sft,
        options=options,
        engine=demo.engine,
        embedder=demo.embedder,
        progress=say,
    )
    demo.timed("voice_eval", started)
    fidelity = report.data["fidelity"]
    groups = list(range(len(fidelity[demo.sft]["style_probabilities"])))
    dpo_vs_sft = {
        name: paired_change(fidelity[demo.sft][key], fidelity[dpo][key], groups).as_dict()
        for key, name in (("style_probabilities", "style_probability"), ("profile_distances", "profile_distance"))
    }
    return {
        "briefs": options.briefs,
        "seeds": 1,
        "dtype": options.dtype,
        "table": report.rows(),
        "verdict_vs_base": report.data["verdict"],
        "dpo_vs_sft": dpo_vs_sft,
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    total = time.perf_counter()
    demo = Demo(args, root)
    say(
        f"home {root}; style {args.style} serves {demo.sft}; model {demo.engine.source.model_id}; "
        f"dtype {demo.engine.dtype}"
    )
    topics = training_titles(args.train_topics, {t.title.lower() for t in demo.topics})
    probed = probe(demo, topics[: args.probe_topics])
    rule = probed["rule"]
    rules = set_rule(demo.styles, args.style, rule)
    only = candidate_rules()[rule]
    started = time.perf_counter()
    store = demo.write(root / "train", demo.briefs(topics, "train-"))
    demo.timed("training_drafts", started)
    editor = play_editor(demo, store, root / "train", only, editor_fix(rule))
    from worker.review.feedback import export_feedback

    summary = export_feedback(store, root / "feedback.jsonl", style=args.style)
    store.close()
    say(f"editor: {editor}; {summary.pairs} pair(s) in {summary.pairs_path}")
    started = time.perf_counter()
    trained = train_dpo(demo, summary.pairs_path)
    demo.timed("dpo_training", started)
    sft_side, sft_stored, sft_cands = fresh_side(demo, demo.sft, only)
    dpo_side, dpo_stored, dpo_cands = fresh_side(demo, trained["version"], only)
    report = {
        "style": args.style,
        "model": demo.engine.source.model_id,
        "dtype": str(demo.engine.dtype),
        "rule": rule,
        "rules_in_style": rules.model_dump(exclude_defaults=True),
        "probe": probed,
        "training_topics": len(topics),
        "editor": editor,
        "pairs": summary.pairs,
        "dpo": trained,
        "fresh": {
            "briefs": len(demo.topics[: args.fresh_briefs]),
            "seeds": args.seeds,
            "sft": sft_side,
            "dpo": dpo_side,
            "mcnemar_stored": paired_test(sft_stored, dpo_stored),
            "mcnemar_candidates": paired_test(sft_cands, dpo_cands),
        },
        "args": vars(args),
    }
    if args.voice_briefs:
        report["voice"] = voice(demo, trained["version"])
    demo.timed("total", total)
    report["seconds"] = demo.timings
    return report


def table(report: dict[str, Any]) -> str:
    fresh = report["fresh"]
    lines = [
        f"rule: {report['rule']} ({report['rules_in_style']}); pairs {report['pairs']}; "
        f"held-out before {report['dpo']['heldout_before']}; after {report['dpo']['heldout']}",
        "| version | drafts | breaking /100 [95 %] | violations /100 | candidates breaking /100 | headings/draft "
        "| gate pass | quality | on_topic |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in ("sft", "dpo"):
        side = fresh[label]
        stored, cands = side["stored"], side["first_attempt_candidates"]
        lines.append(
            f"| {label} {side['version']} | {stored['drafts']} | {stored['breaks_per_100']} "
            f"{stored['breaks_per_100_interval']} | {stored['violations_per_100']} | {cands['breaks_per_100']} "
            f"(n={cands['drafts']}) | {stored['headings_per_draft']} | {side['gate_pass_rate']} "
            f"| {side['mean_scores']['quality']} | {side['mean_scores']['on_topic']} |"
        )
    lines.append(f"McNemar, stored drafts: {fresh['mcnemar_stored']}")
    lines.append(f"McNemar, first-attempt candidates: {fresh['mcnemar_candidates']}")
    if "voice" in report:
        lines.append(f"voice, DPO vs SFT (paired): {json.dumps(report['voice']['dpo_vs_sft'])}")
    lines.append(f"seconds: {report['seconds']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default="plain-howto")
    parser.add_argument("--model", default=None, help="COPYDESK_MODEL for this run (default: the configured one)")
    parser.add_argument("--rule", choices=RULE_CHOICES, default="auto")
    parser.add_argument("--probe-topics", type=int, default=8, help="training topics the rule is chosen on")
    parser.add_argument("--train-topics", type=int, default=96, help="training drafts the editor reviews")
    parser.add_argument("--fresh-briefs", type=int, default=72, help="shared briefs written by both versions")
    parser.add_argument("--seeds", type=int, default=1, help="drafts per fresh brief and version")
    parser.add_argument("--epochs", type=int, default=1, help="DPO epochs over the pairs")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=5e-5, help="5e-4 over-optimised (docs/styles.md, run 2)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=640)
    parser.add_argument("--voice-briefs", type=int, default=24, help="shared briefs of the voice check (0: skip)")
    parser.add_argument("--home", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.home is not None:
        args.home.mkdir(parents=True, exist_ok=False)
        report = run(args, args.home)
    else:
        with tempfile.TemporaryDirectory(prefix="dpo-rules-") as folder:
            report = run(args, Path(folder))
    text = json.dumps(report, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(table(report) + "\n")


if __name__ == "__main__":
    main()
