"""Files in a task's sandbox, as the agent's API serves them: safe path resolution, listings, byte ranges,
following a growing file and finding where its last N lines start.

Every path comes from a remote caller and is relative to the sandbox. `resolve` refuses what could leave it:
absolute paths, `..` components, and anything whose real path (every symlink followed) lies outside."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK = 64 * 1024
TAIL_BLOCK = 64 * 1024
FOLLOW_POLL = 0.1


class PathRefused(ValueError):
    """The path would leave the sandbox (or is not a path at all); the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative to the sandbox
    is_dir: bool
    size: int
    mtime: float
    mode: str  # like ls: "-rw-r--r--"


def resolve(sandbox: Path, relative: str) -> Path:
    """The real path of `relative` inside `sandbox`; PathRefused if it is not one.

    The path need not exist (the caller's open or stat then says so); what exists of it is resolved."""
    if "\0" in relative:
        raise PathRefused(f"path {relative!r} refused: it contains a NUL byte")
    if relative.startswith("/"):
        raise PathRefused(
            f"path {relative!r} refused: absolute paths are not allowed, give one relative to the sandbox"
        )
    if ".." in PurePosixPath(relative).parts:
        raise PathRefused(f"path {relative!r} refused: '..' is not allowed, it could leave the sandbox")
    root = os.path.realpath(sandbox)
    real = os.path.realpath(os.path.join(root, relative)) if relative else root
    if real != root and not real.startswith(root + os.sep):
        raise PathRefused(f"path {relative!r} refused: it leads out of the sandbox through a symlink")
    return Path(real)


def _relative(sandbox: Path, relative: str, name: str | None = None) -> str:
    base = PurePosixPath(relative) if relative else PurePosixPath()
    joined = base / name if name else base
    text = str(joined)
    return "" if text == "." else text


def _entry(path: str, st: os.stat_result) -> Entry:
    return Entry(
        path=path,
        is_dir=stat.S_ISDIR(st.st_mode),
        size=st.st_size,
        mtime=st.st_mtime,
        mode=stat.filemode(st.st_mode),
    )


def list_dir(sandbox: Path, relative: str = "") -> list[Entry]:
    """The entries of a directory of the sandbox, sorted by name (a file lists as itself, like ls).

    Symlinks are listed as links (not followed). Raises PathRefused, FileNotFoundError, PermissionError."""
    target = resolve(sandbox, relative)
    st = os.stat(target)
    if not stat.S_ISDIR(st.st_mode):
        return [_entry(_relative(sandbox, relative), st)]
    entries: list[Entry] = []
    with os.scandir(target) as it:
        for item in it:
            try:
                est = item.stat(follow_symlinks=False)
            except FileNotFoundError:  # gone meanwhile
                continue
            entries.append(_entry(_relative(sandbox, relative, item.name), est))
    entries.sort(key=lambda e: e.path)
    return entries


def open_file(sandbox: Path, relative: str) -> tuple[int, Path]:
    """Open a regular file of the sandbox for reading: (fd, real path). Raises PathRefused, IsADirectoryError,
    FileNotFoundError, PermissionError; PathRefused too for what is not a regular file (a FIFO would block)."""
    if not relative:
        raise IsADirectoryError("the sandbox itself is a directory: name a file in it")
    real = resolve(sandbox, relative)
    # O_NOFOLLOW: the last component was resolved above; should it become a link since, refuse it.
    # O_NONBLOCK: opening a FIFO a task made must not wait for a writer.
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{relative!r} is a directory")
        if not stat.S_ISREG(mode):
            raise PathRefused(f"path {relative!r} refused: not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, real


def start_offset(size: int, offset: int) -> int:
    """Where a read asked for at `offset` starts in a file of `size` bytes (negative: from the end)."""
    if offset < 0:
        return max(0, size + offset)
    return min(offset, size)


def read_range(fd: int, offset: int, length: int = 0, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """The bytes [offset, offset+length) (length 0: to the end as it is now) as (offset, data) chunks."""
    end = os.fstat(fd).st_size if length <= 0 else offset + length
    pos = offset
    while pos < end:
        data = os.pread(fd, min(chunk, end - pos), pos)
        if not data:
            return
        yield pos, data
        pos += len(data)


def tail_offset(fd: int, lines: int, block: int = TAIL_BLOCK) -> int:
    """Where the last `lines` lines of the file start, reading backwards a block at a time.

    A final line without a newline counts as a line; the newline ending the file does not start one."""
    size = os.fstat(fd).st_size
    if lines <= 0 or size == 0:
        return size
    pos = size
    # The newline ending the last line is not a line boundary we count.
    if os.pread(fd, 1, size - 1) == b"\n":
        pos -= 1
    seen = 0
    while pos > 0:
        start = max(0, pos - block)
        data = os.pread(fd, pos - start, start)
        idx = len(data)
        while True:
            idx = data.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            seen += 1
            if seen == lines:
                return start + idx + 1
        pos = start
    return 0


async def follow(
    fd: int,
    offset: int,
    is_over: Callable[[], bool],
    *,
    limit: int = 0,
    poll: float = FOLLOW_POLL,
    chunk: int = CHUNK,
) -> AsyncIterator[tuple[int, bytes]]:
    """Yield (offset, data) from `offset` on, and what is appended after, until `is_over()` says the writer is
    done and everything written before that has been sent (or `limit` bytes when limit > 0).

    The file's size is polled every `poll` seconds. Should the file shrink (truncated), reading restarts at its
    new end, as `tail -F` does."""
    pos = offset
    sent = 0
    while True:
        # Asked before reading: whatever was written before the writer was over is read in this round.
        over = is_over()
        size = os.fstat(fd).st_size
        if size < pos:
            pos = size
        progressed = False
        while pos < size:
            want = min(chunk, size - pos)
            if limit > 0:
                want = min(want, limit - sent)
            data = os.pread(fd, want, pos)
            if not data:
                break
            yield pos, data
            progressed = True
            pos += len(data)
            sent += len(data)
            if limit > 0 and sent >= limit:
                return
        if over and not progressed:
            return
        if not progressed:
            await asyncio.sleep(poll)


def disk_usage(path: Path, max_entries: int = 100_000) -> int:
    """Bytes used by the files under `path` (allocated blocks, links not followed, each inode once); a walk
    stopped after `max_entries` entries so that a huge tree costs a bounded time."""
    total = 0
    seen: set[tuple[int, int]] = set()
    count = 0
    stack = [str(path)]
    while stack and count < max_entries:
        current = stack.pop()
        try:
            it = os.scandir(current)
        except OSError:
            continue
        with it:
            for item in it:
                count += 1
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(item.path)
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
    return total
