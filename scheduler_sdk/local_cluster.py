"""A whole cluster on this machine: one master (or several on a local etcd, `masters=3`) and N agents as real
processes, each with its own work dir. Behind `aiomesos cluster up`, `make run`, the end-to-end tests and the
benchmarks.

Secure unless told otherwise (`secure=False`): the cluster makes its own CA (or uses `ca_dir`, default
$AIOMESOS_CA_DIR), certificates for every daemon and an operator, and writes `WORK_DIR/aiomesos.toml`, the client
config for the CLI and the SDK (`export AIOMESOS_CONFIG=WORK_DIR/aiomesos.toml`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scheduler_sdk._daemon.http import http_address_file
from scheduler_sdk.local_etcd import LocalEtcd
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.local import LocalCertificates

CA_DIR_ENV = "AIOMESOS_CA_DIR"
CLIENT_CONFIG = "aiomesos.toml"

CGROUP_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
SIGTERM, SIGUSR1 = signal.SIGTERM, signal.SIGUSR1  # Daemon.signal() shadows the module in its class body


class ClusterError(RuntimeError):
    pass


@dataclass(eq=False)  # a running process: identity, not value
class Daemon:
    name: str
    argv: list[str]
    work_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # Set once we signal it: an exit without that is a crash.
    signalled: bool = False

    def start(self, env: dict[str, str]) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child from here on
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        self.signalled = True
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    async def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return None if self.process is None else self.process.poll()

    async def stop(self, timeout: float = 15.0, sig: int = SIGTERM) -> int | None:
        """`sig` (SIGTERM), then SIGKILL when it does not end within `timeout`."""
        self.signal(sig)
        code = await self.wait(timeout)
        if self.alive:
            self.signal(signal.SIGKILL)
            code = await self.wait(5.0)
        return code

    async def address(self, addr_file: Path, timeout: float) -> str:
        """The address the daemon writes to `addr_file` once it serves (ClusterError if it exits or is late)."""
        deadline = time.monotonic() + timeout
        while not addr_file.exists():
            if not self.alive:
                raise ClusterError(f"{self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name} did not start in time")
            await asyncio.sleep(0.02)
        return addr_file.read_text().strip()

    def http_url(self, kind: str) -> str:
        """The URL of its HTTP port (https://127.0.0.1:PORT when secure), "" while it has none."""
        with contextlib.suppress(OSError):
            return (self.work_dir / http_address_file(kind)).read_text().strip()
        return ""

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _port_of(url: str) -> int:
    """The port of a daemon's HTTP URL (0, any free one, when it has none yet)."""
    return int(url.rsplit(":", 1)[1]) if url else 0


def agent_cgroup_root(work_dir: Path) -> str:
    """The cgroup hierarchy name an agent with this work dir uses (see mesos_agent.daemon)."""
    return "aiomesos/" + hashlib.sha1(str(work_dir.resolve()).encode()).hexdigest()[:12]


def leftover_cgroups(work_dir: Path) -> list[Path]:
    root = agent_cgroup_root(work_dir)
    found: list[Path] = []
    for mount in CGROUP_MOUNTS:
        if not mount.is_dir():
            continue
        candidates = [mount / root] + [d / root for d in mount.iterdir() if d.is_dir() and not d.is_symlink()]
        found.extend(c for c in candidates if c.is_dir())
    return found


_PORTS = re.compile(r"ports:\[(\d+)-(\d+)\]")


def daemon_env() -> dict[str, str]:
    """The environment a local daemon starts with: this one without AIOMESOS_* (its flags are all on its command
    line), unbuffered so that its log is whole when it dies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOMESOS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def agent_ports(resources: str, index: int, agents: int) -> str:
    """`resources` with agent `index`'s own slice of its `ports:[a-b]` range (of `agents` equal slices; agents
    added beyond them wrap round). Agents on one host share its ports: two tasks on two local agents must never be
    given the same port, and an agent's health check on 127.0.0.1 must reach its own task."""
    found = _PORTS.search(resources)
    if found is None or agents < 2:
        return resources
    first, last = int(found.group(1)), int(found.group(2))
    width = (last - first + 1) // agents
    if width < 1:
        return resources
    begin = first + (index % agents) * width
    return resources[: found.start()] + f"ports:[{begin}-{begin + width - 1}]" + resources[found.end() :]


