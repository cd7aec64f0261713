"""The master daemon: wiring only. Flags, the gRPC server (serving for the master's whole life, routed to the
term it leads or refusing as a standby: api/standby.py), etcd when highly available (ha.py), and its terms as
leader (terms.py), owned by one TaskGroup; SIGTERM or SIGINT stops it cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import grpc
import structlog
from prometheus_client import CollectorRegistry

from aiomesos.v1 import agent_pb2_grpc, operator_pb2_grpc, scheduler_pb2_grpc
from mesos_master.api.agents import DEFAULT_PINGS_PER_SECOND
from mesos_master.api.standby import Seat, routed
from mesos_master.cluster import Master
from mesos_master.ha import Coordination, add_etcd_flags, masters_view, open_coordination, sole_master_view
from mesos_master.metrics import master_registry
from mesos_master.registry import RegistryError, SQLiteRegistry
from mesos_master.terms import Terms, build_allocator
from mesos_master.webui import install as install_webui
from mesos_master.webui import master_view
from mesos_master.webui.view import DEFAULT_JOBS_PRINCIPALS, principal_list
from scheduler_sdk._daemon.flags import FlagParser, add_logging_flags, non_negative_float, port, positive_float
from scheduler_sdk._daemon.grpc_health import Health, add_health_and_reflection, stop_serving
from scheduler_sdk._daemon.guard import load_authorizer, reload_security
from scheduler_sdk._daemon.http import (
    HttpServer,
    add_http_flags,
    daemon_http_server,
    http_address_file,
    write_http_address,
)
from scheduler_sdk._daemon.logs import configure_logging
from scheduler_sdk._daemon.process import DaemonError, lock_work_dir, make_work_dir, run_daemon, write_atomically
from scheduler_sdk._daemon.prometheus import install_health, install_metrics
from scheduler_sdk._daemon.security import DaemonSecurity, add_security_flags
from scheduler_sdk._daemon.tasks import race
from scheduler_sdk.channels import SERVER_OPTIONS
from scheduler_sdk.masters import MasterRecord
from scheduler_sdk.security.acls import Authorizer

log = structlog.get_logger("mesos_master")

ADDRESS_FILE = "master.addr"
TOKEN_ADDRESS_FILE = "master.token.addr"
HTTP_ADDRESS_FILE = http_address_file("master")
#: Seconds SIGTERM may take to stop the master (the streams' grace period is 1 s) before it exits regardless.
STOP_DEADLINE = 5.0
#: Who may call each service at all (what they may then do is the ACLs' business).
CALLERS = {
    "aiomesos.v1.Scheduler": ("framework", "operator"),
    "aiomesos.v1.AgentRegistry": ("agent",),
    "aiomesos.v1.Operator": ("operator", "framework"),
}
#: What a standby reports NOT_SERVING in gRPC health (every call there is refused with the leader's address).
SERVICES = tuple(CALLERS)


def build_parser() -> FlagParser:
    p = FlagParser(prog="aiomesos master", description="Run the aiomesos master.")
    p.add_flag(
        "--work-dir", required=True, help="where the registry (SQLite, without --etcd) and the address file live"
    )
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
    p.add_flag(
        "--agent-ping-interval",
        type=positive_float,
        default=15.0,
        help="seconds between pings to each agent, at least (longer when --max-agent-pings-per-second says so)",
    )
    p.add_flag(
        "--max-agent-pings-per-second",
        type=positive_float,
        default=DEFAULT_PINGS_PER_SECOND,
        help="the master's pings to all its agents together, at most: with more agents than this many times the "
        "ping interval, the interval grows (every ping tells the agent the interval in force)",
    )
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
    add_etcd_flags(p)
    add_security_flags(p, tokens=True)
    add_http_flags(p, default_port=5050, what="/metrics, /health and the web UI")
    p.add_flag(
        "--jobs-principals",
        default=DEFAULT_JOBS_PRINCIPALS,
        help="the framework principals (comma-separated) whose jobs API label the web UI follows: the master dials "
        "only these frameworks' jobs services, with its own certificate",
    )
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
        self.master_id = uuid.uuid4().hex[:12]

    async def run(self) -> int:
        a = self.args
        work_dir = make_work_dir(a.work_dir)
        security = DaemonSecurity.from_args(a)
        ip = security.listen_ip(a.ip)
        authorizer = load_authorizer(a.acls)
        lock_work_dir(work_dir, "master")
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=security.interceptors(CALLERS))
        bound, token_port = security.bind(server, ip, a.port)
        host = "127.0.0.1" if ip in ("0.0.0.0", "::") else ip
        me = MasterRecord(
            master_id=self.master_id,
            address=f"{host}:{bound}",
            hostname=a.hostname,
            token_address=f"{host}:{token_port}" if token_port is not None else "",
            started_at=time.time(),
        )
        coordination = open_coordination(a, security, me) if a.etcd else None
        sole_registry = None if coordination is not None else _open_sqlite(work_dir)
        seat = _seat(me, coordination)
        _route(server, seat)
        health, http, metrics = await _watched(a, server, seat, security, authorizer, ip, me, work_dir)
        await server.start()
        if token_port is not None:
            write_atomically(work_dir / TOKEN_ADDRESS_FILE, me.token_address + "\n")
        write_atomically(work_dir / ADDRESS_FILE, me.address + "\n")
        log.info(
            "master started",
            master_id=self.master_id,
            address=me.address,
            work_dir=str(work_dir),
            allocator=a.allocator,
            token_address=me.token_address or None,
            http=http.url if http is not None else None,
            registry="etcd" if coordination else "sqlite",
            etcd=coordination.endpoints if coordination else None,
            etcd_prefix=coordination.prefix if coordination else None,
        )
        security.log_start("master", ip)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: reload_security(authorizer, security))
        terms = Terms(a, self.master_id, seat, authorizer, security, self.stopping, metrics=metrics)
        backstop: asyncio.TimerHandle | None = None
        code = 0
        try:
            async with asyncio.TaskGroup() as tg:
                if coordination is not None:
                    member = tg.create_task(coordination.election.run_member())
                    leading = tg.create_task(terms.elected(coordination))
                else:
                    assert sole_registry is not None
                    member = None
                    leading = tg.create_task(terms.sole(sole_registry))
                await race(stopping=self.stopping.wait(), terms=asyncio.shield(leading))
                log.info("master stopping")
                seat.closing = True
                backstop = loop.call_later(STOP_DEADLINE, _stuck, work_dir)
                self.stopping.set()
                code = await leading  # the term ends its streams at once, UNAVAILABLE, and writes what is left
                if member is not None:
                    member.cancel()
                await stop_serving(server, health, http, grace=1.0)
        finally:
            try:
                if coordination is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1.0):
                            await coordination.client.close()
            finally:
                _release(work_dir)
                if backstop is not None:
                    backstop.cancel()
            log.info("master stopped")
        return code


def _seat(me: MasterRecord, coordination: Coordination | None) -> Seat:
    """Where this master's calls go: its terms' servicers, or a standby's refusal naming the leader."""
    if coordination is None:
        seat = Seat(me.master_id)
        seat.masters_view = lambda: sole_master_view(me)
        return seat
    seat = Seat(me.master_id, coordination.election.leader)
    seat.masters_view = lambda: masters_view(coordination, me, lambda: seat.leading)
    return seat


