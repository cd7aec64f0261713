"""An append-only file kept open between writes: the agent's line journals (the sandbox registry, the posix pid
journal) append a line per task launch and end, on the launch path, and one open and close per line would cost
more than the write itself."""

from __future__ import annotations

import os
from pathlib import Path


class AppendFile:
    """Appends to `path` through one descriptor, reopened should the file have been replaced (rewritten by its
    owner, or by another process on the same work dir) since. Writes are not fsynced: a journal outlives its
    process, not its host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._ino = 0

    def write(self, data: bytes) -> None:
        """Append data (OSError when the file cannot be opened or written)."""
        if self._fd >= 0:
            try:
                same = os.stat(self.path).st_ino == self._ino
            except FileNotFoundError:
                same = False
            if not same:
                self.close()
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._ino = os.fstat(self._fd).st_ino
        os.write(self._fd, data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