@dataclass
class LocalCluster:
    work_dir: Path
    agents: int = 2
    agent_resources: str = "cpus:2;mem:1024;disk:2048;ports:[31000-32000]"
    master_flags: list[str] = field(default_factory=list)
    agent_flags: list[str] = field(default_factory=list)
    log_level: str = "info"
    # Agents on one host would all claim its GPUs, and GPU agents are offered only to GPU_RESOURCES frameworks:
    # a local cluster uses GPUs only when asked to.
    gpus: bool = False
    secure: bool = True
    ca_dir: Path | None = None  # where the CA is (or is made); default $AIOMESOS_CA_DIR, else WORK_DIR/certs
    # More than one: that many masters elect a leader on a local etcd (its own process, TLS when secure), with
    # the registry there; agents and clients find the leader through etcd (master_address is the etcd:// URL).
    masters: int = 1
    etcd_lease: str = "2s"
    # The jobs service (`aiomesos jobs serve`), a framework users submit job specs to: started after the agents.
    jobs: bool = False
    jobs_flags: list[str] = field(default_factory=list)
    jobs_daemon: Daemon | None = None
    jobs_address: str = ""
    _jobs_http_port: int = 0  # kept across restarts, as its gRPC port is
    master: Daemon | None = None  # the first master (the only one unless masters > 1)
    master_daemons: list[Daemon] = field(default_factory=list)
    agent_daemons: list[Daemon] = field(default_factory=list)
    etcd: LocalEtcd | None = None
    master_address: str = ""
    master_addresses: list[str] = field(default_factory=list)  # each master's own host:port, by index
    _etcd_urls: dict[int, str] = field(default_factory=dict)  # a master that reaches etcd another way
    token_address: str = ""  # the master's port for bearer tokens (secure clusters)
    certificates: LocalCertificates | None = None

    @property
    def master_http_url(self) -> str:
        """The first master's HTTP port (/metrics, /health, the web UI): https://127.0.0.1:PORT when secure."""
        return self.master.http_url("master") if self.master is not None else ""

    @property
    def master_http_urls(self) -> list[str]:
        return [d.http_url("master") for d in self.master_daemons]

    @property
    def agent_http_urls(self) -> list[str]:
        """Each agent's HTTP port, by index ("" for one that has not started serving yet)."""
        return [d.http_url("agent") for d in self.agent_daemons]

    @property
    def jobs_http_url(self) -> str:
        return self.jobs_daemon.http_url("jobs") if self.jobs_daemon is not None else ""

    async def wait_for_http(self, timeout: float = 30.0) -> None:
        """Until every daemon's HTTP port is known (agents write theirs as they start serving)."""
        deadline = time.monotonic() + timeout
        while not all([self.master_http_url, *self.agent_http_urls, *([self.jobs_http_url] if self.jobs else [])]):
            if time.monotonic() > deadline:
                raise ClusterError(f"not every daemon serves HTTP after {timeout} s")
            await asyncio.sleep(0.05)

    @property
    def client_config_path(self) -> Path:
        return self.work_dir / CLIENT_CONFIG

    @property
    def client_config(self) -> ClientConfig:
        """An operator's config for this cluster (plaintext, `ClientConfig(master)`, when not secure)."""
        if self.certificates is None:
            return ClientConfig(master=self.master_address, jobs=self.jobs_address)
        return dataclasses.replace(self.certificates.client_config(self.master_address), jobs=self.jobs_address)

    def _security_flags(self, name: str, role: str) -> list[str]:
        if not self.secure:
            return []
        if self.certificates is None:
            env_ca = os.environ.get(CA_DIR_ENV)
            ca_dir = self.ca_dir or (Path(env_ca) if env_ca else None)
            self.certificates = LocalCertificates(self.work_dir / "certs", ca_dir)
        return self.certificates.daemon_flags(name, role)

    def _local_flags(self, work_dir: Path, port: int | str, http_port: int | str = 0) -> list[str]:
        """What every daemon of a local cluster is given: its work dir, its ports (the HTTP port given, so that
        a restart keeps it), loopback, JSON logs."""
        return [
            "--work-dir",
            str(work_dir),
            "--port",
            str(port),
            "--http-port",
            str(http_port),
            "--ip",
            "127.0.0.1",
            "--log-format",
            "json",
            "--log-level",
            self.log_level,
        ]

    def _logs(self) -> Path:
        path = self.work_dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def start(self, timeout: float = 30.0) -> None:
        """Start the master and the agents; if any of them fails to start, stop what did start and raise."""
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            # Traversable (not listable): tasks run as other users (nobody) and must reach their sandboxes in it
            # (a work dir from mkdtemp is 0700).
            os.chmod(self.work_dir, self.work_dir.stat().st_mode & 0o7777 | 0o011)
            if self.masters > 1:
                await self.start_etcd()
                # At once: each waits only for its own address file (they are in master_daemons in index order).
                await asyncio.gather(*(self.start_master(timeout, index=i) for i in range(self.masters)))
                await self.wait_for_leader(timeout)
            else:
                await self.start_master(timeout)
            for i in range(self.agents):
                self.add_agent(i)
            await self.wait_for_agents(self.agents, timeout)
            if self.jobs:
                await self.start_jobs(timeout)
        except BaseException:
            await self.stop()
            raise

    async def start_etcd(self) -> None:
        """A local etcd for the masters (TLS and client certificates when the cluster is secure)."""
        if self.secure:
            self._security_flags("master", "master")  # makes the certificates
        self.etcd = LocalEtcd(self.work_dir / "etcd", self.certificates if self.secure else None)
        await asyncio.to_thread(self.etcd.start)
        # Clients name etcd as etcd://, TLS or not as their own config is (the masters get etcd's own URL).
        self.master_address = f"etcd://{','.join(self.etcd.endpoints)}{self.etcd.prefix}"

    async def restart_master(self, timeout: float = 30.0, index: int = 0, etcd_url: str | None = None) -> None:
        """Stop a master and start it again with the same work dir, on the same port (and, with `etcd_url`, reaching
        etcd there from now on: through a proxy a test can cut)."""
        if etcd_url is not None:
            self._etcd_urls[index] = etcd_url
        daemon = self.master_daemons[index]
        http_port = _port_of(daemon.http_url("master"))
        await daemon.stop()
        address = self.master_addresses[index]
        token_port = int(self.token_address.rsplit(":", 1)[1]) if self.token_address and index == 0 else 0
        await self.start_master(
            timeout, port=int(address.rsplit(":", 1)[1]), token_port=token_port, index=index, http_port=http_port
        )

    def master_index(self, address: str) -> int:
        return self.master_addresses.index(address)

    async def leader_index(self, timeout: float = 30.0) -> int:
        """Which master leads now (waiting for one to be elected)."""
        return self.master_index(await self.wait_for_leader(timeout))

    async def wait_for_leader(self, timeout: float = 30.0, not_at: str = "") -> str:
        """The address of the leading master once one (other than `not_at`) is elected and serving."""
        deadline = time.monotonic() + timeout
        while True:
            for address in self.master_addresses:
                if not address or address == not_at:
                    continue
                with contextlib.suppress(OperatorError):
                    async with OperatorClient(address, config=self.client_config, timeout=2.0) as client:
                        masters = await client.masters()
                        me = next((m for m in masters.masters if m.address == address), None)
                        if me is not None and me.leader:
                            return address
            if time.monotonic() > deadline:
                raise ClusterError(f"no master was elected in {timeout} s")
            await asyncio.sleep(0.05)

    async def start_master(
        self, timeout: float = 30.0, port: int = 0, token_port: int = 0, index: int = 0, http_port: int = 0
    ) -> None:
        name = "master" if self.masters == 1 else f"master{index}"
        master_dir = self.work_dir / name
        addr_file = master_dir / "master.addr"
        token_file = master_dir / "master.token.addr"
        with contextlib.suppress(FileNotFoundError):
            addr_file.unlink()
        etcd_flags: list[str] = []
        if self.etcd is not None:
            etcd_flags = ["--etcd", self._etcd_urls.get(index, self.etcd.url), "--etcd-lease", self.etcd_lease]
            if not self.secure:
                etcd_flags.append("--insecure")
        daemon = Daemon(
            name,
            [
                sys.executable,
                "-m",
                "mesos_master",
                *self._local_flags(master_dir, port, http_port),
                *self._security_flags("master", "master"),
                *(["--token-port", str(token_port)] if self.secure else []),
                *etcd_flags,
                *self.master_flags,
            ],
            master_dir,
            self._logs() / f"{name}.log",
        )
        if index < len(self.master_daemons):
            self.master_daemons[index] = daemon
        else:
            self.master_daemons.append(daemon)
            self.master_addresses.append("")
        if index == 0:
            self.master = daemon
        daemon.start(daemon_env())
        self.master_addresses[index] = await daemon.address(addr_file, timeout)
        if self.etcd is None:
            self.master_address = self.master_addresses[index]
        if index == 0:
            self.token_address = token_file.read_text().strip() if token_file.exists() else ""
        if self.certificates is not None:
            self.client_config.write(self.client_config_path)

    async def start_jobs(self, timeout: float = 30.0, extra_flags: list[str] | None = None) -> None:
        """Start the jobs service (again: same work dir, same port), and wait until it serves."""
        work = self.work_dir / "jobs"
        addr_file = work / "jobs.addr"
        with contextlib.suppress(FileNotFoundError):
            addr_file.unlink()
        port = self.jobs_address.rsplit(":", 1)[1] if self.jobs_address else "0"
        http_port = self._jobs_http_port
        daemon = Daemon(
            "jobs",
            [
                sys.executable,
                "-m",
                "scheduler_sdk.frameworks.jobs",
                "--master",
                self.master_address,
                *self._local_flags(work, port, http_port),
                *self._security_flags("jobs", "framework"),
                *self.jobs_flags,
                *(extra_flags or []),
            ],
            work,
            self._logs() / "jobs.log",
        )
        self.jobs_daemon = daemon
        daemon.start(daemon_env())
        self.jobs_address = await daemon.address(addr_file, timeout)
        self._jobs_http_port = _port_of(daemon.http_url("jobs"))
        if self.certificates is not None:
            self.client_config.write(self.client_config_path)

    def add_agent(self, index: int | None = None, extra_flags: list[str] | None = None) -> Daemon:
        i = len(self.agent_daemons) if index is None else index
        work = self.work_dir / f"agent{i}"
        daemon = Daemon(
            f"agent{i}",
            [
                sys.executable,
                "-m",
                "mesos_agent",
                "--master",
                self.master_address,
                "--work-dir",
                str(work),
                "--port",
                "0",
                "--http-port",
                "0",
                "--ip",
                "127.0.0.1",
                "--hostname",
                f"agent{i}.local",
                "--resources",
                agent_ports(self.agent_resources, i, self.agents),
                "--log-format",
                "json",
                "--log-level",
                self.log_level,
                "--registration-backoff-max",
                "2",
                "--gpus",
                "auto" if self.gpus else "none",
                *self._security_flags(f"agent{i}.local", "agent"),
                *self.agent_flags,
                *(extra_flags or []),
            ],
            work,
            self._logs() / f"agent{i}.log",
        )
        daemon.start(daemon_env())
        if index is not None and index < len(self.agent_daemons):
            self.agent_daemons[index] = daemon
        else:
            self.agent_daemons.append(daemon)
        return daemon

    async def wait_for_agents(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` agents are attached (to the leader, when there are several masters)."""
        deadline = time.monotonic() + timeout
        while True:
            address = self.master_address
            if self.etcd is not None:
                address = await self.wait_for_leader(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(OperatorError):
                async with OperatorClient(address, config=self.client_config, timeout=2.0) as client:
                    agents = (await client.agents()).agents
                    if sum(1 for a in agents if a.active) >= count:
                        return
            for d in self.agent_daemons:
                if d.process is not None and d.process.poll() not in (None, 0):
                    raise ClusterError(f"{d.name} exited at start:\n{d.log_tail()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"fewer than {count} agents attached in {timeout} s")
            await asyncio.sleep(0.05)

    async def stop(self) -> list[str]:
        """Stop every daemon (agents first) and return what went wrong, if anything: a daemon that exited on its
        own (crashed) or did not stop cleanly, and cgroups left behind. Agents get SIGUSR1: they shut down for
        good, killing checkpointed tasks too."""
        problems = [
            f"{d.name} exited on its own with status {d.process.poll()}: {d.log_tail(5)}"
            for d in self.daemons()
            if d.process is not None and not d.alive and not d.signalled
        ]
        running = [d for d in self.daemons() if d.alive]
        codes: dict[Daemon, int | None] = {}
        if self.jobs_daemon is not None and self.jobs_daemon.alive:  # first: it is a framework of the cluster
            codes[self.jobs_daemon] = await self.jobs_daemon.stop()
        agents = [d for d in self.agent_daemons if d.alive]
        codes.update(zip(agents, await asyncio.gather(*(d.stop(sig=SIGUSR1) for d in agents)), strict=True))
        masters = [d for d in self.master_daemons if d.alive]
        codes.update(zip(masters, await asyncio.gather(*(d.stop() for d in masters)), strict=True))
        if self.etcd is not None:
            await asyncio.to_thread(self.etcd.stop)
        problems.extend(
            f"{d.name} stopped with status {codes[d]}: {d.log_tail(5)}" for d in running if codes.get(d) != 0
        )
        for d in self.agent_daemons:
            problems.extend(f"cgroup left behind: {p}" for p in leftover_cgroups(d.work_dir))
        return problems

    def daemons(self) -> list[Daemon]:
        jobs = [self.jobs_daemon] if self.jobs_daemon is not None else []
        return list(self.master_daemons) + list(self.agent_daemons) + jobs

    async def __aenter__(self) -> LocalCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
