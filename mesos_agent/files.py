"""Files in a task's sandbox, as the agent's API serves them: safe path resolution, listings, byte ranges,
following a growing file and finding where its last N lines start.

Every path comes from a remote caller and is relative to the sandbox. What could leave it is refused: absolute
paths, `..` components, and symlinks whose target lies outside.

The sandbox belongs to the task, which may change it while the agent (root) serves it: a directory swapped for
a symlink between a check of the path and its use would have the agent read outside the sandbox. So no path is
ever checked and then opened by name: a directory descriptor is opened on the sandbox and the path is walked one
component at a time from there (`openat` with O_NOFOLLOW, O_DIRECTORY for directories), symlinks inside the
sandbox being followed by hand (their target is only a string, walked the same way, `..` popping the directories
already held, never the kernel's `..`). Listings and reads go through the descriptors so opened.

The sandbox itself is found the same way: given the agent's work dir (`within`, a real path the agent chose),
each directory from there down to the run directory is opened with O_NOFOLLOW, so that a task (one running as
root can) that replaces a directory of the layout, or its `runs/latest` link, with a link to `/` does not make
the agent serve the host's files. (The callers find a sandbox from the agent's records, never through `latest`.)

And what is served must be readable by the task's user, whom the agent stands for here. The method: the agent
opens as root, as above, and checks the inode it opened (fstat of the descriptor, so there is no race between
check and use) against that user with the kernel's rules for mode bits (owner, group, others; root reads
everything): search permission on every directory walked through, read and search on a directory listed, read on
a file. A task can bring a file it may not read into its sandbox only as a hard link (a symlink is walked, and
refused when it leads out), and a hard link to a file it *may* read (`/etc/passwd`) is no more the task's: so a
regular file with more than one link is served only when it belongs to the task's user. The task's user is the
sandbox's owner (the agent creates the run directory as root and gives it to the task's user; a task not running
as root cannot give it away), with that user's groups. Switching the agent's credentials instead (setfsuid in a
thread) was not chosen: supplementary groups are process-wide through glibc, and Python has no per-thread
credentials. POSIX ACLs are not evaluated (only mode bits); a root task's sandbox is served as root reads it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import pwd
import stat
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

CHUNK = 64 * 1024
TAIL_BLOCK = 64 * 1024
FOLLOW_POLL = 0.1
MAX_SYMLINKS = 40  # as the kernel's path walk
MAX_RETRIES = 100

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO a task made must not wait for a writer (it is refused after the open anyway).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class PathRefused(ValueError):
    """The path would leave the sandbox (or is not a path at all); the message says why."""


class AccessRefused(PermissionError):
    """The task's user may not read what the path names (or the sandbox is not where the agent put it); the
    message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


R_OK, X_OK = 4, 1


@dataclass(frozen=True, slots=True)
class Reader:
    """The user files are served for: a uid and its groups."""

    uid: int
    gids: frozenset[int]

    def allows(self, st: os.stat_result, want: int) -> bool:
        """Whether the mode bits of `st` give this user `want` (R_OK, X_OK or both), as the kernel decides."""
        if self.uid == 0:
            return True
        mode = st.st_mode
        if st.st_uid == self.uid:
            bits = mode >> 6
        elif st.st_gid in self.gids:
            bits = mode >> 3
        else:
            bits = mode
        return bits & want == want

    def may_read_file(self, st: os.stat_result) -> str | None:
        """Why this user may not be served the regular file `st` (None: it may)."""
        if st.st_nlink > 1 and st.st_uid != self.uid:
            return f"it is a hard link to a file of uid {st.st_uid}, not of the task's user (uid {self.uid})"
        if not self.allows(st, R_OK):
            return f"the task's user (uid {self.uid}) may not read it"
        return None


@functools.lru_cache(maxsize=64)
def reader_of(uid: int, gid: int) -> Reader:
    """The user of that uid (the sandbox's owner), with its groups: its primary and supplementary ones where the
    host knows the user, else only `gid` (the sandbox's group)."""
    try:
        entry = pwd.getpwuid(uid)
        gids = frozenset([gid, *os.getgrouplist(entry.pw_name, entry.pw_gid)])
    except (KeyError, OSError):
        gids = frozenset([gid])
    return Reader(uid, gids)


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative to the sandbox
    is_dir: bool
    size: int
    mtime: float
    mode: str  # like ls: "-rw-r--r--"


def _check(relative: str) -> None:
    if "\0" in relative:
        raise PathRefused(f"path {relative!r} refused: it contains a NUL byte")
    if relative.startswith("/"):
        raise PathRefused(
            f"path {relative!r} refused: absolute paths are not allowed, give one relative to the sandbox"
        )
    if ".." in PurePosixPath(relative).parts:
        raise PathRefused(f"path {relative!r} refused: '..' is not allowed, it could leave the sandbox")


def _escapes(relative: str) -> PathRefused:
    return PathRefused(f"path {relative!r} refused: it leads out of the sandbox through a symlink")


