"""A cluster of hosts on one machine: a master and N agents, each in its own network namespace with its own
address on a bridge (scheduler_sdk.netns), talking over it as real hosts do: every daemon listens on its host's
address (fixed ports, as on real hosts: 5050 and 5052 for the master, 5051 for an agent), mutual TLS with
certificates whose names carry each host's address and name. Behind `deploy/netns-cluster.sh`, the e2e test
tests/e2e/test_netns.py and the autoscaler's `NetnsAgentProvider`.

`python -m scheduler_sdk.netns_cluster up N | down | partition HOST | heal HOST | status`, with `--dir` (the
cluster's work dir, where `netns-cluster.json` records what runs, so that a later `down` finds it) and `--name`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from scheduler_sdk import netns
from scheduler_sdk._daemon.flags import UsageError
from scheduler_sdk.local_cluster import CA_DIR_ENV, CLIENT_CONFIG, ClusterError, Daemon, daemon_env, leftover_cgroups
from scheduler_sdk.netns import NetnsHost, NetnsNetwork
from scheduler_sdk.operator import OperatorClient, OperatorError
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.local import LocalCertificates

__all__ = ["AGENT_PORT", "MASTER_PORT", "STATE_FILE", "TOKEN_PORT", "NetnsCluster"]

MASTER_PORT, AGENT_PORT, TOKEN_PORT = 5050, 5051, 5052
STATE_FILE = "netns-cluster.json"
MASTER_HOST = "master"


@dataclass
class NetnsCluster:
    work_dir: Path
    name: str = "am"  # the network's name: the bridge is am<name>, namespaces aiomesos-<name>-<host>
    subnet: str = ""  # "": the first free /24 of 10.231.0.0/16
    agents: int = 2
    agent_resources: str = "cpus:2;mem:1024;disk:2048;ports:[31000-32000]"
    master_flags: list[str] = field(default_factory=list)
    agent_flags: list[str] = field(default_factory=list)
    log_level: str = "info"
    ca_dir: Path | None = None  # default $AIOMESOS_CA_DIR, else WORK_DIR/certs
    network: NetnsNetwork | None = None
    hosts: dict[str, NetnsHost] = field(default_factory=dict)  # by host name, the master's first
    daemons: dict[str, Daemon] = field(default_factory=dict)  # by host name, while it runs (started here)
    pids: dict[str, int] = field(default_factory=dict)  # by host name (from the state file, too)
    certificates: LocalCertificates | None = None
    _numbers: int = 0  # host numbers handed out (never reused: no stale neighbour entries)

    # --- what clients need --------------------------------------------------------------------------------------

    @property
    def master_host(self) -> NetnsHost:
        return self.hosts[MASTER_HOST]

    @property
    def master_address(self) -> str:
        return f"{self.master_host.address}:{MASTER_PORT}" if MASTER_HOST in self.hosts else ""

    @property
    def token_address(self) -> str:
        return f"{self.master_host.address}:{TOKEN_PORT}"

    @property
    def client_config_path(self) -> Path:
        return self.work_dir / CLIENT_CONFIG

    @property
    def client_config(self) -> ClientConfig:
        return self._certificates().client_config(self.master_address)

    def agent_hosts(self) -> list[NetnsHost]:
        return [h for name, h in self.hosts.items() if name != MASTER_HOST]

    # --- up -----------------------------------------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        """The bridge, the master's host and daemon, then `agents` agent hosts; everything is taken down again
        if any of it fails."""
        network = NetnsNetwork(self.name, self.subnet or netns.free_subnet(netns.used_subnets(), self.name))
        in_use = netns.link_exists(network.bridge) or any(
            ns.startswith(network.namespace_prefix) for ns in netns.namespaces()
        )
        if in_use:  # another cluster's: neither used nor taken down
            raise ClusterError(f"network {self.name!r} is in use (bridge {network.bridge} or its namespaces exist)")
        try:
            self.network = network
            self.work_dir.mkdir(parents=True, exist_ok=True)
            # Traversable: tasks run as other users (nobody) and must reach their sandboxes in it.
            os.chmod(self.work_dir, self.work_dir.stat().st_mode & 0o7777 | 0o011)
            self._save()  # before anything exists: a `down` after a crash finds the network's name
            netns.run_all(self.network.bridge_up())
            master = self.start_master()
            # At once: the master's address is known before it serves, and agents retry until it does.
            for i in range(self.agents):
                self.add_agent_host(f"agent{i + 1}")
            await master.address(self.work_dir / MASTER_HOST / "master.addr", timeout)
            self.client_config.write(self.client_config_path)
            await self.wait_for_agents(self.agents, timeout)
        except BaseException:
            await self.stop()
            raise

    def _certificates(self) -> LocalCertificates:
        if self.certificates is None:
            env_ca = os.environ.get(CA_DIR_ENV)
            ca_dir = self.ca_dir or (Path(env_ca) if env_ca else None)
            self.certificates = LocalCertificates(self.work_dir / "certs", ca_dir)
        return self.certificates

    def _security_flags(self, host: NetnsHost, role: str) -> list[str]:
        """A certificate for ROLE/HOST valid for the host's name and address (what `aiomesos certs issue HOST
        --role ROLE --host HOST --host ADDRESS` makes), and the flags that name it."""
        certs = self._certificates()
        stem = f"{role}-{host.name}"
        cert, key = certs.directory / f"{stem}.crt", certs.directory / f"{stem}.key"
        if not (cert.exists() and key.exists()):
            certs.ca.issue(host.name, role, hosts=(host.name, host.address)).write(certs.directory, stem)
        flags = ["--ca", str(certs.ca_cert), "--cert", str(cert), "--key", str(key)]
        return flags + (["--credentials", str(certs.credentials)] if role == "master" else [])

    def _add_host(self, name: str) -> NetnsHost:
        if self.network is None:
            raise ClusterError("the cluster's network is not up")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        host = self.network.host(name, self._numbers)
        self._numbers += 1
        self.hosts[name] = host
        self._save()
        netns.run_all(self.network.host_up(host))
        return host

    def _daemon(self, host: NetnsHost, module: str, flags: list[str]) -> Daemon:
        work = self.work_dir / host.name
        argv = [
            sys.executable,
            "-m",
            module,
            *["--work-dir", str(work), "--ip", host.address, "--log-format", "json", "--log-level", self.log_level],
            *flags,
        ]
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        daemon = Daemon(host.name, host.exec_argv(argv, hostname=host.name), work, logs / f"{host.name}.log")
        daemon.start(daemon_env())
        assert daemon.process is not None
        self.daemons[host.name] = daemon
        self.pids[host.name] = daemon.process.pid
        self._save()
        return daemon

    def start_master(self) -> Daemon:
        """The master's host and daemon (it writes `master/master.addr` once it serves)."""
        host = self._add_host(MASTER_HOST)
        with contextlib.suppress(FileNotFoundError):
            (self.work_dir / host.name / "master.addr").unlink()  # an earlier run's
        flags = ["--port", str(MASTER_PORT), "--token-port", str(TOKEN_PORT), *self._security_flags(host, "master")]
        return self._daemon(host, "mesos_master", [*flags, *self.master_flags])

    def add_agent_host(self, name: str, extra_flags: list[str] | None = None) -> Daemon:
        """A new host `name` with an agent on it (reporting `name` as its hostname); returns without waiting for
        it to attach."""
        host = self._add_host(name)
        flags = [
            *["--master", self.master_address, "--port", str(AGENT_PORT), "--hostname", name],
            *["--resources", self.agent_resources, "--gpus", "none", "--registration-backoff-max", "1"],
            *self._security_flags(host, "agent"),
        ]
        return self._daemon(host, "mesos_agent", [*flags, *self.agent_flags, *(extra_flags or [])])

    def add_agent(self, index: int | None = None, extra_flags: list[str] | None = None) -> Daemon:
        """A new agent host `agent<index>` (default: the next number free), as `LocalCluster.add_agent` adds an
        agent process."""
        n = len(self.agent_hosts()) + 1 if index is None else index
        while index is None and f"agent{n}" in self.hosts:
            n += 1
        return self.add_agent_host(f"agent{n}", extra_flags)

    async def wait_for_agents(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` agents are attached and active."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OperatorError):
                async with OperatorClient(self.master_address, config=self.client_config, timeout=2.0) as client:
                    if sum(1 for a in (await client.agents()).agents if a.active) >= count:
                        return
            for d in self.daemons.values():
                if not d.alive:
                    raise ClusterError(f"{d.name} exited at start:\n{d.log_tail()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"fewer than {count} agents attached in {timeout} s")
            await asyncio.sleep(0.05)

    # --- partitions ---------------------------------------------------------------------------------------------

    def partition(self, name: str) -> None:
        """Drop every packet to and from host `name` (its daemons keep running, cut off); again: no change."""
        host = self._host(name)
        if not netns.partitioned(host):
            netns.partition(host)

    def heal(self, name: str) -> None:
        """Let host `name`'s packets through again (an error when it is not partitioned)."""
        host = self._host(name)
        if not netns.partitioned(host):
            raise netns.NetnsError(f"{name} is not partitioned")
        netns.heal(host)

    def _host(self, name: str) -> NetnsHost:
        if name not in self.hosts:
            raise ValueError(f"no host {name!r}; hosts: {', '.join(self.hosts) or 'none'}")
        return self.hosts[name]

    # --- down ---------------------------------------------------------------------------------------------------

    async def stop_host_daemon(self, name: str, timeout: float = 15.0) -> int | None:
        """Stop the daemon of host `name`: an agent for good (SIGUSR1: its tasks killed, cgroups removed), the
        master with SIGTERM; SIGKILL after `timeout`."""
        sig = signal.SIGTERM if name == MASTER_HOST else signal.SIGUSR1
        daemon = self.daemons.pop(name, None)
        pid = self.pids.pop(name, None)
        if daemon is not None:
            return await daemon.stop(timeout, sig=sig)
        host = self.hosts.get(name)
        # A pid from the state file is signalled only while it is still in its host (not reused since).
        if pid is not None and host is not None and pid in netns.namespace_pids(host.namespace):
            return await asyncio.to_thread(_stop_pid, pid, sig, timeout)
        return None

    async def remove_host(self, name: str, timeout: float = 15.0) -> list[str]:
        """Stop host `name`'s daemon, kill what is left in its namespace, remove the namespace (and so its veth
        pair) and any cgroup left; returns what had to be cleaned up by force."""
        host = self._host(name)
        problems: list[str] = []
        code = await self.stop_host_daemon(name, timeout)
        if code not in (0, None):
            problems.append(f"{name}'s daemon stopped with status {code}")
        if host.namespace in netns.namespaces():
            killed = await asyncio.to_thread(netns.kill_namespace_processes, host.namespace)
            problems.extend(f"{name}: process {pid} was left in the namespace" for pid in killed)
            netns.run_all(self.network.host_down(host) if self.network else [])
        if self.network is not None and netns.link_exists(host.veth):
            netns.run(["ip", "link", "del", host.veth], check=False)
        for path in leftover_cgroups(self.work_dir / name):
            problems.append(f"cgroup left behind: {path}")
            await asyncio.to_thread(_remove_cgroup, path)
        del self.hosts[name]
        self._save()
        return problems

    async def stop(self) -> list[str]:
        """Take everything down, agents first: daemons, namespaces, the bridge, cgroups. Returns what went wrong
        (a daemon that crashed or did not stop cleanly, processes or cgroups left behind); never raises for it."""
        problems = [
            f"{d.name} exited on its own with status {d.process.poll()}: {d.log_tail(5)}"
            for d in self.daemons.values()
            if d.process is not None and not d.alive and not d.signalled
        ]
        agents = [name for name in self.hosts if name != MASTER_HOST]
        for found in await asyncio.gather(*(self.remove_host(name) for name in agents), return_exceptions=True):
            problems.extend([f"{found}"] if isinstance(found, BaseException) else found)
        if MASTER_HOST in self.hosts:
            try:
                problems.extend(await self.remove_host(MASTER_HOST))
            except netns.NetnsError as e:
                problems.append(str(e))
        if self.network is not None:
            for ns in netns.namespaces():  # hosts a crashed run did not record
                if ns.startswith(self.network.namespace_prefix):
                    try:
                        netns.kill_namespace_processes(ns)
                    except netns.NetnsError as e:
                        problems.append(str(e))
                    netns.run(["ip", "netns", "del", ns], check=False)
                    problems.append(f"namespace {ns} was left behind")
            if netns.link_exists(self.network.bridge):
                netns.run_all(self.network.bridge_down())
        self._save()
        return problems

    # --- the state file (for `down` from another process) ------------------------------------------------------

    def _save(self) -> None:
        if self.network is None:
            return
        state = {
            "name": self.network.name,
            "subnet": self.network.subnet,
            "numbers": self._numbers,
            "master": self.master_address,
            "config": str(self.client_config_path),
            "hosts": {
                name: {"address": h.address, "namespace": h.namespace, "veth": h.veth, "pid": self.pids.get(name)}
                for name, h in self.hosts.items()
            },
        }
        (self.work_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, work_dir: Path) -> NetnsCluster:
        """The cluster `up` (or a test) recorded in `work_dir`: to partition, heal or take it down."""
        state = json.loads((work_dir / STATE_FILE).read_text())
        network = NetnsNetwork(state["name"], state["subnet"])
        cluster = cls(work_dir, name=network.name, subnet=network.subnet, network=network)
        cluster._numbers = int(state.get("numbers", 0))
        for name, h in state["hosts"].items():
            cluster.hosts[name] = NetnsHost(name, h["namespace"], h["veth"], h["address"])
            if h.get("pid"):
                cluster.pids[name] = int(h["pid"])
        return cluster

    async def __aenter__(self) -> NetnsCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _stop_pid(pid: int, sig: int, timeout: float) -> int | None:
    """Signal a process that is not our child (started by an earlier `up`) and wait for it; SIGKILL if late."""
    try:
        process = psutil.Process(pid)
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            return process.wait(5)
    except psutil.NoSuchProcess:
        return None


def _remove_cgroup(path: Path) -> None:
    """Kill what is in a cgroup tree and remove it, leaves first."""
    subs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for sub in [*subs, path]:
        with contextlib.suppress(OSError):
            for pid in (sub / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sub.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


# --- the command line (deploy/netns-cluster.sh) ---------------------------------------------------------------

DEFAULT_DIR = Path("/tmp/aiomesos-netns")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netns-cluster.sh", description="a master and N agents, each in its own network namespace"
    )
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the cluster's work dir (default: %(default)s)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the bridge, the master and N agents")
    up.add_argument("agents", type=int, help="how many agent hosts")
    up.add_argument("--name", default="am", help="network name: bridge am<NAME>, namespaces aiomesos-NAME-HOST")
    up.add_argument("--subnet", default="", help="an IPv4 /24 for the hosts (default: a free one in 10.231/16)")
    up.add_argument("--resources", default=NetnsCluster.agent_resources, help="each agent's --resources")
    up.add_argument("--master-flags", default="", help="more flags for the master, e.g. '--agent-ping-interval 1'")
    up.add_argument("--agent-flags", default="", help="more flags for every agent")
    actions.add_parser("down", help="stop everything and remove the namespaces, the bridge and cgroups")
    actions.add_parser("status", help="the hosts, their addresses and daemons")
    for name, what in (
        ("partition", "drop every packet to and from HOST"),
        ("heal", "undo a partition of HOST"),
        ("add", "a new agent host HOST"),
        ("remove", "stop HOST's agent and remove the host"),
    ):
        actions.add_parser(name, help=what).add_argument("host")
    return p


async def _main(args: argparse.Namespace) -> int:
    state = args.dir / STATE_FILE
    if args.action == "up":
        if state.exists() and NetnsCluster.load(args.dir).hosts:
            raise UsageError(f"a cluster is up in {args.dir}: `down` it first")
        if args.agents < 0 or args.agents > 200:
            raise UsageError(f"N must be from 0 to 200, not {args.agents}")
        cluster = NetnsCluster(
            args.dir,
            name=args.name,
            subnet=args.subnet,
            agents=args.agents,
            agent_resources=args.resources,
            master_flags=shlex.split(args.master_flags),
            agent_flags=shlex.split(args.agent_flags),
        )
        await cluster.start()
        _print_status(cluster)
        return 0
    if not state.exists():
        if args.action == "down":
            return 0
        raise UsageError(f"no cluster in {args.dir} (no {STATE_FILE})")
    cluster = NetnsCluster.load(args.dir)
    if args.action == "down":
        problems = await cluster.stop()
        for problem in problems:
            print(problem, file=sys.stderr)
        state.unlink()
        return 0
    if args.action == "status":
        _print_status(cluster)
    elif args.action == "add":
        cluster.add_agent_host(args.host)
        print(f"{args.host}: {cluster.hosts[args.host].address} (its agent attaches to {cluster.master_address})")
    elif args.action == "remove":
        cluster._host(args.host)
        for problem in await cluster.remove_host(args.host):
            print(problem, file=sys.stderr)
    elif args.action == "partition":
        cluster.partition(args.host)
    else:
        cluster.heal(args.host)
    return 0


def _print_status(cluster: NetnsCluster) -> None:
    assert cluster.network is not None
    print(f"bridge {cluster.network.bridge} {cluster.network.gateway}/{cluster.network.prefixlen}")
    for name, host in cluster.hosts.items():
        pid = cluster.pids.get(name)
        running = pid is not None and psutil.pid_exists(pid)
        cut = " partitioned" if host.namespace in netns.namespaces() and netns.partitioned(host) else ""
        print(f"{name:12} {host.address:15} {host.namespace:28} pid {pid if running else '-'}{cut}")
    print(f"export AIOMESOS_CONFIG={cluster.client_config_path}   # master {cluster.master_address}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise UsageError("network namespaces need root (CAP_NET_ADMIN)")
        missing = netns.missing_tools()
        if missing:
            raise UsageError(missing)
        return asyncio.run(_main(args))
    except (UsageError, ValueError, ClusterError, netns.NetnsError) as e:
        print(f"netns-cluster: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
