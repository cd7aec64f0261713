"""Leader election through etcd, as Mesos elected its leader through ZooKeeper: the leader holds the key
PREFIX/leader, bound to its lease (`scheduler_sdk.masters` has the layout). No consensus of our own.

- `campaign` grants a lease of `ttl` and writes the key in one transaction only if it does not exist
  (create_revision == 0); if another master holds it, it waits until the key is deleted (a watch; rechecked every
  ttl) and tries again. It returns a `Term`.
- A term's lease is refreshed every ttl/3. `Term.lost` is set the moment leadership is gone: etcd says the lease is
  gone, or no refresh succeeded within ttl on our own monotonic clock (a leader cut off from etcd steps down by
  itself, before etcd expires its lease: counted from when the last good refresh was *sent*, so never later
  than etcd), or the key was deleted or is no longer ours (watched).
- Every registry write of the leader is fenced by its term (`Term.fence`): the key's create_revision is still
  the term's. A deposed leader's write fails; nothing of it is written.
- `run_member` keeps PREFIX/members/MASTER_ID on a lease of its own (made again after etcd lost it) and follows
  the leader key, so that `leader()` says who leads (for a standby's refusals).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog

from scheduler_sdk._daemon.tasks import cancel_and_wait
from scheduler_sdk.etcd import Compare, EtcdClient, EtcdCompacted, EtcdError, KeyValue, Op
from scheduler_sdk.masters import MasterRecord, leader_key, members_prefix

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
REFRESHES_PER_TTL = 3
RETRY_FRACTION = 0.1  # after a failed refresh, try again after this part of the ttl (at most RETRY_MAX)
RETRY_MAX = 0.25
BACKOFF = (0.1, 2.0)  # pauses between tries while etcd cannot be reached


@dataclass
class LeaseDeadline:
    """When a lease we hold counts as lost on our own clock, and when to refresh it next. Pure: times are read
    from the caller's monotonic clock.

    The lease lasts `ttl` from a confirmed refresh (or the grant), counted from when that request was sent: etcd
    extended the lease later than that, never earlier, so our deadline comes no later than etcd's."""

    ttl: float
    expires_at: float
    due_at: float

    @classmethod
    def granted(cls, ttl: float, sent_at: float) -> LeaseDeadline:
        return cls(ttl, sent_at + ttl, sent_at + ttl / REFRESHES_PER_TTL)

    def refreshed(self, sent_at: float, ttl_left: float) -> None:
        """etcd confirmed the refresh sent at `sent_at`, saying the lease has `ttl_left` seconds."""
        self.expires_at = max(self.expires_at, sent_at + min(self.ttl, ttl_left))
        self.due_at = sent_at + self.ttl / REFRESHES_PER_TTL

    def failed(self, now: float) -> None:
        """A refresh got no answer: try again soon."""
        self.due_at = now + min(self.ttl * RETRY_FRACTION, RETRY_MAX)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def remaining(self, now: float) -> float:
        return max(0.0, self.expires_at - now)

    def wait(self, now: float) -> float:
        """How long to sleep before the next refresh (or before the lease runs out, if that comes first)."""
        return max(0.0, min(self.due_at, self.expires_at) - now)


async def keep_lease(client: EtcdClient, lease_id: int, deadline: LeaseDeadline, clock: Clock) -> str:
    """Refresh the lease until it is lost; returns why it is."""
    while True:
        await asyncio.sleep(deadline.wait(clock()))
        sent = clock()
        if deadline.expired(sent):
            return f"lease {lease_id:x} was not refreshed within {deadline.ttl:g}s"
        try:
            async with asyncio.timeout(deadline.remaining(sent)):
                ttl_left = await client.keep_alive(lease_id)
        except (EtcdError, TimeoutError) as e:
            log.warning("lease refresh failed", lease=f"{lease_id:x}", error=str(e) or "no answer in time")
            deadline.failed(clock())
            continue
        if ttl_left <= 0:
            return f"etcd says lease {lease_id:x} is gone"
        deadline.refreshed(sent, ttl_left)


@dataclass(eq=False)
class Term:
    """One period of leadership: the record it was won with, the leader key's create_revision and the lease."""

    record: MasterRecord
    create_revision: int
    lease_id: int
    key: bytes
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    why: str = ""  # why it was lost
    _holder: asyncio.Task[None] | None = field(default=None, repr=False)

    def fence(self) -> Compare:
        """The condition of every write of this term: the leader key is still the one this term created."""
        return Compare.create_revision(self.key, "==", self.create_revision)

    def lose(self, why: str) -> None:
        if not self.lost.is_set():
            self.why = why
            self.lost.set()
            log.warning("leadership lost", master_id=self.record.master_id, why=why)


