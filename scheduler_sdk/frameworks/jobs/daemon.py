"""The jobs service daemon (`aiomesos jobs serve`): wiring only. Flags, the store, the framework's driver and
placement, the Jobs gRPC server (TLS and authentication as the master's), the tick, owned by one TaskGroup;
SIGTERM or SIGINT stops it without tearing the framework down (its tasks run on; a restart resubscribes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import structlog
from prometheus_client import CollectorRegistry

from aiomesos.v1 import jobs_pb2_grpc
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.flags import (
    FlagParser,
    add_logging_flags,
    duration,
    master_spec,
    port,
)
from scheduler_sdk._daemon.grpc_health import add_health_and_reflection, stop_serving
from scheduler_sdk._daemon.guard import load_authorizer
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
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.frameworks.jobs.client import API_LABEL
from scheduler_sdk.frameworks.jobs.core import JobsCore
from scheduler_sdk.frameworks.jobs.metrics import jobs_registry
from scheduler_sdk.frameworks.jobs.placement import JobsScheduler
from scheduler_sdk.frameworks.jobs.service import CALLERS, JobsServicer
from scheduler_sdk.frameworks.jobs.store import JobStore, StoreError
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig

log = structlog.get_logger("jobs")

DEFAULT_PORT = 5060
ADDRESS_FILE = "jobs.addr"
HTTP_ADDRESS_FILE = http_address_file("jobs")
STORE_FILE = "jobs.db"
FRAMEWORK_ID = "framework_id"
TICK = 0.2  # seconds between ticks (timeouts, backoffs, cron)
CAPABILITIES = (
    rpb.FrameworkInfo.Capability.MULTI_ROLE,
    rpb.FrameworkInfo.Capability.TASK_KILLING_STATE,
    rpb.FrameworkInfo.Capability.PARTITION_AWARE,
    rpb.FrameworkInfo.Capability.GPU_RESOURCES,
)


def build_parser() -> FlagParser:
    p = FlagParser(prog="aiomesos jobs serve", description="Run the jobs service: a framework users submit jobs to.")
    p.add_flag(
        "--master",
        type=master_spec,
        required=True,
        help="the master: HOST:PORT, a comma-separated list of masters, or etcd://HOST:PORT[,HOST:PORT]/PREFIX",
    )
    p.add_flag("--work-dir", required=True, help="where the jobs store (SQLite) and the address file live")
    p.add_flag(
        "--ip",
        default=None,
        help="address to listen on (default: every address with TLS or --insecure, else loopback only)",
    )
    p.add_flag("--port", type=port, default=DEFAULT_PORT, help="port of the Jobs API (0: any free port)")
    p.add_flag("--name", default="jobs", help="the framework's name")
    p.add_flag(
        "--failover-timeout",
        type=duration,
        default=7 * 24 * 3600.0,
        help="how long the master keeps the framework's tasks running while the service is away (e.g. 1h, 7d)",
    )
    p.add_flag("--gang-hold", type=duration, default=10.0, help="longest a gang holds offers before it lets them go")
    # For tests: cron times follow the unix time written in this file (a float) instead of the real clock.
    p.add_flag("--cron-clock-file", env=False, default=None, help=argparse.SUPPRESS)
    add_security_flags(p, tokens=True, default_port=DEFAULT_PORT)
    add_http_flags(p, default_port=DEFAULT_PORT)
    p.add_flag(
        "--acls",
        default=None,
        help="authorisation rules (JSON, the master's format): which roles a caller's jobs may run in "
        "(register_frameworks) and as which users (run_tasks); reread on change (default: the master's built-in rules)",
    )
    add_logging_flags(p)
    return p


def file_clock(path: Path) -> Callable[[], float]:
    """The time written in `path` (the real time until the file has one)."""

    def now() -> float:
        with contextlib.suppress(OSError, ValueError):
            return float(path.read_text().strip())
        return time.time()

    return now


class JobsDaemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        a = self.args
        work_dir = make_work_dir(a.work_dir)
        security = DaemonSecurity.from_args(a)
        ip = security.listen_ip(a.ip)
        authorizer = load_authorizer(a.acls)
        lock_work_dir(work_dir, "jobs")
        try:
            store = JobStore(work_dir / STORE_FILE)
        except StoreError as e:
            raise DaemonError(str(e)) from None
        client_config = security.client_config(a.master) or ClientConfig(master=a.master)
        cron_clock = file_clock(Path(a.cron_clock_file)) if a.cron_clock_file else None
        core: JobsCore | None = None

        def on_update(launch: object, status: object) -> None:
            assert core is not None
            core.on_update(launch, status)  # type: ignore[arg-type]

        async def on_registered(driver: SchedulerDriver, framework_id: str, again: bool) -> None:
            assert core is not None
            if store.get_meta(FRAMEWORK_ID) != framework_id:
                store.set_meta(FRAMEWORK_ID, framework_id)
            core.reconcile(driver)
            if not again:
                driver.reconcile()  # every task the master knows of ours: one no run tracks is an orphan, killed

        def on_unknown(status: tpb.TaskStatus) -> None:
            assert core is not None
            core.orphan(status)

        def on_draining(agent_id: str) -> None:
            assert core is not None
            core.draining(agent_id)

        scheduler = JobsScheduler(
            on_update=on_update,
            on_registered=on_registered,
            on_unknown=on_unknown,
            on_draining=on_draining,
            gang_hold=a.gang_hold,
        )
        core = JobsCore(store, scheduler, cron_clock=cron_clock)
        core.load()
        operator = OperatorClient(a.master, config=client_config, timeout=3.0)
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=security.interceptors(CALLERS))
        jobs_pb2_grpc.add_JobsServicer_to_server(
            JobsServicer(core, lambda: agent_totals(operator), secure=security.secure, authorizer=authorizer), server
        )
        health = add_health_and_reflection(server, CALLERS)
        bound, token_port = security.bind(server, ip, a.port)
        host = "127.0.0.1" if ip in ("0.0.0.0", "::") else ip
        info = rpb.FrameworkInfo(
            name=a.name,
            id=store.get_meta(FRAMEWORK_ID) or "",
            roles=core.roles() or ["*"],
            failover_timeout=a.failover_timeout,
            checkpoint=True,
        )
        for cap in CAPABILITIES:
            info.capabilities.add(type=cap)
        # Where the Jobs API is, for the master's web UI (which reads jobs with the master's certificate); the
        # address its address file names (loopback when it listens everywhere, as an agent's default).
        info.labels.labels.add(key=API_LABEL, value=f"{host}:{bound}")
        driver = SchedulerDriver(a.master, info, scheduler, config=client_config)
        http = await _start_http(a, security, ip, jobs_registry(core, driver.subscribed.is_set), work_dir)
        await server.start()
        write_atomically(work_dir / ADDRESS_FILE, f"{host}:{bound}\n")
        log.info(
            "jobs service started",
            address=f"{host}:{bound}",
            token_port=token_port,
            http=http.url if http is not None else None,
            master=a.master,
            framework_id=info.id or None,
            jobs=len(core.jobs),
        )
        security.log_start("jobs service", ip)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        core.catch_up()
        try:
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(driver.run())
                placing = tg.create_task(scheduler.run(driver))
                ticking = tg.create_task(_tick(core))
                await race(stopping=self.stopping.wait(), driver=asyncio.shield(runner))
                log.info("jobs service stopping")
                placing.cancel()
                ticking.cancel()
                driver.stop(teardown=False)
                await stop_serving(server, health, http, grace=1.0)
        finally:
            with contextlib.suppress(Exception):
                await operator.close()
            store.close()
            for name in (ADDRESS_FILE, HTTP_ADDRESS_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (work_dir / name).unlink()
        log.info("jobs service stopped")
        return 0


async def _start_http(
    a: argparse.Namespace, security: DaemonSecurity, ip: str, metrics: CollectorRegistry, work_dir: Path
) -> HttpServer | None:
    """The HTTP port (/metrics, /health), started, unless `--http-port off`."""
    http = daemon_http_server(a, security, ip)
    if http is not None:
        install_metrics(http, metrics, open_to_all=a.metrics_open)
        install_health(http, lambda: (True, "ok"))
        await http.start()
        write_http_address(work_dir, "jobs", http)
    return http


async def _tick(core: JobsCore) -> None:
    while True:
        try:
            core.tick()
        except Exception:
            log.exception("tick failed")
        await asyncio.sleep(TICK)


async def agent_totals(operator: OperatorClient) -> list[dict[str, float]] | None:
    """Every agent's total resources (ports: how many), for the submit-time check; None if the master can't say."""
    try:
        agents = (await operator.agents()).agents
    except OperatorError as e:
        log.warning("cannot ask the master for its agents: the resource check is skipped", error=str(e))
        return None
    out = []
    for a in agents:
        res = Resources.from_proto(a.total)
        totals = dict(res.scalars())
        totals["ports"] = float(res.range_count("ports"))
        out.append(totals)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a bad flag: one line, exit 2
    configure_logging(args.log_level, args.log_format)
    return run_daemon("aiomesos jobs serve", "aiomesos-jobs", JobsDaemon(args).run())
