"""Writing secrets: owner-only, and atomically (a reader sees the old file or the new one, never half)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def file_version(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is rewritten or edited (inode, mtime, size); None when it is not there. A file
    re-read only when this changes costs one stat per check."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class WatchedFile:
    """A file read again only when it changed: `read_if_changed(parse)` returns what `parse` makes of its text, or
    None when it is as last read. A `parse` that raises leaves the caller with its last good contents; that
    version of the file is not tried again (nor its error raised again) until the file changes once more."""

    def __init__(self, path: Path, what: str, missing: Callable[[str], Exception] = FileNotFoundError) -> None:
        self.path = path
        self.what = what
        self.missing = missing  # the error a missing file raises, in its owner's terms
        self._version: tuple[int, int, int] | None = None
        self._refused: tuple[int, int, int] | None = None

    def read_if_changed(self, parse: Callable[[str, str], T], *, force: bool = False) -> T | None:
        version = file_version(self.path)
        if version in (self._version, self._refused) and version is not None and not force:
            return None
        if version is None:
            raise self.missing(f"{self.what} {self.path} does not exist")
        try:
            parsed = parse(self.path.read_text(), str(self.path))
        except Exception:
            self._refused = version
            raise
        self._version = version
        return parsed
