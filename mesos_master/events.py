"""The operator event stream's hub (Mesos' operator API SUBSCRIBE), in process: the master's dispatcher hands it
what the core published in each drain of its outbox (`publish`, after the registry took that drain's writes);
each watcher (`subscribe`) gets the state at once (`Subscription.take_snapshot()`, once) and then batches of events
(`async for batch in subscription`), both filtered by the watcher's view_frameworks ACL as GetState filters.

The master never waits for a watcher: each has a bounded queue, and one that falls more than `max_pending`
events behind is ended (`Subscription.overflowed`, with a reason that says so) rather than slow anything down.
A batch is everything published since the watcher last took one, up to `max_batch` events: under load batches
grow, so a busy stream sends fewer, bigger messages. A hub lives for one term of the master: `close` (the
master stops, or stops leading) ends every subscription, and the watchers subscribe again (to the new leader).

`snapshot_pages` and `byte_batches` cut what is sent into messages of bounded size (the gRPC servicer's side).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from aiomesos.v1 import events_pb2 as epb
from mesos_master.outbox import Published
from mesos_master.state import MasterState
from mesos_master.views import fill_agent, fill_framework, fill_quota, fill_task
from scheduler_sdk._daemon.guard import viewer_of
from scheduler_sdk.security.acls import Authorizer
from scheduler_sdk.security.certs import Principal

OperatorEvent = epb.OperatorEvent
Viewer = Callable[[str], bool]
SnapshotSource = Callable[[Viewer], epb.EventSnapshot]

#: How many events a watcher may be behind before it is ended (it subscribes again, for a fresh snapshot).
MAX_PENDING = 20_000
#: The most events in one batch.
MAX_BATCH = 1_000
#: The most bytes of events (or of a snapshot page) in one stream message: well under gRPC's 4 MiB.
MESSAGE_BYTES = 1 << 20
#: Why subscriptions end.
SLOW_WATCHER = "dropped: more than {n} events behind (too slow a watcher); subscribe again for a fresh snapshot"
CLOSED_BY_WATCHER = "closed by the watcher"


class EventsClosedError(Exception):
    """The hub's term is over: subscribe to the master that leads now."""


class Subscription:
    """One watcher: the state at subscribe time, then batches of events (lists, in order) until it ends."""

    def __init__(self, hub: EventHub, principal: Principal | None, snapshot: epb.EventSnapshot) -> None:
        self.principal = principal
        self._snapshot: epb.EventSnapshot | None = snapshot
        #: Why it ended (None while it runs); `overflowed` when it was dropped for being too slow.
        self.end_reason: str | None = None
        self.overflowed = False
        self._hub = hub
        self._pending: deque[OperatorEvent] = deque()
        self._wakeup = asyncio.Event()
        self._ended = asyncio.Event()
        self._viewer: Viewer | None = None  # the hub's, kept while the ACLs it was made under hold
        self._viewer_acls: object = None

    @property
    def snapshot(self) -> epb.EventSnapshot:
        """The state at subscribe time, until it is taken (an empty one after)."""
        return self._snapshot if self._snapshot is not None else epb.EventSnapshot()

    def take_snapshot(self) -> epb.EventSnapshot:
        """The state at subscribe time, released here: a long-lived watcher does not keep it for life."""
        snapshot = self.snapshot
        self._snapshot = None
        return snapshot

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[OperatorEvent]:
        while not self._pending:
            if self.end_reason is not None:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        take = min(len(self._pending), self._hub.max_batch)
        return [self._pending.popleft() for _ in range(take)]

    async def wait_ended(self) -> str:
        """Wait until the subscription ends; return why."""
        await self._ended.wait()
        return self.end_reason or ""

    def close(self, reason: str = CLOSED_BY_WATCHER) -> None:
        """End it (idempotent): iteration stops, what was queued is dropped."""
        self._end(reason)

    def _offer(self, events: list[OperatorEvent]) -> None:
        if self.end_reason is not None:
            return
        if len(self._pending) + len(events) > self._hub.max_pending:
            self.overflowed = True
            self._hub.dropped += 1
            self._end(SLOW_WATCHER.format(n=self._hub.max_pending))
            return
        self._pending.extend(events)
        self._wakeup.set()

    def _end(self, reason: str) -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self._pending.clear()
        self._hub._discard(self)
        self._wakeup.set()
        self._ended.set()


