"""The master's agent pings: at most --max-agent-pings-per-second in all, each agent in turn once per interval
in force, which grows with the number of agents and is told on every PING."""

from __future__ import annotations

import pytest

from aiomesos.v1 import agent_pb2
from mesos_master.api.agents import Pinger, ping_interval
from mesos_master.api.dispatch import Connection

MasterMessage = agent_pb2.MasterMessage


def test_the_interval_grows_with_the_agents_above_the_floor() -> None:
    assert ping_interval(15.0, 500.0, 100) == 15.0
    assert ping_interval(15.0, 500.0, 50_000) == 100.0


async def test_pings_go_round_the_agents_at_the_bounded_rate() -> None:
    agents: dict[str, Connection[agent_pb2.MasterMessage]] = {}
    pinger = Pinger(agents, 1.0, 100.0, clock=lambda: 42.0)
    for i in range(200):
        conn: Connection[agent_pb2.MasterMessage] = Connection(f"S{i}")
        agents[conn.id] = conn
        pinger.add(conn)
    assert pinger.interval() == 2.0  # 200 agents at 100/s
    sent = sum(pinger.due(0.1) for _ in range(20))  # 2 s: one round
    assert sent == 200
    assert all(c.queue.qsize() == 1 for c in agents.values())
    ping = agents["S0"].queue.get_nowait()
    assert ping is not None and ping.type == MasterMessage.PING
    assert (ping.ping.interval_seconds, ping.ping.sent_at) == (2.0, 42.0)


async def test_detached_and_superseded_streams_leave_the_ring() -> None:
    agents: dict[str, Connection[agent_pb2.MasterMessage]] = {}
    pinger = Pinger(agents, 1.0, 1000.0)
    old: Connection[agent_pb2.MasterMessage] = Connection("S1")
    pinger.add(old)
    new: Connection[agent_pb2.MasterMessage] = Connection("S1")
    agents["S1"] = new
    pinger.add(new)
    gone: Connection[agent_pb2.MasterMessage] = Connection("S2")
    pinger.add(gone)  # detached: not in `agents`
    assert pinger.due(10.0) == 1
    assert old.queue.empty() and gone.queue.empty() and new.queue.qsize() == 1
    assert pinger.due(10.0) == 1  # the ring holds only the live stream now
    assert new.queue.qsize() == 2


@pytest.mark.parametrize("elapsed", [0.0, 0.05])
async def test_no_ping_before_its_time(elapsed: float) -> None:
    agents: dict[str, Connection[agent_pb2.MasterMessage]] = {}
    pinger = Pinger(agents, 15.0, 500.0)
    conn: Connection[agent_pb2.MasterMessage] = Connection("S1")
    agents["S1"] = conn
    pinger.add(conn)
    assert pinger.due(elapsed) == 0
