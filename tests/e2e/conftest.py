from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scheduler_sdk.local_cluster import LocalCluster

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
