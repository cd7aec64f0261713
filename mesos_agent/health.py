"""Task health checks as Mesos' built-in executors run them (docs/health-checks.md in Mesos).

Three layers:

* `HealthPolicy`: the numbers of a `HealthCheck` with Mesos' defaults applied, and its validation.
* `HealthTracker`: the pure state machine: when the next check is due, which failures count (the grace
  period, which the first success ends), when the reported health changes and when the task must be killed.
* `HealthChecker`: the asyncio shell that runs the probes (COMMAND, HTTP, TCP against 127.0.0.1) on the
  tracker's schedule and calls back the agent: `on_health(bool)` on each change of health, `on_kill(message)`
  once when the task has failed `consecutive_failures` checks in a row. Its `run()` loops until cancelled or
  until it has asked for the kill.

COMMAND checks run inside the task's container, as Mesos runs them: given the task's `Container`, the check
goes through `Container.exec` (the task's cgroups, user, sandbox and environment, its pid and mount namespaces
with `namespaces/pid`, its rlimits without cgroups). Without a container (a checker used on its own) the
check is a plain child of the agent process in `cwd`, as the agent's user.

Rules (Mesos' reference executors):
- the first check starts `delay` after launch, the next one `interval` after the previous one ended;
- a check that has not finished after `timeout` is aborted and counts as a failure;
- failures within `grace_period` of launch are ignored until the task has been healthy once;
- a success resets the failure count; the first success, and the first success after failures, report
  healthy; the first counted failure reports unhealthy (one report per change, not per check);
- the `consecutive_failures`-th failure in a row asks for the kill (exactly once).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import os
import shlex
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.containerizer import LAUNCH_FAILED_STATUS, Container, ContainerizerError, ExecProcess
from mesos_agent.executor import command_argv

HealthCheck = tpb.HealthCheck
HOST = "127.0.0.1"

DEFAULT_DELAY = 15.0
DEFAULT_INTERVAL = 10.0
DEFAULT_TIMEOUT = 20.0
DEFAULT_CONSECUTIVE_FAILURES = 3
DEFAULT_GRACE_PERIOD = 10.0

_TYPE_NAMES: dict[int, str] = {HealthCheck.COMMAND: "COMMAND", HealthCheck.HTTP: "HTTP", HealthCheck.TCP: "TCP"}
_MAX_STATUS_LINE = 8192


class HealthEvent(enum.Enum):
    HEALTHY = "healthy"  # reported health becomes True
    UNHEALTHY = "unhealthy"  # reported health becomes False
    KILL = "kill"  # `consecutive_failures` failures in a row: kill the task


@dataclass(frozen=True)
class HealthPolicy:
    """A health check's resolved settings (seconds), Mesos' defaults applied."""

    type: int
    delay: float = DEFAULT_DELAY
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES
    grace_period: float = DEFAULT_GRACE_PERIOD
    # COMMAND
    argv: tuple[str, ...] = ()
    shell: bool = False
    command_env: tuple[tuple[str, str], ...] = ()
    # HTTP / TCP
    port: int = 0
    scheme: str = "http"
    path: str = "/"
    statuses: tuple[int, ...] = ()  # empty: 200-399

    @classmethod
    def from_proto(cls, check: tpb.HealthCheck) -> HealthPolicy:
        argv: tuple[str, ...] = ()
        port, scheme, path = 0, "http", "/"
        statuses: tuple[int, ...] = ()
        if check.type == HealthCheck.COMMAND and (check.command.value or check.command.arguments):
            argv = tuple(command_argv(check.command))
        elif check.type == HealthCheck.HTTP:
            port = check.http.port
            scheme = check.http.scheme.lower() or "http"
            path = check.http.path or "/"
            if not path.startswith("/"):
                path = "/" + path
            statuses = tuple(check.http.statuses)
        elif check.type == HealthCheck.TCP:
            port = check.tcp.port
        return cls(
            type=check.type,
            delay=check.delay_seconds if check.HasField("delay_seconds") else DEFAULT_DELAY,
            interval=check.interval_seconds if check.HasField("interval_seconds") else DEFAULT_INTERVAL,
            timeout=check.timeout_seconds if check.HasField("timeout_seconds") else DEFAULT_TIMEOUT,
            consecutive_failures=(
                check.consecutive_failures if check.HasField("consecutive_failures") else DEFAULT_CONSECUTIVE_FAILURES
            ),
            grace_period=check.grace_period_seconds if check.HasField("grace_period_seconds") else DEFAULT_GRACE_PERIOD,
            argv=argv,
            shell=check.command.shell,
            command_env=tuple((v.name, v.value) for v in check.command.environment.variables),
            port=port,
            scheme=scheme,
            path=path,
            statuses=statuses,
        )

    def validate(self) -> list[str]:
        """What is wrong with this check (empty when it can run): the agent fails the task with these."""
        problems = []
        if self.type not in _TYPE_NAMES:
            problems.append(f"health check type must be COMMAND, HTTP or TCP (got {self.type})")
        elif self.type == HealthCheck.COMMAND:
            if not self.argv or not self.argv[-1 if self.shell else 0]:
                problems.append("COMMAND health check needs a command")
        else:
            name = _TYPE_NAMES[self.type]
            if not 0 < self.port < 65536:
                problems.append(f"{name} health check needs a port between 1 and 65535 (got {self.port})")
            if self.type == HealthCheck.HTTP:
                if self.scheme not in ("http", "https"):
                    problems.append(f"HTTP health check scheme must be http or https (got {self.scheme!r})")
                if any(c in self.path for c in " \r\n"):
                    problems.append(f"HTTP health check path must not contain spaces or newlines: {self.path!r}")
                bad = [s for s in self.statuses if not 100 <= s <= 599]
                if bad:
                    problems.append(f"HTTP health check statuses must be 100-599 (got {bad})")
        for name, value in (("delay", self.delay), ("grace_period", self.grace_period)):
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"health check {name}_seconds must be a non-negative number (got {value})")
        for name, value in (("interval", self.interval), ("timeout", self.timeout)):
            if not (math.isfinite(value) and value > 0):
                problems.append(f"health check {name}_seconds must be a positive number (got {value})")
        if self.consecutive_failures < 1:
            problems.append(f"health check consecutive_failures must be at least 1 (got {self.consecutive_failures})")
        return problems

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}{self.path}"

    def describe(self) -> str:
        """How a check reads in messages: `HTTP GET http://127.0.0.1:31000/`, `TCP connect to ...`."""
        if self.type == HealthCheck.HTTP:
            return f"HTTP GET {self.url}"
        if self.type == HealthCheck.TCP:
            return f"TCP connect to {HOST}:{self.port}"
        if self.type == HealthCheck.COMMAND:
            shown = self.argv[-1] if self.shell and self.argv else shlex.join(self.argv)
            return f"command {shown!r}"
        return "health check"

    def healthy_status(self, code: int) -> bool:
        return code in self.statuses if self.statuses else 200 <= code <= 399


def validate_check(check: tpb.HealthCheck) -> list[str]:
    return HealthPolicy.from_proto(check).validate()


class HealthTracker:
    """The rules, free of I/O and clocks: feed it each check's outcome and the time it ended."""

    def __init__(self, policy: HealthPolicy, launched_at: float) -> None:
        self.policy = policy
        self.launched_at = launched_at
        self.next_check_at = launched_at + policy.delay
        self.healthy: bool | None = None  # last reported health; None before the first report
        self.ever_healthy = False
        self.consecutive_failures = 0
        self.killed = False

    def in_grace_period(self, now: float) -> bool:
        """Failures now would be ignored: within the grace period and not yet healthy once."""
        return not self.ever_healthy and now < self.launched_at + self.policy.grace_period

    def due_in(self, now: float) -> float:
        return max(0.0, self.next_check_at - now)

    def record(self, success: bool, now: float) -> HealthEvent | None:
        """A check ended at `now` with `success`. Returns the event to act on, if any."""
        if self.killed:
            return None
        self.next_check_at = now + self.policy.interval
        if success:
            self.consecutive_failures = 0
            self.ever_healthy = True
            if self.healthy is not True:
                self.healthy = True
                return HealthEvent.HEALTHY
            return None
        if self.in_grace_period(now):
            return None
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.policy.consecutive_failures:
            self.killed = True
            self.healthy = False
            return HealthEvent.KILL
        if self.healthy is not False:
            self.healthy = False
            return HealthEvent.UNHEALTHY
        return None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str  # e.g. "HTTP GET http://127.0.0.1:31000/ returned 500"


