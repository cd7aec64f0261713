"""`LocalAgentProvider`: the autoscaler's hosts as real agent processes of a `LocalCluster` on this machine, so
that autoscaling runs for real (tests, demos). A `ClusterProvider` (scheduler_sdk.placement.extension); it lives
here, beside the local cluster, because placement must not depend on the process launcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import structlog

from scheduler_sdk.local_cluster import Daemon, leftover_cgroups
from scheduler_sdk.operator import OperatorClient, OperatorError

__all__ = ["AttributesFor", "LocalAgentProvider"]

log = structlog.get_logger(__name__)

_ATTRIBUTE_TEXT = re.compile(r"[A-Za-z0-9_.\-/]+")

AttributesFor = Mapping[str, str] | Callable[[int], Mapping[str, str]]


class AgentCluster(Protocol):
    """What the provider needs of a cluster: a `LocalCluster`, or a `NetnsCluster` (through its subclass
    `NetnsAgentProvider`, which makes each agent a host of its own)."""

    @property
    def master_address(self) -> str: ...

    def add_agent(self, index: int | None = None, extra_flags: list[str] | None = None) -> Daemon: ...


class LocalAgentProvider:
    """Starts and stops agent processes of a running `LocalCluster` for one host group.

    Host number n (1, 2, ... in start order, never reused) is named ``f"{name_prefix}{n}"`` (prefix by default
    ``f"{group}-"``, so ``small-1``, ``small-2``) and is started with ``--hostname`` set to that name,
    ``--resources resources`` (the cluster's own agent resources when None) and ``--attributes`` made of
    ``group_attribute:group`` plus `attributes` (a mapping, or a function of n that returns one, e.g. to spread
    hosts over zones: ``lambda n: {"zone": "ab"[n % 2]}``). The agents' work dirs and logs are the cluster's
    (``agentI``), so `LocalCluster.stop` stops whatever is left and checks it for leftover cgroups.
    """

    def __init__(
        self,
        cluster: AgentCluster,
        group: str,
        resources: str | None = None,
        attributes: AttributesFor | None = None,
        *,
        group_attribute: str = "asg",
        name_prefix: str | None = None,
        extra_flags: Sequence[str] = (),
        stop_timeout: float = 15.0,
    ) -> None:
        _check_text("group", group)
        _check_text("group attribute", group_attribute)
        self.cluster = cluster
        self.group = group
        self.resources = resources
        self.attributes = attributes
        self.group_attribute = group_attribute
        self.name_prefix = f"{group}-" if name_prefix is None else name_prefix
        self.extra_flags = list(extra_flags)
        self.stop_timeout = stop_timeout
        self.daemons: dict[str, Daemon] = {}  # hostname -> the agent process, while it runs
        self.stopped: dict[str, Daemon] = {}  # hostname -> the agent process, once scale_down stopped it
        self.started = 0

    def _attributes_for(self, n: int) -> str:
        extra = self.attributes(n) if callable(self.attributes) else (self.attributes or {})
        pairs = {self.group_attribute: self.group}
        for name, value in extra.items():
            if name == self.group_attribute:
                raise ValueError(f"attribute {name!r} is the group attribute; it is set by the provider")
            _check_text("attribute name", name)
            _check_text(f"value of attribute {name!r}", str(value))
            pairs[name] = str(value)
        return ";".join(f"{k}:{v}" for k, v in pairs.items())

    def _check_group(self, group: str) -> None:
        if group != self.group:
            raise ValueError(f"this provider starts hosts of group {self.group!r}, not {group!r}")

    async def scale_up(self, group: str, count: int) -> list[str]:
        """Start `count` agents now; returns their hostnames without waiting for them to attach."""
        self._check_group(group)
        if not self.cluster.master_address:
            raise RuntimeError("the cluster is not started")
        names: list[str] = []
        for _ in range(max(0, count)):
            self.started += 1
            n = self.started
            name = f"{self.name_prefix}{n}"
            flags = ["--hostname", name, "--attributes", self._attributes_for(n)]
            if self.resources is not None:
                flags += ["--resources", self.resources]
            daemon = self._start_agent(name, [*flags, *self.extra_flags])
            self.daemons[name] = daemon
            names.append(name)
            log.info("agent started", group=group, hostname=name, process=daemon.name)
        return names

    def _start_agent(self, hostname: str, flags: list[str]) -> Daemon:
        return self.cluster.add_agent(None, flags)

    async def _stopped(self, hostname: str) -> None:
        """Called once the agent of `hostname` is stopped (a subclass removes its host)."""

    async def scale_down(self, group: str, hostnames: Sequence[str]) -> None:
        """Stop those agents (SIGTERM, then SIGKILL after `stop_timeout`) and wait until they are gone.
        Names this provider does not own are ignored."""
        self._check_group(group)
        owned = [(name, self.daemons.pop(name)) for name in hostnames if name in self.daemons]
        unknown = [name for name in hostnames if name not in dict(owned)]
        if unknown:
            log.warning("asked to stop hosts this provider does not own", group=group, hostnames=unknown)
        codes = await asyncio.gather(*(d.stop(self.stop_timeout) for _, d in owned))
        for (name, daemon), code in zip(owned, codes, strict=True):
            self.stopped[name] = daemon
            await self._stopped(name)
            log.info("agent stopped", group=group, hostname=name, process=daemon.name, exit_code=code)

    def leftovers(self, hostname: str, daemon: Daemon | None = None) -> list[str]:
        """The cgroups an agent of this provider left behind (for checks after `scale_down`)."""
        d = daemon or self.daemons.get(hostname) or self.stopped.get(hostname)
        return [] if d is None else [str(p) for p in leftover_cgroups(d.work_dir)]

    async def wait_attached(self, hostnames: Sequence[str], timeout: float = 30.0) -> None:
        """Poll the master until every one of these hosts is attached (active); raise TimeoutError after
        `timeout` seconds, or RuntimeError when one of their processes exited."""
        deadline = time.monotonic() + timeout
        wanted = set(hostnames)
        async with OperatorClient(self.cluster.master_address) as client:
            while True:
                attached: set[str] = set()
                with contextlib.suppress(OperatorError):
                    attached = {a.agent_info.hostname for a in (await client.agents()).agents if a.active}
                if wanted <= attached:
                    return
                for name in wanted:
                    d = self.daemons.get(name)
                    if d is not None and d.process is not None and d.process.poll() is not None:
                        raise RuntimeError(f"agent {name} exited at start:\n{d.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"agents {sorted(wanted)} did not attach within {timeout} s")
                await asyncio.sleep(0.05)

    async def stop_all(self) -> None:
        """Stop every agent this provider still owns."""
        await self.scale_down(self.group, list(self.daemons))


def _check_text(what: str, text: str) -> None:
    if not _ATTRIBUTE_TEXT.fullmatch(text):
        raise ValueError(f"{what} {text!r} must be letters, digits, '_', '.', '-' or '/'")
