"""The agent's own API, served on `--port`: its state, its containers' usage statistics and its tasks' sandboxes."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc

from aiomesos.v1 import agent_pb2, agent_pb2_grpc
from mesos_agent import files
from mesos_agent.agent import Agent
from mesos_agent.master_link import MasterLink
from mesos_agent.sandbox import decode_id, encode_id, latest_runs
from mesos_agent.tasks import TaskRun
from scheduler_sdk._daemon.guard import Guard
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.acls import Authorizer
from scheduler_sdk.security.certs import Principal
from scheduler_sdk.states import TERMINAL_STATES

#: The longest task or framework id (as the master's bound) and sandbox path a files request may name.
MAX_ID = 255
MAX_PATH = 4096
#: Seconds a sandbox's measured disk usage is reused before it is walked again.
DISK_USAGE_TTL = 10.0
_STAT_FIELDS = {f.name: f for f in agent_pb2.ResourceStatistics.DESCRIPTOR.fields if f.name != "timestamp"}


@dataclass(slots=True)
class Located:
    """A task's sandbox, and the task itself while the agent still holds it."""

    framework_id: str  # as known: the real id when held, the sandbox directory's name when found on disk
    sandbox: Path
    run: TaskRun | None

    def over(self) -> bool:
        run = self.run
        if run is None:
            return True
        if run.state in TERMINAL_STATES:
            return True
        return run.container is not None and run.container.done


class Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, agent: Agent, link: MasterLink, guard: Guard | None = None) -> None:
        self.agent = agent
        self.link = link
        self.guard = guard or Guard(Authorizer(), secure=False)
        self._disk_usage: dict[Path, tuple[float, int]] = {}

    async def GetState(
        self, request: agent_pb2.AgentStateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentState:
        agent = self.agent
        visible = self.guard.viewer()
        return agent_pb2.AgentState(
            agent_info=agent.info,
            master=self.link.master,
            connected=self.link.connected.is_set(),
            tasks=[
                agent_pb2.AgentTask(framework_id=r.framework.id, task=r.info, state=r.state)  # type: ignore[arg-type]
                for r in agent.tasks.values()
                if visible(r.framework.principal)
            ],
            pending_updates=agent.updates.pending(),
            isolators=agent.containerizer.isolators,
        )

    # ------------------------------------------------------------------ usage statistics
    async def GetContainers(
        self, request: agent_pb2.GetContainersRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.GetContainersResponse:
        visible = self.guard.viewer()
        runs = [
            r
            for r in self.agent.tasks.values()
            if r.container is not None
            and not r.container.done
            and r.state not in TERMINAL_STATES
            and visible(r.framework.principal)
        ]
        if not runs:
            return agent_pb2.GetContainersResponse()
        # Reading cgroup files (and walking sandboxes now and then) is blocking I/O: off the event loop. The
        # containerizer's disk/du isolator measures sandboxes when it is on; where it is off, they are measured here,
        # at most every DISK_USAGE_TTL seconds each.
        now = time.monotonic()
        sandboxes = [self._sandbox_of(r) for r in runs]
        fresh = {p: used for p, (at, used) in self._disk_usage.items() if now - at <= DISK_USAGE_TTL}
        stats, measured = await asyncio.to_thread(_gather, runs, sandboxes, set(fresh))
        for path, used in measured.items():
            self._disk_usage[path] = (now, used)
        live = set(sandboxes)
        for path in [p for p in self._disk_usage if p not in live]:
            del self._disk_usage[path]
        out = []
        for run, sandbox, figures in zip(runs, sandboxes, stats, strict=True):
            if not figures:  # finished meanwhile
                continue
            statistics = _statistics(figures)
            if "disk_used_bytes" not in figures and sandbox is not None and sandbox in self._disk_usage:
                statistics.disk_used_bytes = self._disk_usage[sandbox][1]
            if "disk_limit_bytes" not in figures:
                disk_mb = Resources.from_proto(run.info.resources).scalar("disk")
                if disk_mb:
                    statistics.disk_limit_bytes = int(disk_mb * 1024 * 1024)
            out.append(
                agent_pb2.ContainerStatus(
                    framework_id=run.framework.id,
                    task_id=run.info.task_id,
                    container_id=run.container_id,
                    state=run.state,  # type: ignore[arg-type]
                    statistics=statistics,
                    sandbox=str(sandbox or ""),
                    agent_id=self.agent.agent_id,
                )
            )
        return agent_pb2.GetContainersResponse(containers=out)

    # ------------------------------------------------------------------ sandboxes
    async def ListFiles(
        self, request: agent_pb2.ListFilesRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ListFilesResponse:
        try:
            located = self.locate(request.task_id, request.framework_id, request.path)
            await self._may_read(context, located)
            entries = await asyncio.to_thread(files.list_dir, located.sandbox, request.path, within=self.agent.work_dir)
        except Refusal as e:
            await _abort(context, e.code, str(e))
        except files.PathRefused as e:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except OSError as e:
            await _abort(context, *_os_error(request.task_id, request.path, e))
        return agent_pb2.ListFilesResponse(
            files=[
                agent_pb2.FileInfo(path=e.path, is_dir=e.is_dir, size=e.size, mtime=e.mtime, mode=e.mode)
                for e in entries
            ]
        )

    async def ReadFile(
        self, request: agent_pb2.ReadFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.ReadFileChunk]:
        try:
            if request.length < 0:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "length must not be negative")
            located = self.locate(request.task_id, request.framework_id, request.path)
            await self._may_read(context, located)
            fd, _ = files.open_file(located.sandbox, request.path, within=self.agent.work_dir)
        except Refusal as e:
            await _abort(context, e.code, str(e))
        except files.PathRefused as e:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except OSError as e:
            await _abort(context, *_os_error(request.task_id, request.path, e))
        try:
            if request.tail_lines:
                # Backwards through as much of the file as the lines take: off the event loop.
                # The thread reads through its own descriptor: should this call be cancelled meanwhile, closing ours
                # below cannot pull the file from under it.
                start = await asyncio.to_thread(_tail_offset_closing, os.dup(fd), request.tail_lines)
            else:
                start = files.start_offset(os.fstat(fd).st_size, request.offset)
            if request.follow:
                async for offset, data in files.follow(fd, start, located.over, limit=request.length):
                    yield agent_pb2.ReadFileChunk(data=data, offset=offset)
            else:
                for offset, data in files.read_range(fd, start, request.length):
                    yield agent_pb2.ReadFileChunk(data=data, offset=offset)
        finally:
            os.close(fd)

    async def _may_read(self, context: grpc.aio.ServicerContext, located: Located) -> None:
        """access_sandboxes: the task's framework may read its own; the ACLs say who else (by default operators).
        A sandbox found on disk only (its task is gone) has no known owner: only the ACLs can allow it."""
        owner = located.run.framework.principal if located.run is not None else ""
        await self.guard.authorize(context, "access_sandboxes", owner, owner=Principal.parse(owner))

    def locate(self, task_id: str, framework_id: str = "", path: str = "") -> Located:
        """The sandbox of a task the agent holds, or of one it ran whose sandbox is still on disk (its latest run).

        Raises Refusal: NOT_FOUND for an unknown task, INVALID_ARGUMENT for an id or path past its bound or when
        the id names tasks of several frameworks and no framework id was given."""
        if not task_id:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "a task id is required")
        for name, value, bound in (("task_id", task_id, MAX_ID), ("framework_id", framework_id, MAX_ID)):
            if len(value) > bound:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {len(value)} characters, at most {bound}")
        if len(path) > MAX_PATH:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"path: {len(path)} characters, at most {MAX_PATH}")
        found: dict[str, Located] = {}  # by the framework's sandbox directory name
        starting: TaskRun | None = None
        for (fid, tid), run in self.agent.tasks.items():
            if tid != task_id or (framework_id and fid != framework_id):
                continue
            sandbox = self._sandbox_of(run)
            if sandbox is None:
                starting = run
                continue
            found[encode_id(fid)] = Located(fid, sandbox, run)
        for fw_dir, sandbox in self._sandboxes_on_disk(task_id, framework_id).items():
            found.setdefault(fw_dir, Located(framework_id or decode_id(fw_dir) or fw_dir, sandbox, None))
        if len(found) > 1:
            frameworks = ", ".join(sorted(loc.framework_id for loc in found.values()))
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"task id {task_id!r} is ambiguous on this agent: frameworks {frameworks} have one; "
                "give the framework id",
            )
        if found:
            return next(iter(found.values()))
        which = f"task {task_id!r}" + (f" of framework {framework_id!r}" if framework_id else "")
        if starting is not None:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"{which} has no sandbox yet: it is still starting")
        raise Refusal(grpc.StatusCode.NOT_FOUND, f"unknown {which}: no such task or sandbox on this agent")

    def _sandbox_of(self, run: TaskRun) -> Path | None:
        if run.sandbox is not None:
            return run.sandbox
        path = self.agent.sandbox_of(run)  # a task re-adopted after an agent restart: where the layout puts it
        return path if path.is_dir() else None

    def _sandboxes_on_disk(self, task_id: str, framework_id: str) -> dict[str, Path]:
        """Framework directory name -> the latest run of this task's executor, over every agent id this work dir
        has held (the current one preferred). Found from the layout the agent made, never through a link a task
        could have changed (`mesos_agent.sandbox.latest_runs`)."""
        return latest_runs(self.agent.work_dir, framework_id or None, task_id, prefer_agent=self.agent.agent_id)