class HealthChecker:
    """Runs one task's health check. `launched_at` is on `clock`'s scale (time.monotonic by default).

    `container`: the task's container, where COMMAND checks run (see the module docstring); `env` is the
    task's environment (the check's own `environment` goes on top of it) and `cwd` its sandbox.
    """

    def __init__(
        self,
        check: tpb.HealthCheck,
        *,
        env: Mapping[str, str],
        cwd: Path,
        launched_at: float,
        on_health: Callable[[bool], None],
        on_kill: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        container: Container | None = None,
    ) -> None:
        self.policy = HealthPolicy.from_proto(check)
        problems = self.policy.validate()
        if problems:
            raise ValueError("; ".join(problems))
        self.env = {**env, **dict(self.policy.command_env)}
        self.cwd = cwd
        self.container = container
        self.tracker = HealthTracker(self.policy, launched_at)
        self.on_health = on_health
        self.on_kill = on_kill
        self.clock = clock
        self.sleep = sleep
        self.last_result: CheckResult | None = None
        self.checks_run = 0

    @property
    def healthy(self) -> bool | None:
        return self.tracker.healthy

    async def run(self) -> None:
        """Check until cancelled, or until the kill was asked for (then return)."""
        while True:
            wait = self.tracker.due_in(self.clock())
            if wait > 0:
                await self.sleep(wait)
            result = await self.check_once()
            before = self.tracker.healthy
            event = self.tracker.record(result.ok, self.clock())
            if event is HealthEvent.HEALTHY:
                self.on_health(True)
            elif event is HealthEvent.UNHEALTHY:
                self.on_health(False)
            elif event is HealthEvent.KILL:
                if before is not False:
                    self.on_health(False)
                n = self.tracker.consecutive_failures
                self.on_kill(f"health check failed {n} time{'s' if n != 1 else ''} in a row: {result.detail}")
                return

    async def check_once(self) -> CheckResult:
        """One probe, bounded by the timeout."""
        self.checks_run += 1
        p = self.policy
        if p.type == HealthCheck.COMMAND:
            result = await self._command()
        else:
            try:
                async with asyncio.timeout(p.timeout):
                    result = await (self._http() if p.type == HealthCheck.HTTP else self._tcp())
            except TimeoutError:
                result = CheckResult(False, f"{p.describe()} timed out after {p.timeout:g}s")
            except Exception as e:  # any failure to probe is the check failing, never the agent's problem
                result = CheckResult(False, f"{p.describe()} failed: {_error_text(e)}")
        self.last_result = result
        return result

    async def _start_command(self) -> ExecProcess | asyncio.subprocess.Process:
        if self.container is not None:
            # Over the container's own environment (which has the GPU variables): the task's and the check's.
            return await self.container.exec(self.policy.argv, env=self.env)
        return await asyncio.create_subprocess_exec(
            *self.policy.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as a whole
        )

    async def _command(self) -> CheckResult:
        p = self.policy
        try:
            proc = await self._start_command()
        except (OSError, ValueError, ContainerizerError) as e:
            return CheckResult(False, f"{p.describe()} could not start: {_error_text(e)}")
        try:
            async with asyncio.timeout(p.timeout):
                code = await proc.wait()
        except TimeoutError:
            return CheckResult(False, f"{p.describe()} timed out after {p.timeout:g}s")
        finally:
            # Whatever happened (success, timeout, cancellation), nothing of the check outlives it.
            if isinstance(proc, ExecProcess):
                proc.kill()
            else:
                _kill_group(proc.pid)
            if proc.returncode is None:
                await proc.wait()
        if code == 0:
            return CheckResult(True, f"{p.describe()} exited with status 0")
        if code < 0:
            return CheckResult(False, f"{p.describe()} was killed by {_signal_name(-code)}")
        if code == LAUNCH_FAILED_STATUS and self.container is not None:
            detail = f"exited with status {code} (its own, or it could not enter the task's container)"
            return CheckResult(False, f"{p.describe()} {detail}")
        return CheckResult(False, f"{p.describe()} exited with status {code}")

    async def _http(self) -> CheckResult:
        p = self.policy
        reader, writer = await asyncio.open_connection(
            HOST, p.port, ssl=_insecure_ssl() if p.scheme == "https" else None
        )
        try:
            request = (
                f"GET {p.path} HTTP/1.1\r\nHost: {HOST}:{p.port}\r\nUser-Agent: aiomesos-health-check\r\n"
                "Accept: */*\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("latin-1"))
            await writer.drain()
            while True:
                code = _parse_status_line(await reader.readuntil(b"\n"))
                if code >= 200 or code == 101:
                    break
                # An interim 1xx response: skip its headers, the final status follows.
                while (await reader.readuntil(b"\n")).strip():
                    pass
        finally:
            await _close(writer)
        verdict = p.healthy_status(code)
        return CheckResult(verdict, f"{p.describe()} returned {code}")

    async def _tcp(self) -> CheckResult:
        p = self.policy
        _, writer = await asyncio.open_connection(HOST, p.port)
        await _close(writer)
        return CheckResult(True, f"{p.describe()} succeeded")


def _parse_status_line(line: bytes) -> int:
    if len(line) > _MAX_STATUS_LINE:
        raise ValueError("status line too long")
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError(f"not an HTTP response: {line[:80]!r}")
    return int(parts[1])


_SSL_CONTEXT: ssl.SSLContext | None = None


def _insecure_ssl() -> ssl.SSLContext:
    """Like Mesos' `curl -k`: encrypted, the certificate not verified."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _SSL_CONTEXT = ctx
    return _SSL_CONTEXT


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # A TLS peer that never answers close_notify must not turn a finished check into a timeout. (Not wait_for: it
    # loses the checker's cancellation when the close completes in that turn: scheduler_sdk._daemon.tasks.)
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _error_text(e: BaseException) -> str:
    if isinstance(e, asyncio.IncompleteReadError):
        return "connection closed before a response"
    if isinstance(e, asyncio.LimitOverrunError):
        return "response line too long"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno).lower()
    return str(e) or type(e).__name__
