"""Process plumbing the daemons share: one daemon per work dir, a listening port that is really ours, a process
name operators can find with `pgrep aiomesos`, and one way for a daemon's `main` to run and end."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop

LOCK_FILE = "daemon.lock"
_PR_SET_NAME = 15


class DaemonError(Exception):
    """A daemon cannot start; the message is one readable line."""


def lock_work_dir(work_dir: Path, who: str) -> int:
    """Take the work dir for this process (an flock held until the process ends); returns the lock's fd.

    A second daemon on the same work dir would fight the first over its registry or its tasks, so it is refused,
    naming the pid that holds the lock.
    """
    path = work_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise DaemonError(f"cannot open {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DaemonError(f"another {who} (pid {holder}) is running with work dir {work_dir}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def set_process_name(name: str) -> None:
    """Name this process (the kernel's comm, 15 characters) so that `pgrep aiomesos` and `ps -e` find it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def first_os_error(e: BaseException) -> OSError | None:
    """The OSError behind a failure (a daemon's task group wraps what its tasks raise), if that is what it is."""
    if isinstance(e, OSError):
        return e
    if isinstance(e, BaseExceptionGroup):
        for inner in e.exceptions:
            found = first_os_error(inner)
            if found is not None:
                return found
    return None


def run_daemon(
    prog: str,
    process_name: str,
    daemon: Coroutine[Any, Any, int | None],
    *,
    usage_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run a daemon's top coroutine on uvloop under `process_name`; returns its exit code.

    It ends as a daemon should: Ctrl-C is a clean stop (0); a `DaemonError` or one of `usage_errors` (the
    daemon cannot start with what it was given) is one line on stderr and exit code 2; an OSError, alone or
    inside the daemon's task group, is one line and exit code 1. Anything else is a bug and keeps its traceback.
    """
    set_process_name(process_name)
    refused: tuple[type[Exception], ...] = (DaemonError, *usage_errors)
    try:
        return uvloop.run(daemon) or 0
    except KeyboardInterrupt:
        return 0
    except refused as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, BaseExceptionGroup) as e:
        failure = first_os_error(e)
        if failure is None:
            raise
        print(f"{prog}: error: {failure}", file=sys.stderr)
        return 1


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old content or the new, never a part (an address file a test or a client polls for)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_work_dir(path: str) -> Path:
    """The daemon's work dir, resolved and created if missing; DaemonError (one line) when it cannot be."""
    work_dir = Path(path).resolve()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DaemonError(f"cannot create work dir {work_dir}: {e.strerror}") from None
    return work_dir
