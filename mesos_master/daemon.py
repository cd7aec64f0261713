"""The master daemon: wiring only. Flags, the registry, the core, the gRPC servers and the periodic loops,
all owned by one TaskGroup; SIGTERM or SIGINT stops it cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import grpc
import structlog

from aiomesos.v1 import agent_pb2_grpc, operator_pb2_grpc, scheduler_pb2_grpc
from mesos_master.allocator import Allocator, create_allocator
from mesos_master.api.agents import AgentRegistryService
from mesos_master.api.dispatch import Dispatcher
from mesos_master.api.operator import OperatorService
from mesos_master.api.scheduler import SchedulerService
from mesos_master.cluster import Master
from mesos_master.registry import SQLiteRegistry
from scheduler_sdk._daemon.flags import FlagParser, add_logging_flags, non_negative_float, port, positive_float
from scheduler_sdk._daemon.guard import Guard, load_authorizer
from scheduler_sdk._daemon.logs import configure_logging
from scheduler_sdk._daemon.process import DaemonError, lock_work_dir, run_daemon
from scheduler_sdk._daemon.security import DaemonSecurity, add_security_flags
from scheduler_sdk.channels import SERVER_OPTIONS
from scheduler_sdk.resources import Resources, ResourcesError
from scheduler_sdk.security.acls import AclError, Authorizer
from scheduler_sdk.security.certs import SecurityError

log = structlog.get_logger("mesos_master")

ADDRESS_FILE = "master.addr"
TOKEN_ADDRESS_FILE = "master.token.addr"
#: Seconds SIGTERM may take to stop the master (the streams' grace period is 1 s) before it exits regardless.
STOP_DEADLINE = 5.0
#: Who may call each service at all (what they may then do is the ACLs' business).
CALLERS = {
    "aiomesos.v1.Scheduler": ("framework", "operator"),
    "aiomesos.v1.AgentRegistry": ("agent",),
    "aiomesos.v1.Operator": ("operator", "framework"),
}


def build_parser() -> FlagParser:
    p = FlagParser(prog="aiomesos master", description="Run the aiomesos master.")
    p.add_flag("--work-dir", required=True, help="where the registry (SQLite) and the address file live")
    p.add_flag(
        "--ip",
        default=None,
        help="address to listen on (default: every address with TLS or --insecure, else loopback only)",
    )
    p.add_flag("--port", type=port, default=5050, help="port to listen on (0: any free port)")
    p.add_flag("--hostname", default=socket.gethostname(), help="the hostname the master advertises")
    p.add_flag(
        "--allocator",
        default="drf",
        help="allocation policy: drf, fair, priority, random, or a plugin from the aiomesos.allocators entry points",
    )
    p.add_flag("--fair-resource", default="cpus", help="with --allocator fair: the resource whose share is fair")
    p.add_flag(
        "--role-priorities",
        default=None,
        help="with --allocator priority: roles, highest first, comma-separated (default: by weight)",
    )
    p.add_flag("--random-seed", type=int, default=0, help="with --allocator random: the seed of its order")
    p.add_flag(
        "--min-allocatable",
        default="cpus:0.01|mem:32",
        help="the smallest offer worth making: alternatives separated by |, each in resource text form",
    )
    p.add_flag(
        "--revocation",
        action="store_true",
        help="revoke tasks of roles above their share for roles below their guarantee (or fair share)",
    )
    p.add_flag(
        "--allocation-interval", type=positive_float, default=1.0, help="seconds between periodic allocation cycles"
    )
    p.add_flag(
        "--offer-timeout",
        type=positive_float,
        default=None,
        help="rescind offers a framework holds longer than this many seconds (default: never)",
    )
    p.add_flag("--heartbeat-interval", type=positive_float, default=15.0, help="seconds between HEARTBEAT events")
    p.add_flag("--agent-ping-interval", type=positive_float, default=15.0, help="seconds between pings to agents")
    p.add_flag(
        "--agent-reregister-timeout",
        type=non_negative_float,
        default=600.0,
        help="after a master restart: seconds an agent known from the registry may take to re-attach before it is "
        "marked unreachable",
    )
    p.add_flag(
        "--agent-unreachable-timeout",
        type=non_negative_float,
        default=75.0,
        help="seconds a disconnected agent may take to re-attach before it is marked unreachable (its tasks: "
        "TASK_UNREACHABLE to PARTITION_AWARE frameworks, TASK_LOST to the others)",
    )
    p.add_flag(
        "--unreachable-agent-max-age",
        type=positive_float,
        default=14 * 24 * 3600.0,
        help="seconds an unreachable agent is remembered (so it may re-attach) before it is forgotten",
    )
    add_security_flags(p, tokens=True)
    p.add_flag(
        "--acls",
        default=None,
        help="authorisation rules (JSON, Mesos' ACL format); reread on change and on SIGHUP (default: built-in "
        "rules: operators may do everything, frameworks may register and run tasks as any user but root)",
    )
    add_logging_flags(p)
    return p


class MasterDaemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        a = self.args
        work_dir = Path(a.work_dir).resolve()
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DaemonError(f"cannot create work dir {work_dir}: {e.strerror}") from None
        security = DaemonSecurity.from_args(a)
        ip = security.listen_ip(a.ip)
        authorizer = load_authorizer(a.acls)
        lock_work_dir(work_dir, "master")
        registry = SQLiteRegistry(work_dir / "registry.sqlite")
        recovered = await registry.load()
        allocator = build_allocator(a)
        master = Master(
            uuid.uuid4().hex[:12],
            allocator,
            recovered=recovered,
            offer_timeout=a.offer_timeout,
            agent_reregister_timeout=a.agent_reregister_timeout,
            agent_unreachable_timeout=a.agent_unreachable_timeout,
            unreachable_agent_max_age=a.unreachable_agent_max_age,
            hostname=a.hostname,
            authorizer=authorizer if security.secure else None,
        )
        dispatcher = Dispatcher(master, registry)
        guard = Guard(authorizer, secure=security.secure)
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=security.interceptors(CALLERS))
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(
            SchedulerService(dispatcher, a.heartbeat_interval, guard),
            server,
        )
        agent_pb2_grpc.add_AgentRegistryServicer_to_server(
            AgentRegistryService(dispatcher, a.agent_ping_interval, guard),
            server,
        )
        operator_pb2_grpc.add_OperatorServicer_to_server(
            OperatorService(dispatcher, guard, security.client_config()), server
        )
        try:
            bound, token_port = security.bind(server, ip, a.port)
        except DaemonError:
            registry.close_now()
            raise
        await server.start()
        host = "127.0.0.1" if ip in ("0.0.0.0", "::") else ip
        advertised = f"{host}:{bound}"
        if token_port is not None:
            _write_atomically(work_dir / TOKEN_ADDRESS_FILE, f"{host}:{token_port}\n")
        _write_atomically(work_dir / ADDRESS_FILE, advertised + "\n")
        log.info(
            "master started",
            master_id=master.master_id,
            address=advertised,
            work_dir=str(work_dir),
            recovered_agents=len(recovered.agents),
            recovered_frameworks=len(recovered.frameworks),
            allocator=a.allocator,
            token_address=f"{host}:{token_port}" if token_port is not None else None,
        )
        security.log_start("master", ip)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: reload_security(authorizer, security))
        backstop: asyncio.TimerHandle | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                allocation = tg.create_task(self._allocation_loop(master, dispatcher))
                ticks = tg.create_task(self._tick_loop(master, dispatcher, security))
                await self.stopping.wait()
                log.info("master stopping")
                backstop = loop.call_later(STOP_DEADLINE, _stuck, registry, work_dir)
                allocation.cancel()
                ticks.cancel()
                dispatcher.stop()  # every stream ends now, UNAVAILABLE: nothing is left to the grace period
                await server.stop(grace=1.0)
        finally:
            try:
                async with asyncio.timeout(STOP_DEADLINE):
                    await dispatcher.close()  # what the last calls wrote reaches the registry
            finally:
                _release(registry, work_dir)
                if backstop is not None:
                    backstop.cancel()
            log.info("master stopped")

    async def _allocation_loop(self, master: Master, dispatcher: Dispatcher) -> None:
        interval = self.args.allocation_interval
        while True:
            with contextlib.suppress(TimeoutError):
                # Not wait_for: it loses a cancellation that comes as the event is set (scheduler_sdk._daemon.tasks)
                async with asyncio.timeout(interval):
                    await dispatcher.allocation_wanted.wait()
            dispatcher.allocation_wanted.clear()
            # Let the calls that arrived in this turn land first, so one cycle serves them all.
            await asyncio.sleep(0)
            await dispatcher.flush()
            if master.allocate():
                await dispatcher.flush()

    async def _tick_loop(self, master: Master, dispatcher: Dispatcher, security: DaemonSecurity) -> None:
        while True:
            await asyncio.sleep(0.5)
            master.tick()
            dispatcher.changed()
            if master.authorizer is not None:
                # The credentials too: a revoked token must stop working without a SIGHUP (a stat when unchanged).
                reload_security(master.authorizer, security)


def _release(registry: SQLiteRegistry, work_dir: Path) -> None:
    registry.close_now()
    for name in (ADDRESS_FILE, TOKEN_ADDRESS_FILE):
        with contextlib.suppress(FileNotFoundError):
            (work_dir / name).unlink()


def _stuck(registry: SQLiteRegistry, work_dir: Path) -> None:
    """The stop did not end in STOP_DEADLINE seconds: a task lost its cancellation (see
    scheduler_sdk._daemon.tasks). Say which, and end the process anyway (exit status 1): a master that SIGTERM
    does not stop is worse. The registry loses nothing: every write was committed when it was applied."""
    pending = [repr(t)[:300] for t in asyncio.all_tasks() if not t.done()]
    log.error("master did not stop in time: exiting anyway", deadline_seconds=STOP_DEADLINE, pending_tasks=pending)
    with contextlib.suppress(Exception):
        _release(registry, work_dir)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


def reload_security(authorizer: Authorizer, security: DaemonSecurity | None) -> None:
    """Reread the ACLs and the credentials if their files changed (each tick, and at once on SIGHUP); a broken
    edit keeps the old ones and says why."""
    try:
        if authorizer.reload():
            log.info("ACLs reloaded", path=str(authorizer.path))
    except AclError as e:
        log.error("ACL file not reloaded: keeping the rules in force", error=str(e))
    if security is not None and security.credentials is not None:
        try:
            if security.credentials.reload():
                log.info("credentials reloaded", path=str(security.credentials.path))
        except SecurityError as e:
            log.error("credentials file not reloaded: keeping the tokens in force", error=str(e))


def build_allocator(a: argparse.Namespace) -> Allocator:
    """The allocator the flags ask for; raises ValueError (one readable line) for bad values."""
    try:
        minimums = [Resources.parse(alt) for alt in a.min_allocatable.split("|") if alt.strip()]
    except ResourcesError as e:
        raise ValueError(f"--min-allocatable: {e}") from None
    kwargs: dict[str, object] = {
        "allocation_interval": a.allocation_interval,
        "revocation": a.revocation,
        "min_allocatable": minimums,
        "fair_resource": a.fair_resource,
        "seed": a.random_seed,
    }
    if a.role_priorities:
        kwargs["priorities"] = [r.strip() for r in a.role_priorities.split(",") if r.strip()]
    try:
        return create_allocator(a.allocator, **kwargs)
    except TypeError as e:
        raise ValueError(f"--allocator {a.allocator}: {e}") from None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        build_allocator(args)  # bad policy flags fail here, before anything starts
    except ValueError as e:
        print(f"aiomesos master: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(run_daemon("aiomesos master", "aiomesos-master", MasterDaemon(args).run()))


if __name__ == "__main__":
    main()
