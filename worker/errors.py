"""The copydesk error hierarchy.

Every error raised on purpose by copydesk derives from :class:`CopydeskError`. Its message is written for
the person running the command: it says what went wrong and, where it can, how to fix it. Only the CLI
turns these errors into printed messages and exit codes.

Every class has its own exit code, so a script can tell the errors apart (docs/cli.md lists them; a test
checks that table against this module). Codes 0, 1, 2 and 124 are kept for the CLI itself: success, a
command that reports failed records, a usage error (Typer/Click) and a ``--wait`` that timed out.
"""

from __future__ import annotations

from typing import Any


class CopydeskError(Exception):
    """Base class of every copydesk error; ``str(err)`` is a complete, user-facing sentence."""

    exit_code = 1


class ConfigError(CopydeskError):
    """The configuration (environment, config file) is invalid."""

    exit_code = 16


class BriefError(CopydeskError):
    """A brief record failed validation; carries the file, the record and the field."""

    exit_code = 3

    def __init__(self, message: str, *, file: str = "", record: str = "", field: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.record = record
        self.field = field


class StyleError(CopydeskError):
    """A style is unknown, malformed, or its name is not a safe identifier."""

    exit_code = 4


class PromptError(CopydeskError):
    """A prompt template is missing, broken, or tried to leave the sandbox."""

    exit_code = 5


class ModelError(CopydeskError):
    """The base model cannot be found, converted or loaded."""

    exit_code = 6


class AdapterError(ModelError):
    """A style's LoRA adapter is missing, unsafe (not safetensors), corrupt or for another base model."""

    exit_code = 17


class StoreError(CopydeskError):
    """The store (database or article files) refused an operation."""

    exit_code = 7


class TransientStoreError(StoreError):
    """The store is temporarily unavailable (locked, connection lost); retrying may succeed."""

    exit_code = 18


class NotFoundError(StoreError):
    """A brief, article or job id does not exist in the store."""

    exit_code = 19


class ConflictError(StoreError):
    """Someone else changed the record first (optimistic locking); reload and try again."""

    exit_code = 20


class QueueError(CopydeskError):
    """The broker cannot be reached or refused a message."""

    exit_code = 8


class ReviewError(CopydeskError):
    """An editorial action cannot be done: a missing reason or feedback, an unchanged edit, a bad export."""

    exit_code = 9


class TransitionError(ReviewError):
    """The article's status does not allow this action (e.g. approving a rejected article)."""

    exit_code = 21


class CorpusError(CopydeskError):
    """The corpus folder cannot be read, or holds no usable article."""

    exit_code = 10


class TrainingError(CopydeskError):
    """A training run cannot start, resume or finish."""

    exit_code = 11


class EvaluationError(CopydeskError):
    """A style version cannot be evaluated (no version, no held-out material, unusable adapter)."""

    exit_code = 12


class JobFileError(CopydeskError):
    """A job file cannot be used; ``problems`` lists every reason (file, record, field)."""

    exit_code = 13

    def __init__(self, message: str, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.problems: list[Any] = problems or []


class CronError(CopydeskError, ValueError):
    """A cron expression, a time zone or a duration is not valid; the message says which and why.

    Also a ``ValueError``, so that pydantic validators report it as a field problem of the job file.
    """

    exit_code = 14


class BeatLockedError(CopydeskError):
    """Another scheduler holds the single-scheduler lock (or this one lost it)."""

    exit_code = 15


def error_classes() -> list[type[CopydeskError]]:
    """Every error class of this module, the base first, ordered by exit code."""
    found = [value for value in globals().values() if isinstance(value, type) and issubclass(value, CopydeskError)]
    return sorted(found, key=lambda cls: cls.exit_code)


def validation_problems(exc: Any, whole: str = "") -> str:
    """A pydantic ``ValidationError``'s problems on one line, ``field.path: message; ...``; ``whole`` stands in
    for the field path of a problem with the whole object (an empty ``loc``)."""
    return "; ".join(f"{'.'.join(str(part) for part in e['loc']) or whole}: {e['msg']}" for e in exc.errors())
