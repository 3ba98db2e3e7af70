"""Atomic file writes: the one way copydesk writes a file that someone may read at the same moment.

A reader sees the old file or the new one, never half of one, and after a crash the file is either the
old one or the complete new one: the text goes to a temporary file in the same folder, is flushed and
fsynced, renamed over the target, and the folder is fsynced so that the rename itself is durable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_FILE_MODE = 0o644


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform or file system that cannot open folders: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; nothing more can be done
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, *, mode: int = DEFAULT_FILE_MODE) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically and durably, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_if_changed(path: Path, text: str, *, mode: int = DEFAULT_FILE_MODE) -> bool:
    """:func:`write_atomic` unless the file already holds exactly ``text``; ``True`` when written."""
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass  # unreadable: replace it
    write_atomic(path, text, mode=mode)
    return True
