"""`NetnsAgentProvider`: the autoscaler's hosts as hosts that really come and go. Scaling up makes a new host (a
network namespace with its own address on the cluster's bridge, a certificate naming it) and starts an agent on
it that registers with the master across the bridge; scaling down stops the agent and removes the host: its
namespace, veth pair and cgroups. A `ClusterProvider` (scheduler_sdk.placement.extension) for a running
`NetnsCluster`, the same as `LocalAgentProvider` (whose naming, attributes and waiting it shares) but one host per
agent rather than agent processes sharing this machine's network.
"""

from __future__ import annotations

from typing import Any

import structlog

from scheduler_sdk.local_cluster import Daemon
from scheduler_sdk.local_provider import LocalAgentProvider
from scheduler_sdk.netns_cluster import NetnsCluster

__all__ = ["NetnsAgentProvider"]

log = structlog.get_logger(__name__)


class NetnsAgentProvider(LocalAgentProvider):
    """Hosts of group `group` named ``f"{name_prefix}{n}"`` (``pool-1``, ``pool-2``, ...; n never reused), each
    the namespace host of that name in `cluster`, its agent started with ``--hostname`` that name, `resources`
    (the cluster's agent resources when None) and the group attribute plus `attributes`. `scale_down` stops the
    agent (SIGTERM, SIGKILL after `stop_timeout`) and removes the host; what had to be cleaned up by force then
    (a process left in the namespace, a cgroup) is kept in `problems` by host name."""

    def __init__(self, cluster: NetnsCluster, *args: Any, **kwargs: Any) -> None:
        """LocalAgentProvider's arguments, for a NetnsCluster."""
        super().__init__(cluster, *args, **kwargs)
        self.netns = cluster
        self.problems: dict[str, list[str]] = {}

    def _start_agent(self, hostname: str, flags: list[str]) -> Daemon:
        return self.netns.add_agent_host(hostname, flags)

    async def _stopped(self, hostname: str) -> None:
        self.problems[hostname] = await self.netns.remove_host(hostname, self.stop_timeout)
        log.info("host removed", group=self.group, hostname=hostname, problems=self.problems[hostname])

    def host_exists(self, hostname: str) -> bool:
        """Whether the cluster still has that host (its namespace)."""
        return hostname in self.netns.hosts