class Election:
    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        record: MasterRecord,
        ttl: float,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.record = record
        self.ttl = ttl
        self.clock = clock
        self.key = leader_key(prefix)
        self.member_key = members_prefix(prefix) + record.master_id.encode()
        self._leader: MasterRecord | None = None

    def leader(self) -> MasterRecord | None:
        """Who leads, as last seen (kept fresh while `run_member` runs)."""
        return self._leader

    def _seen(self, kv: KeyValue | None) -> None:
        if kv is None:
            self._leader = None
            return
        try:
            self._leader = MasterRecord.decode(kv.value)
        except ValueError as e:
            log.warning("the leader key holds no master record", key=self.key, error=str(e))
            self._leader = None

    async def campaign(self) -> Term:
        """Blocks until this master leads; returns its term (whose `lost` is set when the term ends)."""
        pause = BACKOFF[0]
        while True:
            try:
                term, revision = await self._try()
                if term is not None:
                    return term
                pause = BACKOFF[0]
                await self._wait_for_vacancy(revision)
            except EtcdError as e:
                log.warning("campaign: etcd unreachable", error=str(e), retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF[1])

    async def _try(self) -> tuple[Term | None, int]:
        """One attempt: (the term, 0) if it won, else (None, the revision at which another master led)."""
        sent = self.clock()
        lease_id = await self.client.grant_lease(self.ttl)
        record = replace(self.record, elected_at=time.time())
        try:
            result = await self.client.txn(
                [Compare.create_revision(self.key, "==", 0)],
                [Op.put(self.key, record.encode(), lease=lease_id), Op.get(self.key)],
                [Op.get(self.key)],
            )
        except EtcdError:
            await self._revoke(lease_id)
            raise
        kvs = result.responses[-1] or []
        kv = kvs[0] if kvs else None
        self._seen(kv)
        # Ours also when a retried transaction had been applied the first time (its retry found the key taken).
        if kv is None or kv.lease != lease_id:
            await self._revoke(lease_id)
            return None, result.revision
        term = Term(record, kv.create_revision, lease_id, self.key)
        term._holder = asyncio.create_task(self._hold(term, LeaseDeadline.granted(self.ttl, sent)))
        log.info("elected leader", master_id=record.master_id, revision=kv.create_revision, lease=f"{lease_id:x}")
        return term, 0

    async def _revoke(self, lease_id: int) -> None:
        with contextlib.suppress(EtcdError):
            await self.client.revoke_lease(lease_id)

    async def _wait_for_vacancy(self, revision: int) -> None:
        """Until the leader key is deleted after `revision`, or for at most one ttl (then the caller checks)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(self.ttl, 1.0)):
                async with contextlib.aclosing(self.client.watch(self.key, start_revision=revision + 1)) as watch:
                    async for events in watch:
                        for event in events:
                            if event.type == "DELETE":
                                self._leader = None
                                return
                            self._seen(event.kv)

    async def _hold(self, term: Term, deadline: LeaseDeadline) -> None:
        """Keep the term's lease alive and watch its key; end the term when either says it is over."""
        tasks = [
            asyncio.create_task(keep_lease(self.client, term.lease_id, deadline, self.clock)),
            asyncio.create_task(self._until_not_ours(term)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            ended = next(iter(done))
            error = ended.exception()
            term.lose(ended.result() if error is None else f"holding the term failed: {error!r}")
        finally:
            for task in tasks:
                await cancel_and_wait(task)

    async def _until_not_ours(self, term: Term) -> str:
        start = term.create_revision + 1
        pause = BACKOFF[0]
        while True:
            try:
                async with contextlib.aclosing(self.client.watch(self.key, start_revision=start)) as watch:
                    async for events in watch:
                        for event in events:
                            if event.type == "DELETE":
                                return "the leader key was deleted"
                            if event.kv.create_revision != term.create_revision:
                                return "another master holds the leader key"
            except EtcdCompacted:
                kv = await self._get_or_none()
                if kv is None or kv.create_revision != term.create_revision:
                    return "the leader key is no longer this term's"
                start = kv.mod_revision + 1
            except EtcdError as e:  # the lease's deadline covers an etcd out of reach
                log.warning("leader key watch failed", error=str(e), retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF[1])

    async def _get_or_none(self) -> KeyValue | None:
        while True:
            try:
                return await self.client.get(self.key)
            except EtcdError:
                await asyncio.sleep(BACKOFF[0])

    async def resign(self, term: Term) -> None:
        """End the term: stop refreshing, delete the key if it is still ours, revoke the lease (best effort: if
        etcd cannot be reached, the lease runs out by itself within ttl)."""
        if term._holder is not None:
            await cancel_and_wait(term._holder)
        term.lose("resigned")
        try:
            await self.client.txn([term.fence()], [Op.delete(self.key)])
            await self.client.revoke_lease(term.lease_id)
        except EtcdError as e:
            log.warning("resign: etcd unreachable, the lease will run out", error=str(e), ttl=self.ttl)

    async def run_member(self) -> None:
        """Keep PREFIX/members/MASTER_ID on a lease of its own and follow the leader key, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keep_member())
            group.create_task(self._follow_leader())

    async def _keep_member(self) -> None:
        pause = BACKOFF[0]
        while True:
            try:
                sent = self.clock()
                lease_id = await self.client.grant_lease(self.ttl)
                await self.client.put(self.member_key, self.record.encode(), lease=lease_id)
            except EtcdError as e:
                log.warning("member key: etcd unreachable", error=str(e), retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF[1])
                continue
            pause = BACKOFF[0]
            why = await keep_lease(self.client, lease_id, LeaseDeadline.granted(self.ttl, sent), self.clock)
            log.info("member key lost, writing it again", why=why)

    async def _follow_leader(self) -> None:
        pause = BACKOFF[0]
        while True:
            try:
                current = await self.client.txn([], [Op.get(self.key)])
                kvs = current.responses[0] or []
                self._seen(kvs[0] if kvs else None)
                pause = BACKOFF[0]
                start = current.revision + 1
                async with contextlib.aclosing(self.client.watch(self.key, start_revision=start)) as watch:
                    async for events in watch:
                        for event in events:
                            self._seen(None if event.type == "DELETE" else event.kv)
            except EtcdCompacted:
                continue
            except EtcdError as e:
                log.warning("following the leader: etcd unreachable", error=str(e), retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF[1])