@dataclass(frozen=True, slots=True)
class _Root:
    fd: int  # the sandbox directory
    real: str  # its real path
    reader: Reader  # the task's user: the sandbox's owner


@contextlib.contextmanager
def _sandbox_fd(sandbox: Path, within: Path | None) -> Iterator[_Root]:
    """A descriptor on the sandbox directory, its real path and its owner. With `within` (the agent's work dir,
    a real path), every directory below it down to the sandbox is opened without following a symlink: the
    layout below the work dir may have been changed by a task. Without, the sandbox path is trusted as it is
    (it may be reached through a link)."""
    fd = _open_below(sandbox, within) if within is not None else os.open(sandbox, _LIST_FLAGS & ~os.O_NOFOLLOW)
    try:
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = os.path.realpath(sandbox)
        st = os.fstat(fd)
        yield _Root(fd, real, reader_of(st.st_uid, st.st_gid))
    finally:
        os.close(fd)


def _open_below(sandbox: Path, within: Path) -> int:
    try:
        parts = sandbox.relative_to(within).parts
    except ValueError:
        raise AccessRefused(f"the sandbox {str(sandbox)!r} is not in the agent's work dir") from None
    if any(p in (".", "..") for p in parts):
        raise AccessRefused(f"the sandbox {str(sandbox)!r} is not a plain path below the agent's work dir")
    fd = os.open(within, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(parts):
            flags = _LIST_FLAGS if i == len(parts) - 1 else _DIR_FLAGS
            try:
                below = os.open(name, flags, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise AccessRefused(
                        f"the sandbox is not where the agent made it: {'/'.join(parts[: i + 1])!r} in the agent's "
                        "work dir is no longer a directory (a task replaced it, maybe with a symlink)"
                    ) from None
                raise
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


Final = Literal["file", "list", "resolve"]


@dataclass(slots=True)
class _Found:
    parts: list[str]  # the real path, relative to the sandbox
    fd: int | None  # file: the open file; list: the open directory (None when it is not one)
    st: os.stat_result | None  # list: the entry's own stat when it is not a directory


def _walk(root: _Root, relative: str, final: Final) -> _Found:
    """Walk `relative` (already checked by `_check`) from the sandbox's descriptor, one component at a time.

    final "file": open the regular file it names; "list": open the directory it names, or stat what else it is;
    "resolve": only find the real path (what does not exist is taken as it is). Except to resolve, the task's
    user must be allowed what is done (AccessRefused)."""
    root_fd, root_real = root.fd, root.real
    reader = None if final == "resolve" else root.reader
    pending: deque[str] = deque(p for p in relative.split("/") if p not in ("", "."))
    stack: list[int] = [root_fd]  # the directories walked through; stack[0], the sandbox, is the caller's
    parts: list[str] = []
    links = 0
    retries = 0  # looks again after a component changed under the walk; a task flipping one forever is refused
    try:
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":  # only ever from a symlink's target
                if len(stack) == 1:
                    raise _escapes(relative)
                os.close(stack.pop())
                parts.pop()
                continue
            here = stack[-1]
            last = not pending
            try:
                st = os.stat(name, dir_fd=here, follow_symlinks=False)
            except FileNotFoundError:
                if final == "resolve":
                    return _Found([*parts, name, *pending], None, None)
                raise
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise PathRefused(f"path {relative!r} refused: too many levels of symbolic links")
                target = _link_target(name, here, root_real, relative)
                if target is None:  # no longer a link (changed meanwhile): look again
                    retries = _again(relative, retries)
                    pending.appendleft(name)
                    continue
                if target.startswith("/"):  # an absolute link into the sandbox: from the sandbox again
                    while len(stack) > 1:
                        os.close(stack.pop())
                    parts.clear()
                pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if last and final != "resolve":
                found = _open_last(name, st, here, parts, relative, final, root.reader)
                if found is None:  # turned into a symlink (or something else) since the stat: look again
                    retries = _again(relative, retries)
                    pending.appendleft(name)
                    continue
                return found
            if not stat.S_ISDIR(st.st_mode):
                if final == "resolve" and last:
                    return _Found([*parts, name], None, None)
                raise NotADirectoryError(errno.ENOTDIR, f"{'/'.join([*parts, name])!r} is not a directory")
            fd = _open_at(name, _DIR_FLAGS, here)
            if fd is None:
                retries = _again(relative, retries)
                pending.appendleft(name)
                continue
            stack.append(fd)
            parts.append(name)
            if reader is not None and not reader.allows(os.fstat(fd), X_OK):
                raise AccessRefused(
                    f"path {relative!r} refused: the task's user (uid {reader.uid}) may not enter {'/'.join(parts)!r}"
                )
        # The path names the sandbox itself, or a directory reached through a symlink.
        if final == "file":
            raise IsADirectoryError(errno.EISDIR, f"{relative!r} is a directory")
        if final == "list":
            listed = os.open(".", _LIST_FLAGS, dir_fd=stack[-1])
            return _Found(parts, _checked(listed, relative, root.reader), None)
        return _Found(parts, None, None)
    finally:
        for fd in stack[1:]:
            os.close(fd)


def _link_target(name: str, here: int, root_real: str, relative: str) -> str | None:
    """The target of the symlink `name` in the directory `here`: relative as it is, absolute made relative to the
    sandbox (with its leading "/"); None when it is no longer a link. An absolute link is fine as long as it names a
    place in the sandbox (by its real path)."""
    try:
        target = os.readlink(name, dir_fd=here)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: not a link
            raise
        return None
    if not target.startswith("/"):
        return target
    if target != root_real and not target.startswith(root_real.rstrip("/") + "/"):
        raise _escapes(relative)
    return "/" + target[len(root_real) :]


def _open_last(
    name: str, st: os.stat_result, here: int, parts: list[str], relative: str, final: Final, reader: Reader
) -> _Found | None:
    """The path's last component, `name` in the directory `here` (stat'ed as `st`), opened as `final` asks and
    checked against the task's user; None when it changed since the stat."""
    if final == "file":
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{relative!r} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(f"path {relative!r} refused: not a regular file")
        flags = _FILE_FLAGS
    elif stat.S_ISDIR(st.st_mode):
        flags = _LIST_FLAGS
    else:
        return _Found([*parts, name], None, st)  # stat'ed relative to a directory held: safe
    fd = _open_at(name, flags, here)
    return None if fd is None else _Found([*parts, name], _checked(fd, relative, reader), None)


def _checked(fd: int, relative: str, reader: Reader) -> int:
    """`fd` (a file or a directory opened for the task's user) when that user may read it; else it is closed and
    AccessRefused says why."""
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            why = None if reader.allows(st, R_OK | X_OK) else f"the task's user (uid {reader.uid}) may not list it"
        else:
            why = reader.may_read_file(st)
        if why is not None:
            raise AccessRefused(f"path {relative or '.'!r} refused: {why}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _again(relative: str, retries: int) -> int:
    if retries >= MAX_RETRIES:
        raise PathRefused(f"path {relative!r} refused: it keeps changing while it is looked up")
    return retries + 1


def _open_at(name: str, flags: int, dir_fd: int) -> int | None:
    """openat(dir_fd, name, flags | O_NOFOLLOW); None when `name` is now a symlink or no longer of the type the
    flags want (it changed since it was looked at)."""
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    want_dir = bool(flags & os.O_DIRECTORY)
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode) != want_dir or (not want_dir and not stat.S_ISREG(mode)):
        os.close(fd)
        return None
    return fd


def resolve(sandbox: Path, relative: str, *, within: Path | None = None) -> Path:
    """The real path of `relative` inside `sandbox`; PathRefused if it is not one.

    The path need not exist; what exists of it is resolved. For information only: serve files with `open_file`
    and `list_dir`, which never reopen a path by name."""
    _check(relative)
    with _sandbox_fd(sandbox, within) as root:
        found = _walk(root, relative, "resolve")
    return Path(root.real, *found.parts)


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


def list_dir(sandbox: Path, relative: str = "", *, within: Path | None = None) -> list[Entry]:
    """The entries of a directory of the sandbox, sorted by name (a file lists as itself, like ls); `within`:
    the agent's work dir (see `_sandbox_fd`).

    Symlinks are listed as links (not followed). Raises PathRefused, FileNotFoundError, NotADirectoryError,
    PermissionError (AccessRefused when the task's user may not list it)."""
    _check(relative)
    with _sandbox_fd(sandbox, within) as root:
        found = _walk(root, relative, "list")
    if found.fd is None:
        assert found.st is not None
        return [_entry(_relative(sandbox, relative), found.st)]
    entries: list[Entry] = []
    try:
        # scandir on the descriptor: the entries are those of the directory walked to, and each entry's lstat is
        # relative to it (fstatat), whatever is renamed or swapped meanwhile.
        with os.scandir(found.fd) as it:
            for item in it:
                try:
                    est = item.stat(follow_symlinks=False)
                except FileNotFoundError:  # gone meanwhile
                    continue
                entries.append(_entry(_relative(sandbox, relative, item.name), est))
    finally:
        os.close(found.fd)
    entries.sort(key=lambda e: e.path)
    return entries


def open_file(sandbox: Path, relative: str, *, within: Path | None = None) -> tuple[int, Path]:
    """Open a regular file of the sandbox for reading: (fd, real path); `within`: the agent's work dir (see
    `_sandbox_fd`). Raises PathRefused, IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError
    (AccessRefused when the task's user may not read it); PathRefused too for what is not a regular file (a FIFO
    would block). The real path is for information: read through the descriptor."""
    if not relative:
        raise IsADirectoryError(errno.EISDIR, "the sandbox itself is a directory: name a file in it")
    _check(relative)
    with _sandbox_fd(sandbox, within) as root:
        found = _walk(root, relative, "file")
    assert found.fd is not None
    try:
        os.set_blocking(found.fd, True)
    except BaseException:
        os.close(found.fd)
        raise
    return found.fd, Path(root.real, *found.parts)


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
