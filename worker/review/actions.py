"""Editorial review helpers shared by the interactive ``copydesk review`` and the scriptable commands.

The decisions themselves (approve, reject, edit, send back, publish) are store operations with optimistic
locking (:mod:`worker.store.review`); this module adds what surrounds them: who the reviewer is, editing a
draft in ``$EDITOR``, rescoring an edited draft with the style's scorer, listing the style-rule violations,
keeping the article's Markdown file in step with the store, publishing a sent-back brief on the queue, and
diffs between revisions. Nothing here prints.
"""

from __future__ import annotations

import difflib
import getpass
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.config import Settings
from worker.errors import CopydeskError, QueueError, ReviewError, StoreError
from worker.store import ArticleRecord, Store

if TYPE_CHECKING:
    from worker.scoring.embeddings import Embedder
    from worker.styles.catalog import Style

logger = logging.getLogger(__name__)

EDITS_SUBDIR = "edits"


def reviewer_name(explicit: str | None, settings: Settings) -> str:
    """Who is deciding: ``--as``, else ``COPYDESK_REVIEWER`` (``settings.reviewer``), else the OS user."""
    for candidate in (explicit, settings.reviewer):
        if candidate and candidate.strip():
            return candidate.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid-{os.getuid()}"


def editor_command() -> list[str]:
    """The editor to run: ``$EDITOR``, else ``$VISUAL``, else ``vi``; may carry arguments (``code --wait``)."""
    value = os.environ.get("EDITOR") or os.environ.get("VISUAL") or "vi"
    command = shlex.split(value)
    if not command:
        raise ReviewError("EDITOR is blank: set it to your editor, e.g. `export EDITOR=nano`")
    return command


