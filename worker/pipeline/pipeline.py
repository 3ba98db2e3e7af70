"""The pipeline: route -> prompt -> generate -> clean -> score -> select, for a batch of briefs.

:class:`Pipeline` only wires the stages together; each stage lives in its own module. It runs the same
way inline (``copydesk generate``) and inside a Celery worker, which claims briefs from the store and hands
them here. A brief whose style cannot be used (unknown pin, broken adapter, template error) becomes a
per-brief error; it never stops the other briefs of the batch.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker import __version__
from worker.config import Settings
from worker.engine.adapters import AdapterRef
from worker.engine.engine import Engine, GenerationOutput, GenerationRequest
from worker.engine.sampling import RowSettings
from worker.errors import CopydeskError, StyleError
from worker.intake.briefs import Brief
from worker.pipeline.cleaning import clean_draft, extract_title
from worker.pipeline.prompts import Prompt, PromptRenderer
from worker.pipeline.routing import RouteDecision, route
from worker.pipeline.selection import Scored, adjust_for_retry, best_candidate, passing_candidate
from worker.results import ArticleResult, ArticleStatus, CandidateResult
from worker.scoring.embeddings import Embedder
from worker.scoring.memorisation import CorpusIndexes
from worker.scoring.scorecard import DraftToScore, score_drafts
from worker.styles.catalog import Canary, Style, StyleCatalog, brief_bucket
from worker.styles.layout import adapter_ref

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int], None]


@dataclass
class BriefOutcome:
    """What became of one brief: an article result, or an error message naming the problem."""

    brief: Brief
    result: ArticleResult | None = None
    error: str | None = None


@dataclass
class _Job:
    """Per-brief working state while its attempts run."""

    brief: Brief
    decision: RouteDecision
    style: Style
    prompt: Prompt
    adapter: AdapterRef | None
    settings: RowSettings
    candidates: list[Scored] = field(default_factory=list)
    outputs: dict[tuple[int, int], tuple[GenerationOutput, RowSettings]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    feedback: str = ""

    @property
    def done(self) -> bool:
        return passing_candidate(self.candidates) is not None


def derive_seed(base_seed: int, brief_id: str, attempt: int, index: int) -> int:
    """Seed of one candidate: stable across runs and independent of what else shares its batch."""
    digest = hashlib.sha256(f"{base_seed}:{brief_id}:{attempt}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def max_new_tokens(brief: Brief, style: Style) -> int:
    wanted = math.ceil(brief.target_words * style.generation.tokens_per_word) + 24
    return min(style.generation.max_new_tokens, wanted)


class Pipeline:
    """Turns briefs into scored, selected article results. Stateless apart from loaded resources."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        catalog: StyleCatalog | None = None,
        renderer: PromptRenderer | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        base_model = engine.source.model_id  # each style serves the version of the loaded base model
        self.catalog = catalog or StyleCatalog.load(settings.styles_dir, base_model)
        if self.catalog.base_model not in (None, base_model):
            raise StyleError(f"the styles were loaded for base model {self.catalog.base_model!r}, not {base_model!r}")
        self.renderer = renderer or PromptRenderer(settings.templates_dir)
        self.embedder = embedder
        self.corpus_indexes = CorpusIndexes()  # the memorisation guard's corpus of each adapter version

    def run(
        self,
        briefs: Sequence[Brief],
        progress: ProgressCallback | None = None,
        *,
        feedback: Mapping[str, str] | None = None,
    ) -> list[BriefOutcome]:
        """Write every brief; outcomes come back in the order of ``briefs``.

        ``feedback`` maps brief ids to an editor's feedback on the previous draft (a send-back); it goes
        into that brief's prompt and provenance.
        """
        outcomes = {b.brief_id: BriefOutcome(b) for b in briefs}
        jobs = self._plan(briefs, outcomes, feedback or {})
        for attempt in range(1, self.settings.max_attempts + 1):
            pending = [job for job in jobs if not job.done]
            if not pending:
                break
            if progress:
                progress(f"attempt {attempt}: generating {len(pending)} brief(s)", 0)
            self._attempt(pending, attempt)
            if progress:
                progress(f"attempt {attempt} scored", sum(1 for job in pending if job.done))
        for job in jobs:
            outcomes[job.brief.brief_id].result = self._result(job)
        return [outcomes[b.brief_id] for b in briefs]

    # -- planning: route, prompt, adapter -----------------------------------------------------------

    def _plan(
        self, briefs: Sequence[Brief], outcomes: dict[str, BriefOutcome], feedback: Mapping[str, str]
    ) -> list[_Job]:
        jobs: list[_Job] = []
        for brief in briefs:
            try:
                jobs.append(self._plan_one(brief, feedback.get(brief.brief_id, "")))
            except CopydeskError as exc:
                logger.warning("brief %s cannot be written: %s", brief.brief_id, exc)
                outcomes[brief.brief_id].error = str(exc)
        return jobs

    def _plan_one(self, brief: Brief, feedback: str = "") -> _Job:
        started = time.perf_counter()
        decision = route(brief, self.catalog, self.settings.default_style)
        style = self.catalog.get(decision.style)
        prompt = self.renderer.render(brief, style, feedback=feedback)
        adapter = self._adapter(style, brief.brief_id)
        if adapter is not None:
            self.engine.load_adapter(adapter)  # a broken adapter fails this brief only
        generation = style.generation
        settings = RowSettings(
            temperature=generation.temperature,
            top_p=generation.top_p,
            repetition_penalty=generation.repetition_penalty,
            max_new_tokens=max_new_tokens(brief, style),
            seed=0,
        )
        job = _Job(brief, decision, style, prompt, adapter, settings, feedback=feedback)
        job.timings["plan_s"] = time.perf_counter() - started
        return job

    @staticmethod
    def _adapter(style: Style, brief_id: str) -> AdapterRef | None:
        """The version that writes this brief: the canary's for its share of briefs, else the one served on the
        loaded base model (a StyleError when the style serves nothing on it: this brief fails, the others go on)."""
        version = style.version_for(brief_id)
        return None if version is None else adapter_ref(style, version)

    @staticmethod
    def _canary(job: _Job, canary: Canary) -> dict[str, Any]:
        """Which side of the style's canary this brief fell on, and why (its bucket by brief id)."""
        chosen = job.adapter.version if job.adapter else None
        return {
            "version": canary.version,
            "share": canary.share,
            "served": job.style.adapter,
            "bucket": round(brief_bucket(job.style.name, job.brief.brief_id), 6),
            "arm": "canary" if chosen == canary.version else "served",
        }

    # -- one attempt: generate all candidates of all pending briefs together --------------------------

    def _attempt(self, jobs: Sequence[_Job], attempt: int) -> None:
        requests: list[GenerationRequest] = []
        owners: dict[str, tuple[_Job, int, RowSettings]] = {}
        for job in jobs:
            failing = job.candidates[-1].failing_gates if job.candidates else ()
            base = adjust_for_retry(job.settings, attempt, failing)
            for index in range(job.style.generation.candidates):
                seed = derive_seed(self.settings.seed, job.brief.brief_id, attempt, index)
                row = RowSettings(base.temperature, base.top_p, base.repetition_penalty, base.max_new_tokens, seed)
                key = f"{job.brief.brief_id}/{attempt}/{index}"
                requests.append(GenerationRequest(key, job.prompt.messages(), row, job.adapter))
                owners[key] = (job, index, row)
        started = time.perf_counter()
        outputs = self.engine.generate(requests)
        generate_seconds = time.perf_counter() - started
        started = time.perf_counter()
        drafts = [(owners[out.key], clean_draft(out.text, owners[out.key][0].brief.title), out) for out in outputs]
        scorecards = score_drafts(
            [
                DraftToScore(md, job.brief, job.style.targets, job.style.rules, self._corpus(job))
                for (job, _, _), md, _ in drafts
            ],
            language=self.settings.language,
            embedder=self.embedder,
        )
        score_seconds = time.perf_counter() - started
        for ((job, index, row), markdown, out), card in zip(drafts, scorecards, strict=True):
            failing = tuple(card.failing(job.style.gates))
            job.candidates.append(Scored(attempt, index, markdown, card, failing))
            job.outputs[(attempt, index)] = (out, row)
        share = 1 / max(1, len(jobs))
        for job in jobs:
            job.timings["generate_s"] = job.timings.get("generate_s", 0.0) + generate_seconds * share
            job.timings["score_s"] = job.timings.get("score_s", 0.0) + score_seconds * share

    def _corpus(self, job: _Job) -> Any:
        return self.corpus_indexes.get(job.adapter.directory if job.adapter else None)

    # -- result ---------------------------------------------------------------------------------------

    def _result(self, job: _Job) -> ArticleResult:
        chosen = best_candidate(job.candidates)
        status = ArticleStatus.NEEDS_REVIEW if chosen.passed else ArticleStatus.NEEDS_ATTENTION
        candidates = [self._candidate(job, c, c is chosen) for c in job.candidates]
        return ArticleResult(
            brief_id=job.brief.brief_id,
            status=status,
            title=extract_title(chosen.markdown, job.brief.title),
            body_markdown=chosen.markdown,
            style=job.style.name,
            adapter_version=job.adapter.version if job.adapter else None,
            scores=chosen.scorecard.to_dict(),
            failing_gates=list(chosen.failing_gates),
            provenance=self._provenance(job, chosen),
            candidates=candidates,
            quality=chosen.scorecard.quality,
        )

    def _candidate(self, job: _Job, scored: Scored, selected: bool) -> CandidateResult:
        out, row = job.outputs[(scored.attempt, scored.index)]
        return CandidateResult(
            attempt=scored.attempt,
            index=scored.index,
            text=scored.markdown,
            scores=scored.scorecard.to_dict(),
            failing_gates=list(scored.failing_gates),
            passed=scored.passed,
            selected=selected,
            seed=row.seed,
            new_tokens=out.new_tokens,
            generation_seconds=round(out.seconds, 3),
        )

    def _provenance(self, job: _Job, chosen: Scored) -> dict[str, Any]:
        out, row = job.outputs[(chosen.attempt, chosen.index)]
        source = self.engine.source
        return {
            "copydesk_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": {
                "id": source.model_id,
                "weights_sha256": source.weights_hash,
                "dtype": self.engine.dtype_name,
                "device": self.engine.device,
                "exact_rows": self.engine.exact_rows,  # whether the text is the one this row gives alone
            },
            "scoring": {"embedder_dtype": self.embedder.dtype if self.embedder is not None else "float32"},
            "adapter": (
                {
                    "style": job.style.name,
                    "version": job.adapter.version,
                    "path": str(job.adapter.directory),
                    "sha256": self.engine.adapters.sha256(job.adapter),  # its config and weights, as loaded
                }
                if job.adapter
                else {"style": job.style.name, "version": None, "note": "no adapter: base model only"}
            ),
            "template": {"name": job.prompt.template, "sha256_16": job.prompt.template_hash},
            "routing": {"style": job.decision.style, "reason": job.decision.reason},
            **({"canary": self._canary(job, canary)} if (canary := job.style.active_canary) is not None else {}),
            "generation": {
                "temperature": row.temperature,
                "top_p": row.top_p,
                "repetition_penalty": row.repetition_penalty,
                "max_new_tokens": row.max_new_tokens,
                "candidates_per_attempt": job.style.generation.candidates,
                "sampler": "copydesk per-row sampler (worker.engine.sampling.RowSampler)",
            },
            "seed": row.seed,
            "base_seed": self.settings.seed,
            "attempt": chosen.attempt,
            "candidate_index": chosen.index,
            "attempts_used": max(c.attempt for c in job.candidates),
            "tokens": {"prompt": out.prompt_tokens, "new": out.new_tokens, "hit_eos": out.hit_eos},
            "timings_s": {key: round(value, 3) for key, value in job.timings.items()},
            "language": self.settings.language,
            **({"feedback": job.feedback} if job.feedback else {}),
        }