class EventHub:
    """The watchers of one term of the master. `snapshot` builds the state a watcher sees first, given what it
    may view; `authorizer` (None: an insecure master, everything is shown) decides view_frameworks."""

    def __init__(
        self,
        snapshot: SnapshotSource,
        *,
        authorizer: Authorizer | None = None,
        max_pending: int = MAX_PENDING,
        max_batch: int = MAX_BATCH,
        on_watchers: Callable[[int], None] | None = None,
    ) -> None:
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.closed_reason: str | None = None
        #: Counters (for metrics): events published, watchers ended for being too slow.
        self.published = 0
        self.dropped = 0
        self._snapshot = snapshot
        self._authorizer = authorizer
        self._subscriptions: dict[int, Subscription] = {}
        #: Told how many watchers there are whenever that changes (the dispatcher: whether the core publishes).
        self._on_watchers = on_watchers

    @property
    def watchers(self) -> int:
        return len(self._subscriptions)

    @property
    def behind(self) -> int:
        """How many events the slowest watcher has yet to take (0: none is behind)."""
        return max((s.pending for s in self._subscriptions.values()), default=0)

    def subscribe(self, principal: Principal | None) -> Subscription:
        """A new watcher, as `principal` (None: an unauthenticated caller of an insecure master). Its snapshot is
        the state now; every event published from now on follows. Raises EventsClosedError after `close`."""
        if self.closed_reason is not None:
            raise EventsClosedError(self.closed_reason)
        subscription = Subscription(self, principal, self._snapshot(self._viewer(principal)))
        self._subscriptions[id(subscription)] = subscription
        self._watchers_changed()
        return subscription

    def publish(self, published: Sequence[Published]) -> None:
        """One drain's events, in order, to every watcher that may see them. Never blocks, never raises."""
        if not published:
            return
        self.published += len(published)
        if not self._subscriptions:
            return
        everyone = [p.event for p in published if p.owner is None]
        shared = everyone if len(everyone) == len(published) else None
        for subscription in list(self._subscriptions.values()):
            if shared is not None:
                subscription._offer(shared)
                continue
            visible = self._subscription_viewer(subscription)  # reloaded ACLs apply at once
            events = [p.event for p in published if p.owner is None or visible(p.owner)]
            if events:
                subscription._offer(events)

    def close(self, reason: str) -> None:
        """The term is over (the master stops, or stops leading): end every subscription, refuse new ones."""
        self.closed_reason = reason
        for subscription in list(self._subscriptions.values()):
            subscription._end(reason)

    def _viewer(self, principal: Principal | None) -> Viewer:
        return viewer_of(self._authorizer, principal)

    def _subscription_viewer(self, subscription: Subscription) -> Viewer:
        """The subscription's viewer, made again only when the ACLs were reloaded (a reload replaces
        `authorizer.acls`), so that a drain asks the ACLs only about owners it has not seen under these rules."""
        acls = self._authorizer.acls if self._authorizer is not None else None
        if subscription._viewer is None or subscription._viewer_acls is not acls:
            subscription._viewer, subscription._viewer_acls = self._viewer(subscription.principal), acls
        return subscription._viewer

    def _discard(self, subscription: Subscription) -> None:
        if self._subscriptions.pop(id(subscription), None) is not None:
            self._watchers_changed()

    def _watchers_changed(self) -> None:
        if self._on_watchers is not None:
            self._on_watchers(len(self._subscriptions))


def state_snapshot(master: MasterState, visible: Viewer) -> epb.EventSnapshot:
    """The master's state as a watcher that may see `visible` frameworks' things sees it (as GetState does:
    every agent, the frameworks it may view and their tasks, active and completed; quotas and weights)."""
    frameworks = [
        (fw, active)
        for group, active in ((master.frameworks.values(), True), (master.completed_frameworks, False))
        for fw in group
        if visible(fw.info.principal)
    ]
    frameworks.sort(key=lambda pair: (pair[0].id, pair[1]))
    snapshot = epb.EventSnapshot(master_id=master.master_id, start_time=master.start_time, weights=master.weights)
    for _, agent in sorted(master.agents.items()):
        fill_agent(snapshot.agents.add(), agent, master.drains.get(agent.id))
    for fw, active in frameworks:
        fill_framework(snapshot.frameworks.add(), fw, active=active)
    for fw, _ in frameworks:
        for group in (fw.completed_tasks, sorted(fw.tasks.values(), key=lambda t: t.task_id)):
            for task in group:
                fill_task(snapshot.tasks.add(), task)
    for role, quota in sorted(master.quotas.items()):
        fill_quota(snapshot.quotas.add(), role, quota)
    return snapshot


_SNAPSHOT_LISTS = ("agents", "frameworks", "tasks", "quotas")


def snapshot_pages(snapshot: epb.EventSnapshot, max_bytes: int = MESSAGE_BYTES) -> list[epb.EventSnapshot]:
    """The snapshot in pages of at most `max_bytes` of items each (at least one item a page): its lists
    continue from page to page in order; the first page has the rest (master id, weights); `more` is set on
    every page but the last. A snapshot that fits is one page, itself."""
    if snapshot.ByteSize() <= max_bytes:
        return [snapshot]
    first = epb.EventSnapshot(master_id=snapshot.master_id, start_time=snapshot.start_time, weights=snapshot.weights)
    pages = [first]
    size = first.ByteSize()
    for name in _SNAPSHOT_LISTS:
        for item in getattr(snapshot, name):
            item_size = item.ByteSize() + 8
            if size + item_size > max_bytes and size > 0:
                pages.append(epb.EventSnapshot())
                size = 0
            getattr(pages[-1], name).append(item)
            size += item_size
    for page in pages[:-1]:
        page.more = True
    return pages


def byte_batches(events: Sequence[OperatorEvent], max_bytes: int = MESSAGE_BYTES) -> Iterator[list[OperatorEvent]]:
    """`events` in order, cut into lists of at most `max_bytes` (at least one event each)."""
    batch: list[OperatorEvent] = []
    size = 0
    for event in events:
        event_size = event.ByteSize() + 8
        if batch and size + event_size > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event_size
    if batch:
        yield batch
