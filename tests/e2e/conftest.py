from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from scheduler_sdk.local_cluster import CA_DIR_ENV, LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.security.config import CONFIG_ENV
from scheduler_sdk.security.local import LocalCertificates
from tests.conftest import module_tmp_path
from tests.e2e.harness import eventually, module_cluster_of

FAST_AGENT = ["--status-update-retry-min", "1", "--status-update-retry-max", "4"]
FAST_MASTER = ["--allocation-interval", "0.2", "--heartbeat-interval", "5"]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """A master and two agents (cpus:2;mem:1024 each), stopped (and checked for leaks) after the test."""
    c = LocalCluster(tmp_path, agents=2, master_flags=list(FAST_MASTER), agent_flags=list(FAST_AGENT))
    try:
        await c.start()
        yield c
    finally:
        leftovers = await c.stop()
    assert leftovers == [], f"cgroups left behind: {leftovers}"


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates) -> Iterator[LocalCluster]:
    """The `cluster` fixture's cluster, one for a whole module, for modules whose tests leave it as they found it
    (no kill, restart, drain or flag of a test's own; their tasks ended): such a module overrides `cluster` with
    it. The leak check runs once, after the module's last test. Started outside the tests' event loops: nothing
    of a cluster is bound to one (its daemons are processes)."""
    work_dir = module_tmp_path(tmp_path_factory, "cluster")
    c = LocalCluster(work_dir, agents=2, master_flags=list(FAST_MASTER), agent_flags=list(FAST_AGENT))
    yield from module_cluster_of(c)


@pytest.fixture
async def idle_cluster(module_cluster: LocalCluster) -> LocalCluster:
    """The module's cluster once it is as a fresh one is (for tests that count on whole offers): every agent
    attached with no task and nothing allocated or offered, no framework subscribed."""

    async def idle() -> bool:
        async with OperatorClient(module_cluster.master_address) as client:
            agents = (await client.agents()).agents
            frameworks = (await client.frameworks()).frameworks
        fresh = all(a.active and a.task_count == 0 and not a.allocated and not a.offered for a in agents)
        return len(agents) == module_cluster.agents and fresh and not frameworks

    await eventually(idle, what="the module's cluster to be idle")
    return module_cluster


@pytest.fixture(scope="session", autouse=True)
def cluster_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCertificates]:
    """One CA for the session's clusters, and an operator's client config that trusts it, found by every
    client the tests make as a user's would be ($AIOMESOS_CONFIG): the tests run secure, as users do."""
    directory = tmp_path_factory.mktemp("ca")
    certificates = LocalCertificates(directory)
    config_path = directory / "aiomesos.toml"
    certificates.client_config().write(config_path)
    patch = pytest.MonkeyPatch()
    patch.setenv(CA_DIR_ENV, str(directory))
    patch.setenv(CONFIG_ENV, str(config_path))
    try:
        yield certificates
    finally:
        patch.undo()
