"""The agent daemon: wiring only. Flags, resources, the containerizer, the agent's API server and the link
to the master, owned by one TaskGroup; SIGTERM or SIGINT kills the tasks, reports them and cleans up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import signal
import socket
import sys
from pathlib import Path

import grpc
import structlog

from aiomesos.v1 import agent_pb2_grpc
from aiomesos.v1 import resources_pb2 as rpb
from mesos_agent.agent import Agent
from mesos_agent.api import AgentService
from mesos_agent.containerizer import CGROUPS_PARENTS, Containerizer
from mesos_agent.gc import SandboxGC, fraction
from mesos_agent.gpus import Gpu, GpuAllocator, detect_gpus
from mesos_agent.master_link import MasterLink, RejectedByMaster
from mesos_agent.metrics import AgentMetrics, agent_registry
from mesos_agent.resources import agent_resources, format_attributes, parse_attributes
from mesos_agent.sandbox import secure_work_dir
from mesos_agent.users import DEFAULT_USER, UserPolicy
from scheduler_sdk import __version__
from scheduler_sdk._daemon.flags import (
    FlagParser,
    add_logging_flags,
    master_spec,
    non_negative_duration,
    port,
    positive_float,
)
from scheduler_sdk._daemon.grpc_health import add_health_and_reflection, stop_serving
from scheduler_sdk._daemon.guard import READERS, Guard, load_authorizer
from scheduler_sdk._daemon.http import add_http_flags, daemon_http_server, http_address_file, write_http_address
from scheduler_sdk._daemon.logs import configure_logging
from scheduler_sdk._daemon.process import DaemonError, lock_work_dir, make_work_dir, run_daemon, write_atomically
from scheduler_sdk._daemon.prometheus import install_health, install_metrics
from scheduler_sdk._daemon.security import DaemonSecurity, add_security_flags
from scheduler_sdk.channels import SERVER_OPTIONS
from scheduler_sdk.resources import Resources

log = structlog.get_logger("mesos_agent")
ADDRESS_FILE = "agent.addr"
HTTP_ADDRESS_FILE = http_address_file("agent")
#: Who may call the agent's API at all (reading a sandbox then needs the access_sandboxes ACL or to own it).
CALLERS = {"aiomesos.v1.Agent": READERS}


def build_parser() -> FlagParser:
    p = FlagParser(prog="aiomesos agent", description="Run an aiomesos agent on this host.")
    p.add_flag(
        "--master",
        type=master_spec,
        required=True,
        help="the master: HOST:PORT, a comma-separated list of masters, or etcd://HOST:PORT[,HOST:PORT]/PREFIX "
        "(etcd is read with the agent's --ca/--cert/--key)",
    )
    p.add_flag("--work-dir", required=True, help="where sandboxes and the agent's own state live")
    p.add_flag(
        "--ip",
        default=None,
        help="address the agent's API listens on (default: every address with TLS or --insecure, else loopback)",
    )
    p.add_flag("--port", type=port, default=5051, help="port of the agent's API (0: any free port)")
    p.add_flag("--advertise-ip", default=None, help="address the master gives out for this agent")
    p.add_flag("--hostname", default=socket.gethostname(), help="hostname the agent reports")
    p.add_flag(
        "--resources",
        default=None,
        help='resources to offer, e.g. "cpus:4;mem:2048;disk:10000;ports:[31000-32000]"; what is left out is detected',
    )
    p.add_flag("--attributes", default=None, help='host attributes, e.g. "zone:a;rack:r1"')
    p.add_flag(
        "--isolation",
        default="auto",
        help="isolators: auto (all the host supports), posix, or a list like cgroups/cpu,cgroups/mem,cgroups/pids",
    )
    p.add_flag(
        "--cgroups-parent",
        default="auto",
        choices=CGROUPS_PARENTS,
        help="where task cgroups go on cgroup v2: own (under the agent's own cgroup, delegated to it; the agent "
        "moves into its agent/ leaf), root (under the hierarchy's root), auto (own under systemd's Delegate=yes "
        "with DelegateSubgroup=agent, else root)",
    )
    p.add_flag("--no-cgroups-cfs", action="store_true", help="no CFS quota: cpus only set cpu shares")
    p.add_flag(
        "--enforce-disk", action="store_true", help="kill a task whose sandbox grows past its disk (else: report)"
    )
    p.add_flag(
        "--default-user",
        default=DEFAULT_USER,
        help="the user a task runs as when neither its command nor its framework names one (agent run as root)",
    )
    p.add_flag("--allow-root-tasks", action="store_true", help="let tasks run as root (uid 0); refused otherwise")
    p.add_flag(
        "--disk-poll-interval",
        type=positive_float,
        default=15.0,
        help="seconds between measurements of each sandbox by the disk/du isolator",
    )
    p.add_flag(
        "--gpus",
        default="auto",
        choices=["auto", "none"],
        help="auto: offer the NVIDIA GPUs nvidia-smi finds (to GPU_RESOURCES frameworks only)",
    )
    p.add_flag("--max-task-processes", type=int, default=4096, help="pids limit per task")
    p.add_flag(
        "--status-update-retry-min",
        type=positive_float,
        default=10.0,
        help="seconds before an unacknowledged status update is first resent (doubling after)",
    )
    p.add_flag("--status-update-retry-max", type=positive_float, default=600.0, help="longest wait between resends")
    p.add_flag(
        "--shutdown-grace-period",
        type=positive_float,
        default=10.0,
        help="when the agent stops, the longest any task's kill grace period may run",
    )
    p.add_flag(
        "--gc-delay",
        type=non_negative_duration,
        default="1w",
        help="how long a finished task's sandbox is kept (3600, 30m, 12h, 7d, 1w); sooner when the disk fills",
    )
    p.add_flag(
        "--gc-disk-watermark",
        type=fraction,
        default=0.9,
        help="above this fraction of the disk in use, remove finished sandboxes oldest first",
    )
    p.add_flag("--gc-interval", type=positive_float, default=60.0, help="seconds between sandbox collections")
    p.add_flag(
        "--registration-backoff-max",
        type=positive_float,
        default=30.0,
        help="longest wait between attempts to attach to the master",
    )
    add_security_flags(p, tokens=False)
    add_http_flags(p, default_port=5051)
    p.add_flag(
        "--acls",
        default=None,
        help="who may read which sandboxes (JSON, Mesos' ACL format, access_sandboxes); reread on change "
        "(default: operators read every sandbox, a framework its own)",
    )
    add_logging_flags(p)
    return p


def boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return "unknown"


class AgentDaemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stopping = asyncio.Event()
        # SIGTERM/SIGINT: stop, leaving the tasks of checkpointing frameworks to the next agent process.
        # SIGUSR1: shut down for good, killing every task (as a Mesos agent does on SIGUSR1).
        self.full_stop = False

    def _full_stop(self) -> None:
        self.full_stop = True
        self.stopping.set()

    async def run(self) -> int:
        a = self.args
        work_dir = make_work_dir(a.work_dir)
        # Before anything touches the work dir's tasks: a second agent here would take them from the first.
        lock_work_dir(work_dir, "agent")
        security = DaemonSecurity.from_args(a)
        self.ip = ip = security.listen_ip(a.ip)
        authorizer = load_authorizer(a.acls)
        self.users = UserPolicy(a.default_user, allow_root=a.allow_root_tasks)
        self._secure(work_dir)
        # Listen before the containerizer takes its cgroups, so a port in use leaves nothing behind.
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=security.interceptors(CALLERS))
        bound, _ = security.bind(server, ip, a.port)
        self.security, self.guard = security, Guard(authorizer, secure=security.secure)
        self.metrics = AgentMetrics()
        self.http = daemon_http_server(a, security, ip)
        if self.http is not None:
            install_metrics(
                self.http, agent_registry(self.metrics), open_to_all=a.metrics_open, prepare=self.metrics.refresh
            )
            install_health(self.http, lambda: (True, "ok"))
            await self.http.start()
        gpus = detect_gpus() if a.gpus == "auto" else []
        resources = agent_resources(a.resources, work_dir)
        if gpus and "gpus" not in resources.names():
            resources = resources + Resources.of(gpus=len(gpus))
        attributes = parse_attributes(a.attributes)
        root = "aiomesos/" + hashlib.sha1(str(work_dir).encode()).hexdigest()[:12]
        containerizer = Containerizer(
            root,
            isolation=a.isolation,
            cgroups_parent=a.cgroups_parent,
            enable_cfs=not a.no_cgroups_cfs,
            max_task_processes=a.max_task_processes,
            runtime_dir=work_dir / "runtime",
            enforce_disk=a.enforce_disk,
            disk_poll_interval=a.disk_poll_interval,
            gpus=gpus,
        )
        if containerizer.warning:
            log.warning(containerizer.warning)

        try:
            return await self._serve(a, work_dir, server, bound, containerizer, resources, attributes, gpus)
        except BaseException:
            if self.http is not None:
                await self.http.stop()
            # A start that failed half way (or a crash) must not leave the containerizer's cgroups behind; tasks it
            # re-adopted run on, for the next agent process.
            if not containerizer.closed:
                if containerizer.containers():
                    await containerizer.detach()
                else:
                    await containerizer.shutdown()
            raise

    def _secure(self, work_dir: Path) -> None:
        """The task users' policy checked, the work dir's modes set (`mesos_agent.sandbox.secure_work_dir`)."""
        problem = self.users.check()
        if problem is not None:
            raise ValueError(problem)
        try:
            closed = secure_work_dir(work_dir)
        except OSError as e:
            raise DaemonError(f"cannot prepare work dir {work_dir}: {e}") from None
        if self.users.switches and closed:
            log.warning(
                "tasks running as other users cannot reach their sandboxes by path: a directory above the work dir "
                "is not traversable by them (chmod o+x it)",
                directories=[str(p) for p in closed],
            )
        if self.users.allow_root:
            log.warning("tasks may run as root (--allow-root-tasks)")

    async def _serve(
        self,
        a: argparse.Namespace,
        work_dir: Path,
        server: grpc.aio.Server,
        bound: int,
        containerizer: Containerizer,
        resources: Resources,
        attributes: list[rpb.Attribute],
        gpus: list[Gpu],
    ) -> int:
        advertise = a.advertise_ip or ("127.0.0.1" if self.ip in ("0.0.0.0", "::") else self.ip)
        info = rpb.AgentInfo(
            hostname=a.hostname,
            address=f"{advertise}:{bound}",
            resources=resources.to_proto(),
            attributes=attributes,
        )
        code = 0
        async with asyncio.TaskGroup() as tg:
            containerizer.set_spawn(tg.create_task)  # its pollers belong to this group too
            agent = Agent(
                work_dir,
                info,
                containerizer,
                spawn=tg.create_task,
                retry_min=a.status_update_retry_min,
                retry_max=a.status_update_retry_max,
                gpus=GpuAllocator([g.index for g in gpus]) if gpus else None,
                users=self.users,
            )
            link = MasterLink(
                a.master,
                agent,
                boot_id=boot_id(),
                version=__version__,
                backoff_max=a.registration_backoff_max,
                config=self.security.client_config(a.master),
            )
            await self._start(a, work_dir, server, agent, link, containerizer)
            gc = SandboxGC(
                work_dir,
                lambda: agent.agent_id,
                delay_seconds=a.gc_delay,
                disk_watermark=a.gc_disk_watermark,
                live_sandboxes=agent.live_sandboxes,
            )
            gc_task = tg.create_task(gc.run(a.gc_interval))
            link_task = tg.create_task(_until_rejected(link))
            retries = tg.create_task(agent.retry_loop())
            stop = tg.create_task(self.stopping.wait())
            await asyncio.wait([link_task, stop], return_when=asyncio.FIRST_COMPLETED)
            rejected = link_task.result() if link_task.done() else None
            if rejected is not None:
                print(f"aiomesos agent: error: the master rejected this agent: {rejected}", file=sys.stderr)
                code = 2
            await self._stop(agent, link, containerizer, server)
            for task in (link_task, retries, stop, gc_task):
                task.cancel()
        for name in (ADDRESS_FILE, HTTP_ADDRESS_FILE):
            with contextlib.suppress(FileNotFoundError):
                (work_dir / name).unlink()
        log.info("agent stopped")
        return code

    async def _start(
        self,
        a: argparse.Namespace,
        work_dir: Path,
        server: grpc.aio.Server,
        agent: Agent,
        link: MasterLink,
        containerizer: Containerizer,
    ) -> None:
        """Recover what a previous agent process left, then serve and say so."""
        kept = await agent.recover(boot_id())
        orphans = containerizer.cleanup_orphans(keep=kept)
        if orphans:
            log.warning("killed the tasks a previous agent process left behind", containers=orphans)
        agent_pb2_grpc.add_AgentServicer_to_server(AgentService(agent, link, self.guard), server)
        self.health = add_health_and_reflection(server, CALLERS)
        self.metrics.attach(agent, link.connected.is_set)
        await server.start()
        if self.http is not None:
            write_http_address(work_dir, "agent", self.http)
        write_atomically(work_dir / ADDRESS_FILE, agent.info.address + "\n")  # a reader never sees it half written
        self.security.log_start("agent", self.ip)
        log.info(
            "agent started",
            address=agent.info.address,
            master=a.master,
            resources=str(Resources.from_proto(agent.info.resources)),
            attributes=format_attributes(list(agent.info.attributes)),
            isolators=containerizer.isolators,
            cgroups=containerizer.cgroups_version,
            cgroup_dirs=containerizer.cgroup_dirs,
            http=self.http.url if self.http is not None else None,
            agent_id=agent.agent_id or None,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, self._full_stop)

    async def _stop(
        self, agent: Agent, link: MasterLink, containerizer: Containerizer, server: grpc.aio.Server
    ) -> None:
        """Stop the tasks (or leave checkpointed ones running), deliver the last updates, release the host."""
        a = self.args
        log.info("agent stopping", keep_checkpointed_tasks=not self.full_stop)
        await agent.shutdown(a.shutdown_grace_period, keep_checkpointed=not self.full_stop)
        # Give the link a moment to deliver the last updates.
        if link.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_drained(link), 2.0)
        if not self.full_stop and agent.has_live_checkpointed_tasks():
            await containerizer.detach()  # checkpointed tasks run on, for the next agent process
        else:
            await containerizer.shutdown()  # nothing is left behind: no process, no cgroup
        agent.close()
        await stop_serving(server, self.health, self.http, grace=0.5)


async def _drained(link: MasterLink) -> None:
    while link.queued():
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)


async def _until_rejected(link: MasterLink) -> RejectedByMaster | None:
    """The link, run until the master rejects this agent for good (returned, not raised: raised, it would end the
    daemon's TaskGroup before the agent stops cleanly)."""
    try:
        await link.run()
    except RejectedByMaster as e:
        return e
    return None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    # ResourcesError is a ValueError: bad --resources, bad --attributes, a bad value found at start.
    raise SystemExit(
        run_daemon("aiomesos agent", "aiomesos-agent", AgentDaemon(args).run(), usage_errors=(ValueError,))
    )


if __name__ == "__main__":
    main()
