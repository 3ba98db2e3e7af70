"""The copydesk error hierarchy.

Every error raised on purpose by copydesk derives from :class:`CopydeskError`. Its message is written for
the person running the command: it says what went wrong and, where it can, how to fix it. Only the CLI
turns these errors into printed messages and exit codes.
"""

from __future__ import annotations


class CopydeskError(Exception):
    """Base class of every copydesk error; ``str(err)`` is a complete, user-facing sentence."""

    exit_code = 1


class ConfigError(CopydeskError):
    """The configuration (environment, config file) is invalid."""

    exit_code = 2


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


class StoreError(CopydeskError):
    """The store (database or article files) refused an operation."""

    exit_code = 7


class TransientStoreError(StoreError):
    """The store is temporarily unavailable (locked, connection lost); retrying may succeed."""


class NotFoundError(StoreError):
    """A brief, article or job id does not exist in the store."""


class ConflictError(StoreError):
    """Someone else changed the record first (optimistic locking); reload and try again."""


class QueueError(CopydeskError):
    """The broker cannot be reached or refused a message."""

    exit_code = 8


class ReviewError(CopydeskError):
    """An editorial action cannot be done: a missing reason or feedback, an unchanged edit, a bad export."""

    exit_code = 9


class TransitionError(ReviewError):
    """The article's status does not allow this action (e.g. approving a rejected article)."""
