"""``posix_spawn`` through libc with the GIL released, so that a launch does not stall the agent's event loop.

``os.posix_spawn`` holds the GIL for the whole call, and a vfork-style spawn returns only once the child has
exec'd: on a busy host that is milliseconds, during which the agent reads no acknowledgement and sends no
update (py-spy at 300 launches/s: about a quarter of an agent's wall time).  Called through ctypes (which
releases the GIL) from a worker thread, the event loop goes on meanwhile.

Only where the libc is glibc (``POSIX_SPAWN_SETSID`` since 2.26, exec failures reported by the call itself
since 2.24); elsewhere ``native_spawner()`` is None and the caller keeps ``os.posix_spawn``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Iterable, Mapping

# glibc's <spawn.h>.
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# Larger than glibc's posix_spawnattr_t (336 bytes), posix_spawn_file_actions_t (80) and sigset_t (128).
_OPAQUE = 1024


class NativeSpawner:
    """posix_spawn(2) of glibc: a new session, every catchable signal at its default, nothing blocked."""

    def __init__(self, libc: ctypes.CDLL, default_signals: Iterable[int]) -> None:
        self._libc = libc
        sigdef = ctypes.create_string_buffer(_OPAQUE)
        empty = ctypes.create_string_buffer(_OPAQUE)
        libc.sigemptyset(sigdef)
        libc.sigemptyset(empty)
        for sig in default_signals:
            libc.sigaddset(sigdef, int(sig))
        # One attribute object for every spawn: posix_spawn only reads it (safe from several threads).
        self._attr = ctypes.create_string_buffer(_OPAQUE)
        _check(libc.posix_spawnattr_init(self._attr))
        _check(libc.posix_spawnattr_setflags(self._attr, ctypes.c_short(_SETSID | _SETSIGDEF | _SETSIGMASK)))
        _check(libc.posix_spawnattr_setsigdefault(self._attr, sigdef))
        _check(libc.posix_spawnattr_setsigmask(self._attr, empty))

    def spawn(self, argv: list[str], env: Mapping[str, str], out_fd: int, err_fd: int, in_fd: int | None = None) -> int:
        """As ``os.posix_spawn(argv[0], argv, env, ...)`` with stdin in_fd (else /dev/null), stdout out_fd and
        stderr err_fd; OSError when the program cannot be run."""
        libc = self._libc
        actions = ctypes.create_string_buffer(_OPAQUE)
        _check(libc.posix_spawn_file_actions_init(actions))
        try:
            if in_fd is None:
                _check(libc.posix_spawn_file_actions_addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0))
            else:
                _check(libc.posix_spawn_file_actions_adddup2(actions, in_fd, 0))
            _check(libc.posix_spawn_file_actions_adddup2(actions, out_fd, 1))
            _check(libc.posix_spawn_file_actions_adddup2(actions, err_fd, 2))
            args = _strings(os.fsencode(a) for a in argv)
            envp = _strings(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items())
            pid = ctypes.c_int(0)
            path = os.fsencode(argv[0])
            error = libc.posix_spawn(ctypes.byref(pid), path, actions, self._attr, args, envp)
        finally:
            libc.posix_spawn_file_actions_destroy(actions)
        if error:
            raise OSError(error, os.strerror(error), argv[0])
        return pid.value


def _strings(items: Iterable[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    values = list(items)
    return (ctypes.c_char_p * (len(values) + 1))(*values, None)


def _check(error: int) -> None:
    if error:
        raise OSError(error, os.strerror(error))


@functools.cache
def native_spawner(default_signals: tuple[int, ...]) -> NativeSpawner | None:
    """The spawner of this host's glibc (>= 2.26), or None (another libc, or ctypes cannot load it)."""
    try:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        version = libc.gnu_get_libc_version
        version.restype = ctypes.c_char_p
        major, minor = (int(part) for part in version().decode().split(".")[:2])
        if (major, minor) < (2, 26):
            return None
        return NativeSpawner(libc, default_signals)
    except (OSError, AttributeError, ValueError):
        return None