def _gather(
    runs: list[TaskRun], sandboxes: list[Path | None], fresh: set[Path]
) -> tuple[list[dict[str, float]], dict[Path, int]]:
    """In a worker thread: each container's statistics, and the disk usage of the sandboxes whose container's
    statistics lack it and that were not measured recently (`fresh`)."""
    stats: list[dict[str, float]] = []
    measured: dict[Path, int] = {}
    for run, sandbox in zip(runs, sandboxes, strict=True):
        figures = run.container.stats() if run.container is not None else {}
        stats.append(figures)
        if figures and "disk_used_bytes" not in figures and sandbox is not None and sandbox not in fresh:
            measured[sandbox] = files.disk_usage(sandbox)
    return stats, measured


def _tail_offset_closing(fd: int, lines: int) -> int:
    try:
        return files.tail_offset(fd, lines)
    finally:
        os.close(fd)


def _statistics(stats: dict[str, float]) -> agent_pb2.ResourceStatistics:
    out = agent_pb2.ResourceStatistics(timestamp=time.time())
    for name, value in stats.items():
        field = _STAT_FIELDS.get(name)
        if field is None:
            continue
        if field.cpp_type == field.CPPTYPE_DOUBLE:
            setattr(out, name, float(value))
        else:
            setattr(out, name, max(0, int(value)))
    return out


def _os_error(task_id: str, path: str, e: OSError) -> tuple[grpc.StatusCode, str]:
    shown = path or "."
    if isinstance(e, FileNotFoundError):
        return grpc.StatusCode.NOT_FOUND, f"no file {shown!r} in the sandbox of task {task_id!r}"
    if isinstance(e, IsADirectoryError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"{shown!r} is a directory: list it instead"
    if isinstance(e, NotADirectoryError):
        return grpc.StatusCode.NOT_FOUND, f"no file {shown!r} in the sandbox of task {task_id!r}"
    if isinstance(e, files.AccessRefused):
        return grpc.StatusCode.PERMISSION_DENIED, str(e)
    if e.errno == errno.ELOOP:
        return grpc.StatusCode.INVALID_ARGUMENT, f"path {shown!r} refused: it is a symlink"
    if isinstance(e, PermissionError):
        return grpc.StatusCode.PERMISSION_DENIED, f"{shown!r}: permission denied"
    if e.errno == errno.ENAMETOOLONG:
        return grpc.StatusCode.INVALID_ARGUMENT, f"path {shown[:64]!r}: a name in it is too long"
    return grpc.StatusCode.INTERNAL, f"{shown!r}: {e.strerror or e}"


async def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort() raises")
