"""Process plumbing the master and agent daemons share: one daemon per work dir, a listening port that is
really ours, and a process name operators can find with `pgrep aiomesos`."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
from pathlib import Path
from typing import Any

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


def listen(server: Any, ip: str, port: int) -> int:
    """Bind a grpc.aio server to ip:port; returns the bound port or raises DaemonError with a readable line."""
    try:
        bound = int(server.add_insecure_port(f"{ip}:{port}"))
    except RuntimeError:  # grpcio raises where older versions returned 0
        bound = 0
    if bound == 0:
        what = "the port is in use" if port else "no free port"
        raise DaemonError(f"cannot listen on {ip}:{port} ({what}, or the address is not on this host)")
    return bound


def set_process_name(name: str) -> None:
    """Name this process (the kernel's comm, 15 characters) so that `pgrep aiomesos` and `ps -e` find it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
