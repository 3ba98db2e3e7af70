"""The Celery task that trains a style: ``copydesk.train_style`` on the ``train`` queue.

It runs :func:`worker.lab.training.train_style` with ``resume="auto"``: a task redelivered after its worker was
lost continues the interrupted run from its last checkpoint instead of starting over, and a second task
for a style that is already training fails at once (one run per style, a file lock). The arguments are
JSON: the style name, the corpus folder and feedback file as paths on the worker's machine, and training
options (:class:`~worker.lab.training.TrainingOptions` fields). Whoever can publish to the broker chooses those
paths, so they are read only inside ``styles_dir``, ``home`` or ``COPYDESK_TRAINING_ROOTS``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import shared_task

from worker.names import is_safe_name
from worker.queue.celery_app import TRAIN_TASK

logger = logging.getLogger(__name__)

TRAIN_SOFT_TIME_LIMIT = 6 * 3600
TRAIN_TIME_LIMIT = TRAIN_SOFT_TIME_LIMIT + 600


def _settings() -> Any:
    from celery import current_app

    settings = getattr(current_app.conf, "copydesk_settings", None)
    if settings is None:
        from worker.config import load_settings

        settings = load_settings()
    return settings


@shared_task(name=TRAIN_TASK, soft_time_limit=TRAIN_SOFT_TIME_LIMIT, time_limit=TRAIN_TIME_LIMIT)
def train_style_task(
    style: Any, corpus: str | None = None, feedback: str | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train a new adapter version of ``style``; returns its version and metrics (JSON)."""
    from worker.lab.training import TrainingOptions, train_style

    if not isinstance(style, str) or not is_safe_name(style):
        logger.error("ignored a training message with a malformed style name: %r", str(style)[:80])
        return {"ignored": "malformed style name"}
    settings = _settings()
    for what, value in (("corpus", corpus), ("feedback", feedback)):
        if value is not None and not (isinstance(value, str) and settings.allowed_training_path(Path(value))):
            logger.error(
                "refused to train %s: %s path %r is outside styles_dir, home and training_roots",
                style,
                what,
                str(value)[:200],
            )
            return {"refused": f"{what} path outside styles_dir, home and COPYDESK_TRAINING_ROOTS"}
    last_logged = [-1]

    def progress(message: str, done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 0
        if percent >= last_logged[0] + 10:
            last_logged[0] = percent
            logger.info("training %s: %s (%d/%d steps)", style, message, done, total)

    result = train_style(
        settings,
        style,
        corpus_dir=Path(corpus) if corpus else None,
        feedback=Path(feedback) if feedback else None,
        options=TrainingOptions.model_validate(options or {}),
        resume="auto",
        progress=progress,
    )
    return result.summary()