def _route(server: grpc.aio.Server, seat: Seat) -> None:
    """The three services, for the master's whole life, each routed to the seat."""
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(
        routed(scheduler_pb2_grpc.SchedulerServicer, "aiomesos.v1.Scheduler", seat), server
    )
    agent_pb2_grpc.add_AgentRegistryServicer_to_server(
        routed(agent_pb2_grpc.AgentRegistryServicer, "aiomesos.v1.AgentRegistry", seat), server
    )
    operator_pb2_grpc.add_OperatorServicer_to_server(
        routed(operator_pb2_grpc.OperatorServicer, "aiomesos.v1.Operator", seat), server
    )


def _core(seat: Seat) -> Master | None:
    """The core of the term this master leads (None: a standby), for the metrics."""
    services = seat.services
    return services["aiomesos.v1.Operator"].master if services is not None else None


async def _watched(
    a: argparse.Namespace,
    server: grpc.aio.Server,
    seat: Seat,
    security: DaemonSecurity,
    authorizer: Authorizer,
    ip: str,
    me: MasterRecord,
    work_dir: Path,
) -> tuple[Health, HttpServer | None, CollectorRegistry]:
    """What lets the master be watched: gRPC health (following the seat) and reflection, the metrics' registry,
    and the HTTP port, started (before the gRPC port: a port in use fails the start with nothing to undo)."""
    health = add_health_and_reflection(server, SERVICES, serving=False)
    seat.on_change = health.set_serving
    metrics = master_registry(lambda: _core(seat), time.time, me.started_at)
    http = daemon_http_server(a, security, ip)
    if http is not None:
        _serve_http(http, seat, metrics, a.metrics_open)
        install_webui(  # the web UI (mesos_master.webui): its pages, its login page
            http.app,
            master_view(
                seat,
                authorizer,
                security.secure,
                security.client_config(),
                http.check_token,
                jobs_principals=principal_list(a.jobs_principals),
            ),
        )
        await http.start()
        write_http_address(work_dir, "master", http)
    return health, http, metrics


def _serve_http(http: HttpServer, seat: Seat, metrics: CollectorRegistry, metrics_open: bool) -> None:
    """The master's HTTP routes /metrics and /health (a standby: 503); the web UI's are installed beside them."""
    install_metrics(http, metrics, open_to_all=metrics_open)

    def serving() -> tuple[bool, str]:
        if seat.leading:
            return True, "leading"
        leader = seat.leader()
        return False, f"standby (leader: {leader.address})" if leader is not None else "standby (no leader)"

    install_health(http, serving)


def _open_sqlite(work_dir: Path) -> SQLiteRegistry:
    try:
        return SQLiteRegistry(work_dir / "registry.sqlite")
    except (RegistryError, sqlite3.Error) as e:
        raise DaemonError(f"cannot open the registry in {work_dir}: {e}") from None


def _release(work_dir: Path) -> None:
    for name in (ADDRESS_FILE, TOKEN_ADDRESS_FILE, HTTP_ADDRESS_FILE):
        with contextlib.suppress(FileNotFoundError):
            (work_dir / name).unlink()


def _stuck(work_dir: Path) -> None:
    """The stop did not end in STOP_DEADLINE seconds: a task lost its cancellation (see
    scheduler_sdk._daemon.tasks). Say which, and end the process anyway (exit status 1): a master that SIGTERM
    does not stop is worse. The registry loses nothing: every write was committed when it was applied."""
    pending = [repr(t)[:300] for t in asyncio.all_tasks() if not t.done()]
    log.error("master did not stop in time: exiting anyway", deadline_seconds=STOP_DEADLINE, pending_tasks=pending)
    with contextlib.suppress(Exception):
        _release(work_dir)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


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
