"""Hosts as Linux network namespaces on one bridge: each host its own namespace (`ip netns`), its own address on
the bridge (a veth pair, `eth0` inside), reachable from the machine itself at the bridge's address; a partition
is an nftables table in the host's namespace that drops everything to it and refuses everything from it but
loopback's; healing deletes it.

The commands are built by pure functions (argv lists, tested as such) and run by `run`; `NetnsCluster`
(scheduler_sdk.netns_cluster) and `deploy/netns-cluster.sh` use them. Needs root (CAP_NET_ADMIN) and the
`ip` (iproute2) and `nft` (nftables) commands; `available()` says whether this machine allows it."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "NetnsError",
    "NetnsHost",
    "NetnsNetwork",
    "available",
    "free_subnet",
    "run",
]

NAME = re.compile(r"[a-z][a-z0-9]{0,7}")  # a network's name: interface names carry it (15 characters at most)
HOST_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
PARTITION_TABLE = "aiomesos_partition"
# Packets to the host are dropped: the others see silence. The host's own are refused on the spot (a reset for
# TCP, else an ICMP error, both delivered through loopback), as a host whose link went down learns at once: its
# reconnection attempts fail fast, instead of each hanging on a dropped SYN until well after the heal.
PARTITION_RULES = f"""table inet {PARTITION_TABLE} {{
  chain input {{ type filter hook input priority -10; policy drop; iifname "lo" accept; }}
  chain output {{
    type filter hook output priority -10; policy drop;
    oifname "lo" accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx admin-prohibited
  }}
}}
"""
SUBNET_BASE = ipaddress.IPv4Network("10.231.0.0/16")  # free_subnet picks a /24 in it


class NetnsError(RuntimeError):
    pass


@dataclass(frozen=True)
class NetnsHost:
    """One host: namespace `namespace`, address `address` on its network's bridge through veth `veth`."""

    name: str
    namespace: str
    veth: str
    address: str

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.namespace}"

    def exec_argv(self, argv: Sequence[str], hostname: str | None = None) -> list[str]:
        """`argv` run inside this host: its network namespace, and (with `hostname`) a UTS namespace of its own
        with that host name, so that `hostname` in a task says which host it runs on. Only the network and UTS
        namespaces change: the cgroup file system and everything else are the machine's."""
        enter = ["nsenter", f"--net={self.netns_path}", "--"]
        if hostname is None:
            return [*enter, *argv]
        return [*enter, "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]


@dataclass(frozen=True)
class NetnsNetwork:
    """A bridge `am<name>` with the machine at the subnet's first address; host n (0: the master's, by
    convention) at address n + 2. Namespaces are `aiomesos-<name>-<host>`."""

    name: str
    subnet: str = "10.231.0.0/24"

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"network name {self.name!r} must be a lowercase letter then up to 7 letters or digits")
        net = ipaddress.ip_network(self.subnet)
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 24:
            raise ValueError(f"subnet {self.subnet!r} must be an IPv4 network of /24 or larger")

    @property
    def bridge(self) -> str:
        return f"am{self.name}"

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def gateway(self) -> str:
        """The machine's own address on the bridge (where the hosts reach it, and it them)."""
        return str(ipaddress.ip_network(self.subnet).network_address + 1)

    @property
    def namespace_prefix(self) -> str:
        return f"aiomesos-{self.name}-"

    def host(self, name: str, number: int) -> NetnsHost:
        if not HOST_NAME.fullmatch(name):
            raise ValueError(f"host name {name!r} must be lowercase letters, digits and '-' (31 at most)")
        net = ipaddress.ip_network(self.subnet)
        if not 0 <= number < net.num_addresses - 3:
            raise ValueError(f"host number {number} does not fit in {self.subnet}")
        return NetnsHost(
            name, f"{self.namespace_prefix}{name}", f"{self.bridge}v{number}", str(net.network_address + 2 + number)
        )

    # --- the commands (pure) -------------------------------------------------------------------------------------

    def bridge_up(self) -> list[list[str]]:
        return [
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{self.gateway}/{self.prefixlen}", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ]

    def bridge_down(self) -> list[list[str]]:
        return [["ip", "link", "del", self.bridge]]

    def host_up(self, host: NetnsHost) -> list[list[str]]:
        ns = host.namespace
        return [
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            ["ip", "link", "set", host.veth, "master", self.bridge],
            ["ip", "link", "set", host.veth, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "addr", "add", f"{host.address}/{self.prefixlen}", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
            ["ip", "-n", ns, "route", "add", "default", "via", self.gateway],
        ]

    def host_down(self, host: NetnsHost) -> list[list[str]]:
        """Deleting the namespace deletes its end of the veth pair, and so the pair (once no process holds the
        namespace: kill them first, `kill_namespace_processes`)."""
        return [["ip", "netns", "del", host.namespace]]


def partition_commands(host: NetnsHost) -> list[list[str]]:
    """Cut the host off: every packet to it dropped, every one from it refused, but its loopback's (nft reads
    PARTITION_RULES on stdin)."""
    return [["ip", "netns", "exec", host.namespace, "nft", "-f", "-"]]


def heal_commands(host: NetnsHost) -> list[list[str]]:
    return [["ip", "netns", "exec", host.namespace, "nft", "delete", "table", "inet", PARTITION_TABLE]]


# --- the shell: run them ----------------------------------------------------------------------------------------


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    """Run one command; its stdout, or NetnsError with its stderr's first line (when `check`)."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetnsError(f"{' '.join(argv)}: {e}") from None
    if check and done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[0]
        raise NetnsError(f"{' '.join(argv)}: {reason}")
    return done.stdout


def run_all(commands: Iterable[Sequence[str]], stdin: str | None = None) -> None:
    for argv in commands:
        run(argv, stdin)


def partition(host: NetnsHost) -> None:
    run_all(partition_commands(host), PARTITION_RULES)


def heal(host: NetnsHost) -> None:
    run_all(heal_commands(host))


def partitioned(host: NetnsHost) -> bool:
    out = run(["ip", "netns", "exec", host.namespace, "nft", "list", "tables"], check=False)
    return PARTITION_TABLE in out


def namespaces() -> list[str]:
    """The network namespaces `ip netns` knows (by name)."""
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    return [int(p) for p in run(["ip", "netns", "pids", namespace], check=False).split() if p.isdigit()]


def kill_namespace_processes(namespace: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process left in the namespace and wait (up to `timeout`) until they are gone; returns the
    pids that were there. NetnsError naming those still there after `timeout`: the namespace (and its veth on
    the bridge) would outlive `ip netns del` while they live."""
    pids = namespace_pids(namespace)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while (left := namespace_pids(namespace)) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        raise NetnsError(f"namespace {namespace}: processes still there after SIGKILL and {timeout:g}s: {left}")
    return pids


def link_exists(name: str) -> bool:
    return bool(run(["ip", "-o", "link", "show", "dev", name], check=False).strip())


def used_subnets() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks this machine has routes to now."""
    nets: list[ipaddress.IPv4Network] = []
    for line in run(["ip", "-4", "route", "show"], check=False).splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(first if first != "default" else "0.0.0.0/32", strict=False)
            if isinstance(net, ipaddress.IPv4Network) and net.prefixlen > 0:
                nets.append(net)
    return nets


def free_subnet(
    used: Sequence[ipaddress.IPv4Network], name: str = "", base: ipaddress.IPv4Network = SUBNET_BASE
) -> str:
    """The first /24 of `base` that overlaps none of `used`, looking from a place that depends on the network's
    `name` (the first of `base` for "" and "am"), so that two networks set up at once seldom pick the same (pure)."""
    candidates = list(base.subnets(new_prefix=24))
    start = zlib.crc32(name.encode()) % len(candidates) if name not in ("", "am") else 0
    for candidate in candidates[start:] + candidates[:start]:
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise NetnsError(f"no free /24 left in {base}")


TOOLS = {"ip": "iproute2", "nft": "nftables", "nsenter": "util-linux", "unshare": "util-linux"}


def missing_tools() -> str:
    """Empty when every command needed is installed, else which are not and their Debian packages."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return ""
    packages = sorted({TOOLS[tool] for tool in missing})
    return f"missing commands: {', '.join(missing)} (Debian: apt-get install {' '.join(packages)})"


def available() -> str:
    """Empty when this machine lets us make namespaces (and nftables tables in them), else why not (a test's
    skip reason: an unprivileged user or container). Run `missing_tools` first."""
    probe = f"aiomesos-probe-{os.getpid()}"
    try:
        run(["ip", "netns", "add", probe])
    except NetnsError as e:
        return f"ip netns is not permitted here: {e}"
    try:
        run(["ip", "netns", "exec", probe, "nft", "list", "tables"])
    except NetnsError as e:
        return f"nftables is not usable in a network namespace here: {e}"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return ""
