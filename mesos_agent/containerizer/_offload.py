"""The blocking part of a launch (the cgroup directories and their limits, the output files, the spawn) runs in one
of two worker threads, so that the agent's event loop goes on reading acknowledgements and sending updates
meanwhile: at 250-300 launches/s on two cores py-spy found an agent's loop ~97 % busy, half of it making v1
cgroups and a quarter in os.posix_spawn, which holds the GIL until the child has exec'd (`_native_spawn`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import _cgroups as cg
from ._types import LaunchSpec
from .isolators import Isolator, LaunchInfo

T = TypeVar("T")

_threads: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _threads
    if _threads is None:
        _threads = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="containerizer")
    return _threads


async def off_loop(fn: Callable[..., T], *args: Any, undo: Callable[[T], object] | None = None) -> T:
    """`fn(*args)` in a worker thread. Cancelled meanwhile: what it does is waited for (the caller's file
    descriptors and paths stay valid until it is over), `undo` is called with its result, and the cancellation
    goes on."""
    work = _executor().submit(fn, *args)
    try:
        return await asyncio.wrap_future(work)
    except asyncio.CancelledError:
        if not work.cancelled():  # under way or done (else it never started)
            with contextlib.suppress(Exception):
                result = work.result()
                if undo is not None:
                    undo(result)
        raise


def prepare_launch(backend: cg.Backend | None, spec: LaunchSpec, isolators: Sequence[Isolator]) -> LaunchInfo:
    """The container's cgroups and what the isolators prepare (their limits written); none left on a failure."""
    paths = backend.create(spec) if backend is not None else []
    launch = LaunchInfo(paths, spec.env)
    try:
        for isolator in isolators:
            isolator.prepare(spec, launch)
    except BaseException:
        remove_cgroups_of(launch)
        raise
    return launch


def remove_cgroups_of(launch: LaunchInfo) -> None:
    if launch.cgroup_paths:
        cg.kill_and_remove_sync(launch.cgroup_paths, timeout=2.0)
