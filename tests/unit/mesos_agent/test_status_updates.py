"""`StatusUpdateManager`: per task streams, one update in flight per task, backoff, acks, reconnects."""

from __future__ import annotations

import pytest

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.status_updates import StatusUpdate, StatusUpdateManager, coalesce

AgentMessage = agent_pb2.AgentMessage


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, *, connected: bool = True, retry_min: float = 10.0, retry_max: float = 600.0) -> None:
        self.clock = Clock()
        self.batches: list[list[StatusUpdate]] = []
        self.mgr = StatusUpdateManager(self.batches.append, self.clock, retry_min=retry_min, retry_max=retry_max)
        self._n = 0
        if connected:
            self.mgr.on_connected()

    def status(self, task_id: str, state: int = tpb.TASK_RUNNING) -> tpb.TaskStatus:
        self._n += 1
        return tpb.TaskStatus(task_id=task_id, state=state, uuid=f"u{self._n}".encode())  # type: ignore[arg-type]

    def add(self, task_id: str, state: int = tpb.TASK_RUNNING, fw: str = "fw1") -> tpb.TaskStatus:
        s = self.status(task_id, state)
        self.mgr.add(fw, s)
        return s

    def sent(self) -> list[tuple[str, str, bytes]]:
        return [(u.framework_id, u.status.task_id, u.status.uuid) for b in self.batches for u in b]

    def take(self) -> list[tuple[str, str, bytes]]:
        out = self.sent()
        self.batches.clear()
        return out


def test_first_update_is_sent_at_once() -> None:
    h = Harness()
    s = h.add("t1")
    assert h.take() == [("fw1", "t1", s.uuid)]
    assert h.mgr.pending() == 1
    assert h.mgr.unacknowledged("fw1", "t1")
    assert h.mgr.latest("fw1", "t1") == s


def test_only_the_head_is_in_flight_until_acknowledged() -> None:
    h = Harness()
    s1 = h.add("t1", tpb.TASK_STARTING)
    s2 = h.add("t1", tpb.TASK_RUNNING)
    s3 = h.add("t1", tpb.TASK_FINISHED)
    assert h.take() == [("fw1", "t1", s1.uuid)]
    assert h.mgr.latest("fw1", "t1") == s3
    # retries resend the head only
    h.clock.now += 10
    assert [u.status.uuid for u in h.mgr.due()] == [s1.uuid]
    h.take()
    assert h.mgr.acknowledge("fw1", "t1", s1.uuid) == s1
    assert h.take() == [("fw1", "t1", s2.uuid)]
    assert h.mgr.acknowledge("fw1", "t1", s2.uuid) == s2
    assert h.take() == [("fw1", "t1", s3.uuid)]
    assert h.mgr.acknowledge("fw1", "t1", s3.uuid) == s3
    assert h.take() == []
    assert not h.mgr.unacknowledged("fw1", "t1")
    assert h.mgr.pending() == 0
    assert list(h.mgr.keys()) == []


def test_streams_are_independent_per_task_and_framework() -> None:
    h = Harness()
    a1 = h.add("t1")
    b1 = h.add("t2")
    c1 = h.add("t1", fw="fw2")
    a2 = h.add("t1")
    assert h.take() == [("fw1", "t1", a1.uuid), ("fw1", "t2", b1.uuid), ("fw2", "t1", c1.uuid)]
    assert h.mgr.acknowledge("fw1", "t2", b1.uuid) == b1
    assert h.take() == []  # t2 has nothing more; t1's second still waits for t1's ack
    assert h.mgr.acknowledge("fw2", "t1", c1.uuid) == c1
    assert h.take() == []
    assert h.mgr.acknowledge("fw1", "t1", a1.uuid) == a1
    assert h.take() == [("fw1", "t1", a2.uuid)]
    assert sorted(h.mgr.keys()) == [("fw1", "t1")]


def test_order_per_task_is_kept_across_many_updates() -> None:
    h = Harness()
    added = [h.add("t1", tpb.TASK_RUNNING) for _ in range(20)]
    delivered = []
    while h.batches:
        [[u]] = h.batches
        h.batches.clear()
        delivered.append(u.status.uuid)
        assert h.mgr.acknowledge("fw1", "t1", u.status.uuid) is not None
    assert delivered == [s.uuid for s in added]


@pytest.mark.parametrize("uuid", [b"nope", b""])
def test_wrong_uuid_ack_is_ignored(uuid: bytes) -> None:
    h = Harness()
    s1 = h.add("t1")
    s2 = h.add("t1")
    h.take()
    assert h.mgr.acknowledge("fw1", "t1", uuid) is None
    assert h.mgr.acknowledge("fw1", "t1", s2.uuid) is None  # not the head
    assert h.mgr.acknowledge("fw1", "t9", s1.uuid) is None  # unknown task
    assert h.mgr.acknowledge("fw9", "t1", s1.uuid) is None  # unknown framework
    assert h.take() == []
    assert h.mgr.pending() == 2
    assert h.mgr.acknowledge("fw1", "t1", s1.uuid) == s1
    assert h.mgr.acknowledge("fw1", "t1", s1.uuid) is None  # a duplicate ack
    assert h.take() == [("fw1", "t1", s2.uuid)]


