"""How long the agent waits for word from its master before it takes it for lost."""

from __future__ import annotations

from mesos_agent.master_link import master_silence_limit


def test_the_agent_gives_up_on_a_master_silent_for_five_pings() -> None:
    assert master_silence_limit(15.0) == 75.0
    assert master_silence_limit(1.0) == 5.0
    assert master_silence_limit(0.0) is None  # a master that does not ping: wait