def normalise_markdown(text: str) -> str:
    """Unix line ends, no leading or trailing blank lines, one final newline (the form drafts are stored in)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip() + "\n"


@dataclass(frozen=True)
class EditedText:
    """What came back from the editor, and the file that holds it until it is saved."""

    markdown: str
    path: Path
    changed: bool


def edit_in_editor(settings: Settings, article: ArticleRecord) -> EditedText:
    """Open the article's text in the editor (a file under ``$COPYDESK_HOME/edits/``) and read it back.

    The file is kept until :func:`discard_edit_file` removes it after a successful save, so that an edit
    refused by a conflict is never lost. :class:`ReviewError` when the editor fails.
    """
    directory = settings.home / EDITS_SUBDIR
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{article.id}-r{article.revision}-", suffix=".md", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(article.body_markdown)
    except OSError as exc:
        raise ReviewError(f"cannot create the file to edit under {directory}: {exc}") from exc
    path = Path(name)
    command = [*editor_command(), str(path)]
    try:
        completed = subprocess.run(command, check=False)
    except OSError as exc:
        raise ReviewError(f"cannot run the editor {command[0]!r} ({exc}): set EDITOR to an installed editor") from exc
    if completed.returncode != 0:
        raise ReviewError(f"the editor exited with status {completed.returncode}; nothing was saved (text: {path})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"cannot read the edited file {path}: {exc}") from exc
    markdown = normalise_markdown(text)
    return EditedText(markdown, path, markdown.strip() != article.body_markdown.strip())


def discard_edit_file(edited: EditedText) -> None:
    edited.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Rescored:
    """An edited draft measured like a generated one."""

    title: str
    scores: dict[str, Any]
    failing_gates: list[str]
    quality: float  # Scorecard.quality, what the review queue's "worst" order sorts by


def load_style(settings: Settings, name: str) -> Style:
    from worker.styles.catalog import StyleCatalog

    return StyleCatalog.for_settings(settings).get(name)  # its targets there


def rescore(
    store: Store, settings: Settings, article: ArticleRecord, markdown: str, *, embedder: Embedder | None
) -> Rescored:
    """Score ``markdown`` against the article's brief and style (``worker.scoring.scorecard.score_drafts``).

    Without an embedder, ``on_topic`` is not measured (it passes, "not measured").
    """
    from worker.pipeline.cleaning import extract_title
    from worker.scoring.scorecard import DraftToScore, score_drafts

    style = load_style(settings, article.style)
    brief = store.get_brief(article.brief_id).brief
    (card,) = score_drafts(
        [DraftToScore(markdown, brief, style.targets, style.rules)], language=settings.language, embedder=embedder
    )
    return Rescored(extract_title(markdown, brief.title), card.to_dict(), card.failing(style.gates), card.quality)


def optional_embedder(enabled: bool) -> Embedder | None:
    """The packaged sentence embedder when ``enabled`` and loadable, else ``None`` (logged)."""
    if not enabled:
        return None
    from worker.scoring.embeddings import default_embedder

    try:
        return default_embedder()
    except CopydeskError as exc:
        logger.warning("on_topic will not be measured: %s", exc)
        return None


def style_violations(settings: Settings, article: ArticleRecord) -> list[str]:
    """Every violation of the style's editor rules (banned and preferred terms, disclaimer, heading case)
    in the article's current text; ``[]`` when the style cannot be loaded (the scorecard still shows
    the stored ``style_rules`` score)."""
    from worker.scoring.markdown import parse_blocks, strip_markdown
    from worker.scoring.style_rules import style_rule_violations

    try:
        style = load_style(settings, article.style)
    except CopydeskError as exc:
        logger.warning("style rules of %s not checked: %s", article.id, exc)
        return []
    markdown = article.body_markdown
    return style_rule_violations(parse_blocks(markdown), strip_markdown(markdown), style.rules)


def refresh_article_file(store: Store, settings: Settings, article: ArticleRecord) -> ArticleRecord:
    """Rewrite the article's Markdown file (status, revision and text as stored); a file problem is
    logged, never fatal: the store is the source of truth."""
    from dataclasses import replace

    from worker.store.article_files import write_article_file

    try:
        path = write_article_file(settings.articles_dir, article, store.get_brief(article.brief_id).brief)
        if article.file_path != str(path):
            store.set_article_file(article.id, str(path))
        return replace(article, file_path=str(path))
    except (OSError, StoreError) as exc:
        logger.error("article %s changed in the store, but its Markdown file was not rewritten: %s", article.id, exc)
        return article


def publish_regeneration(settings: Settings, brief_id: str) -> None:
    """Publish the brief of a sent-back article; :class:`QueueError` when the broker refuses (the brief stays
    queued in the store, and a worker's reconciler publishes it)."""
    from worker.queue.celery_app import make_celery
    from worker.queue.submit import publish

    try:
        publish(make_celery(settings), [brief_id])
    except QueueError as exc:
        logger.info("brief %s queued in the store but not published: %s", brief_id, exc)
        raise QueueError(
            f"{exc}; brief {brief_id} is queued in the store and a worker's reconciler will publish it "
            "(or start one with `copydesk worker`)"
        ) from exc


def unified_diff(old: str, new: str, *, old_label: str, new_label: str, context: int = 3) -> list[str]:
    """Unified diff lines (without line ends) between two texts."""
    return list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), fromfile=old_label, tofile=new_label, n=context, lineterm=""
        )
    )


def pick_revisions(available: Sequence[int], wanted: Sequence[int]) -> tuple[int, int]:
    """The two revisions to compare: ``--rev A --rev B``, one ``--rev A`` (against the latest), or none (the
    previous against the latest). :class:`ReviewError` when there is nothing to compare."""
    if len(wanted) > 2:
        raise ReviewError("give at most two --rev options (the two revisions to compare)")
    latest = max(available)
    if len(wanted) == 2:
        return wanted[0], wanted[1]
    if len(wanted) == 1:
        return wanted[0], latest
    if len(available) < 2:
        raise ReviewError(f"the article has only revision {latest}: there is nothing to compare yet")
    ordered = sorted(available)
    return ordered[-2], ordered[-1]
