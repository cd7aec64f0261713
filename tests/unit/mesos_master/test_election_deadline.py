"""The election's clockwork, on a clock of the test's: when a lease counts as lost, and when to refresh it."""

from __future__ import annotations

import pytest

from mesos_master.election import LeaseDeadline, keep_lease
from scheduler_sdk.etcd import EtcdError


def test_a_granted_lease_is_refreshed_every_third_of_its_ttl_and_lasts_ttl_from_the_request() -> None:
    d = LeaseDeadline.granted(3.0, sent_at=100.0)
    assert d.wait(100.0) == pytest.approx(1.0)
    assert not d.expired(102.99) and d.expired(103.0)
    d.refreshed(sent_at=101.0, ttl_left=3.0)
    assert d.expires_at == 104.0 and d.wait(101.5) == pytest.approx(0.5)


def test_the_deadline_counts_from_when_the_refresh_was_sent_and_never_beyond_what_etcd_says() -> None:
    d = LeaseDeadline.granted(3.0, sent_at=0.0)
    d.refreshed(sent_at=1.0, ttl_left=2.0)  # etcd says less than the ttl is left: believe it
    assert d.expires_at == 3.0
    d.refreshed(sent_at=0.5, ttl_left=3.0)  # an old answer never moves the deadline back
    assert d.expires_at == 3.5
    d.refreshed(sent_at=2.0, ttl_left=10.0)  # etcd's lease is whole seconds (>= ours): we count ours
    assert d.expires_at == 5.0


def test_after_a_failed_refresh_it_retries_soon_but_not_past_the_deadline() -> None:
    d = LeaseDeadline.granted(2.0, sent_at=0.0)
    d.failed(now=1.0)
    assert d.wait(1.0) == pytest.approx(0.2)
    d.failed(now=1.9)
    assert d.wait(1.9) == pytest.approx(0.1)  # the deadline comes first: wake then, and step down
    assert d.remaining(2.5) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeClient:
    """keep_alive answers from a script; each call takes `step` seconds on the fake clock."""

    def __init__(self, clock: FakeClock, answers: list[float | Exception], step: float) -> None:
        self.clock, self.answers, self.step, self.calls = clock, answers, step, 0

    async def keep_alive(self, lease_id: int) -> float:
        self.calls += 1
        self.clock.now += self.step
        answer = self.answers.pop(0) if self.answers else EtcdError("etcd: no endpoint answered")
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_keep_lease_ends_when_etcd_says_the_lease_is_gone() -> None:
    clock = FakeClock()
    client = FakeClient(clock, [0.3, 0.3, 0.0], step=0.01)
    why = await keep_lease(client, 0xAB, LeaseDeadline.granted(0.3, 0.0), clock)  # type: ignore[arg-type]
    assert why == "etcd says lease ab is gone" and client.calls == 3


async def test_keep_lease_steps_down_on_its_own_clock_when_no_refresh_succeeds_within_ttl() -> None:
    clock = FakeClock()
    client = FakeClient(clock, [0.3], step=0.05)  # then every refresh fails
    why = await keep_lease(client, 0xAB, LeaseDeadline.granted(0.3, 0.0), clock)  # type: ignore[arg-type]
    assert why == "lease ab was not refreshed within 0.3s"
    # The one good refresh was sent at 0.0 (+0.3 = deadline 0.3): no refresh is tried past it.
    assert clock.now < 0.3 + 0.05 + 1e-9