def test_backoff_doubles_from_min_and_is_capped_at_max() -> None:
    h = Harness(retry_min=10, retry_max=60)
    start = h.clock.now
    s = h.add("t1")
    h.take()
    resend_times = []
    for _ in range(200):  # walk time one second at a time for 200 s
        h.clock.now += 1
        if h.mgr.due():
            resend_times.append(h.clock.now - start)
    # waits: 10, 20, 40, then 60 (capped), 60, ...
    assert resend_times == [10, 30, 70, 130, 190]
    assert all(u.status.uuid == s.uuid for b in h.batches for u in b)


def test_due_is_not_early_and_next_due_in() -> None:
    h = Harness(retry_min=10, retry_max=600)
    assert h.mgr.next_due_in() is None
    h.add("t1")
    h.take()
    assert h.mgr.next_due_in() == 10
    h.clock.now += 9.999
    assert h.mgr.due() == []
    assert h.mgr.next_due_in() == pytest.approx(0.001)
    h.clock.now += 0.001
    assert len(h.mgr.due()) == 1
    assert h.mgr.next_due_in() == 20  # doubled
    h.clock.now += 100
    assert h.mgr.next_due_in() == 0.0  # overdue never goes negative


def test_ack_resets_backoff_for_the_next_update() -> None:
    h = Harness(retry_min=10, retry_max=600)
    s1 = h.add("t1")
    h.add("t1")
    for _ in range(3):
        h.clock.now += 1000
        h.mgr.due()
    h.mgr.acknowledge("fw1", "t1", s1.uuid)
    assert h.mgr.next_due_in() == 10


def test_disconnected_sends_nothing() -> None:
    h = Harness(connected=False)
    s = h.add("t1")
    h.add("t2")
    h.clock.now += 10_000
    assert h.mgr.due() == []
    assert h.batches == []
    assert h.mgr.pending() == 2
    h.mgr.on_connected()
    h.mgr.on_disconnected()
    h.take()
    h.clock.now += 10_000
    assert h.mgr.due() == []
    assert h.mgr.acknowledge("fw1", "t1", s.uuid) == s  # acks still apply while away ...
    assert h.batches == []  # ... but nothing more is sent


def test_reconnect_resends_all_heads_in_one_batch() -> None:
    h = Harness()
    a1 = h.add("t1")
    h.add("t1")
    b1 = h.add("t2")
    h.mgr.on_disconnected()
    c1 = h.add("t3", fw="fw2")  # added while away: not sent
    h.take()
    h.mgr.on_connected()
    assert len(h.batches) == 1
    assert sorted(h.take()) == sorted([("fw1", "t1", a1.uuid), ("fw1", "t2", b1.uuid), ("fw2", "t3", c1.uuid)])


def test_reconnect_with_nothing_pending_sends_no_batch() -> None:
    h = Harness(connected=False)
    h.mgr.on_connected()
    assert h.batches == []


def test_remove_framework_drops_its_streams() -> None:
    h = Harness()
    h.add("t1")
    h.add("t2")
    kept = h.add("t1", fw="fw2")
    h.mgr.remove_framework("fw1")
    assert list(h.mgr.keys()) == [("fw2", "t1")]
    assert h.mgr.pending() == 1
    h.take()
    h.clock.now += 10
    assert [u.status.uuid for u in h.mgr.due()] == [kept.uuid]
    h.mgr.on_connected()
    assert [u.framework_id for b in h.batches for u in b] == ["fw2", "fw2"]


def test_reconnect_restarts_backoff_at_retry_min() -> None:
    h = Harness(retry_min=10, retry_max=600)
    h.add("t1")
    for _ in range(8):  # a long outage on a half-open connection: backoff grows to the cap
        h.clock.now += 1000
        h.mgr.due()
    assert h.mgr.next_due_in() == 600
    h.mgr.on_disconnected()
    h.mgr.on_connected()
    assert h.mgr.next_due_in() == 10


def _updates_message(*task_ids: str) -> AgentMessage:
    return AgentMessage(
        type=AgentMessage.STATUS_UPDATES,
        status_updates=AgentMessage.StatusUpdates(
            updates=[StatusUpdate(framework_id="fw1", status=tpb.TaskStatus(task_id=t)) for t in task_ids]
        ),
    )


def _shape(messages: list[AgentMessage]) -> list[tuple[str, list[str]]]:
    return [(AgentMessage.Type.Name(m.type), [u.status.task_id for u in m.status_updates.updates]) for m in messages]


def test_coalesce_merges_consecutive_status_updates_in_order_and_keeps_the_rest_in_place() -> None:
    pong = AgentMessage(type=AgentMessage.PONG)
    given = [_updates_message("a", "b"), _updates_message("a"), pong, _updates_message("c"), _updates_message("b")]
    before = [m.SerializeToString() for m in given]
    assert _shape(coalesce(given)) == [
        ("STATUS_UPDATES", ["a", "b", "a"]),
        ("PONG", []),
        ("STATUS_UPDATES", ["c", "b"]),
    ]
    assert [m.SerializeToString() for m in given] == before  # the queued messages are not changed


def test_coalesce_of_one_or_none_is_the_same() -> None:
    one = _updates_message("a")
    assert coalesce([one]) == [one] and coalesce([one])[0] is one
    assert coalesce([]) == []
