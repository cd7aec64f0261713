"""Autoscaling of host groups, after each scheduling run: rules per group, the shortfall analysis (shortfall.py),
and a `ClusterProvider` that really starts and stops hosts (providers.py; the contract is in extension.py).

A host belongs to group G when its attribute `group_attribute` (default "asg") is G; hosts of groups without a
rule are left alone. An evaluation takes the hosts of the run (`model.Host`), the tasks it could not place, and the
hosts it assigned tasks to; it returns `Action`s and carries them out through the provider.

Counting, per group:

* **idle host**: seen in this evaluation, no running task, nothing assigned to it in this run, not being drained,
  and not *too small*. Too small means the rule's `idle_host_too_small(host)` says so, or the host offers less
  than one of `min_idle_resources` (e.g. ``{"cpus": 1, "mem": 512}``): a host whose resources something else holds
  is no spare capacity. Too-small hosts count in the group's size but are neither idle nor ever scaled down.
* **size**: the group's hosts known (seen in the last `forget_after` seconds, not released) plus the hosts
  starting (asked of the provider, not seen yet, for at most `launch_timeout` seconds). So every host that runs
  tasks must be in every evaluation's hosts, with or without offers (`PlacementScheduler` passes them with
  ``offers=()``): a busy host left out for `forget_after` would be forgotten, and the group could grow past
  `max_size`. Hosts are not kept forever for their last known tasks: a host that died busy must drop out.

Rules, per group, in the order the rules are given (actions of one group are listed in this order too):

1. **Drained hosts are released or given back.** A host disabled by an earlier evaluation is released
   (``release``: `provider.scale_down`) once an evaluation sees it *disabled* (``Host.disabled``, i.e. the run
   honoured the disable) and still idle, and at least `drain_delay` seconds after the disable. A disabled host
   found with tasks (placed before the disable took effect) is enabled again (``enable``, reason "busy"): scale
   down never takes a host with running tasks.
2. **Shortfall: scale up at once, ignoring the cool-down.** The unplaced tasks are packed, with the real
   `PlacementEngine` and bin packing, onto empty pseudo-hosts of the group's `shape` (resources) carrying the
   group attribute and the rule's `attributes`; the number of pseudo-hosts used is the number of hosts needed.
   Tasks go to the first group (in rule order) whose pseudo-hosts take them; groups without a shape take no
   part. Pseudo-hosts are used in rounds (as many per round as the round's tasks need at the least, by their
   total size), so the packing stays quick for large bursts. The need is met first by re-enabling drained idle
   hosts (``enable``, reason "capacity"), then by the hosts already starting, then by new hosts. The pseudo-hosts
   are limited so that the group never exceeds `max_size`.
3. **Min idle and min size: scale up after the cool-down.** If idle hosts (plus starting hosts not counted for
   the shortfall) are fewer than `min_idle`, the deficit is met by re-enabling drained idle hosts, then by new
   hosts; and the group is grown to at least `min_size`. Only when `cooldown` seconds have passed since the
   group's last action (a scale up, a disable, or an enable for capacity).
4. The new hosts of steps 2 and 3 go in one ``scale_up`` action (reason "shortfall", "min_idle", "min_size" or
   a "+"-joined mix), capped at ``max_size - size``.
5. **Max idle: scale down after the cool-down**, when the group neither grows nor re-enables hosts in this
   evaluation and no unplaced task was found to need it: the idle hosts above `max_idle` are *disabled*
   (``disable``, reason "max_idle"), never taking the group (minus what is already draining) below `min_size`.
   They are chosen balanced across `balance_attribute` (e.g. "zone"): each pick comes from the zone where the
   most hosts of the group would remain (ties: the zone with the most idle candidates, then the zone name), and
   inside a zone the last hostname in natural order ("h10" after "h9"; with the local provider's numbered names,
   the newest host) goes first. Those hosts get no new tasks (`Autoscaler.disabled`: the scheduler marks them
   `Host.disabled`) and are released by rule 1 at a later evaluation.

Use: ``await autoscaler.evaluate(hosts, unplaced, busy)`` after each run, or `Autoscaler.attach(scheduler)` to
wire it to a `PlacementScheduler`. `decide` alone returns the actions without carrying them out (it only records
which hosts it saw and which starting hosts arrived); `apply` carries them out.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import structlog

from scheduler_sdk.placement.extension import ClusterProvider, Engine
from scheduler_sdk.placement.model import Host, SchedulingResult, TaskRequest
from scheduler_sdk.placement.run_state import lease_amount
from scheduler_sdk.placement.shortfall import default_engine, hosts_needed

__all__ = ["Action", "ActionKind", "AutoscaleRule", "Autoscaler", "natural_key"]

log = structlog.get_logger(__name__)

ActionKind = Literal["scale_up", "disable", "release", "enable"]


@dataclass(frozen=True)
class AutoscaleRule:
    """Autoscaling of one host group. `shape` is the resources of one new host of the group (cpus, mem, disk,
    network, ports as a count, any other scalar), used by the shortfall analysis; `attributes` are the attributes
    such a host has besides the group attribute (for constraints during that analysis). `max_size` None: no
    upper bound."""

    group: str
    min_idle: int = 0
    max_idle: int = 0
    cooldown: float = 0.0
    min_size: int = 0
    max_size: int | None = None
    idle_host_too_small: Callable[[Host], bool] | None = None
    min_idle_resources: Mapping[str, float] = field(default_factory=dict)
    shape: Mapping[str, float] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group:
            raise ValueError("an autoscale rule needs a group")
        if not 0 <= self.min_idle <= self.max_idle:
            raise ValueError(f"group {self.group}: need 0 <= min_idle <= max_idle")
        if self.min_size < 0 or (self.max_size is not None and self.max_size < self.min_size):
            raise ValueError(f"group {self.group}: need 0 <= min_size <= max_size")
        if self.cooldown < 0:
            raise ValueError(f"group {self.group}: cooldown must be >= 0")
        if any(v < 0 for v in self.shape.values()):
            raise ValueError(f"group {self.group}: shape amounts must be >= 0")

    def too_small(self, host: Host) -> bool:
        if self.idle_host_too_small is not None and self.idle_host_too_small(host):
            return True
        return any(lease_amount(host, name) < amount for name, amount in self.min_idle_resources.items())


@dataclass(frozen=True, slots=True)
class Action:
    """One autoscaling step. kind: "scale_up" (count new hosts; hostnames filled in by `apply` from the provider),
    "disable" (no new tasks on these hosts), "release" (the provider stops them), "enable" (drain cancelled).
    `error` is set by `apply` when the provider failed."""

    kind: ActionKind
    group: str
    count: int = 0
    hostnames: tuple[str, ...] = ()
    reason: str = ""
    error: str = ""


@dataclass
class _Known:
    group: str
    host: Host
    seen_at: float
    seen_in: int  # evaluation number


@dataclass
class _Launch:
    name: str | None  # None: the provider did not say
    since: float


@dataclass
class _Drain:
    group: str
    since: float
    evaluation: int


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: "h10" sorts after "h9"."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)


class Autoscaler:
    def __init__(
        self,
        rules: Iterable[AutoscaleRule],
        group_attribute: str = "asg",
        provider: ClusterProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        balance_attribute: str | None = "zone",
        engine: Engine | Callable[[], Engine] | None = None,
        launch_timeout: float = 300.0,
        forget_after: float = 60.0,
        drain_delay: float = 0.0,
    ) -> None:
        self.rules = list(rules)
        groups = [r.group for r in self.rules]
        if len(set(groups)) != len(groups):
            raise ValueError("one rule per group")
        self._rules = {r.group: r for r in self.rules}
        self.group_attribute = group_attribute
        self.provider = provider
        self.clock = clock
        self.balance_attribute = balance_attribute
        self._engine = engine
        self.launch_timeout = launch_timeout
        self.forget_after = forget_after
        self.drain_delay = drain_delay
        self._known: dict[str, _Known] = {}
        self._starting: dict[str, list[_Launch]] = {}
        self._draining: dict[str, _Drain] = {}
        self._released: dict[str, tuple[str, float]] = {}
        self._last_action: dict[str, float] = {}
        self._evaluations = 0
        self._inflight: asyncio.Task[list[Action]] | None = None
        self.history: list[Action] = []  # every action applied, in order
        self.unfit: tuple[str, ...] = ()  # unplaced task ids no group's new host would hold (last evaluation)
        self.on_change: Callable[[frozenset[str]], None] | None = None  # called with `disabled` by `apply`
        self._tasks: Callable[[], Mapping[str, TaskRequest]] = dict  # for `after_run`: task id -> request

    def set_rule(self, rule: AutoscaleRule) -> None:
        """Replace the rule of `rule.group` (or add one); state (drains, launches, cool-down) is kept."""
        if rule.group in self._rules:
            self.rules[[r.group for r in self.rules].index(rule.group)] = rule
        else:
            self.rules.append(rule)
        self._rules[rule.group] = rule

    # ------------------------------------------------------------------ what the scheduler reads
    @property
    def disabled(self) -> frozenset[str]:
        """Hostnames that must get no new tasks: being drained, or released."""
        return frozenset(self._draining) | frozenset(self._released)

    def mark_disabled(self, hosts: Iterable[Host]) -> list[Host]:
        """The hosts with `disabled` set on those in `self.disabled` (for callers that build their own hosts)."""
        off = self.disabled
        return [replace(h, disabled=True) if h.hostname in off and not h.disabled else h for h in hosts]

    def starting(self, group: str) -> int:
        return len(self._starting.get(group, []))

    def group_of(self, host: Host) -> str | None:
        group = host.attributes.get(self.group_attribute)
        return group if group in self._rules else None

    # ------------------------------------------------------------------ one evaluation
    async def evaluate(
        self,
        hosts: Sequence[Host],
        unplaced: Sequence[TaskRequest] = (),
        busy: Iterable[str] = (),
    ) -> list[Action]:
        """`decide` then `apply`. `busy`: hostnames the run just assigned tasks to."""
        return await self.apply(self.decide(hosts, unplaced, busy))

    def decide(
        self,
        hosts: Sequence[Host],
        unplaced: Sequence[TaskRequest] = (),
        busy: Iterable[str] = (),
    ) -> list[Action]:
        now = self.clock()
        self._evaluations += 1
        self._observe(hosts, now)
        busy_set = set(busy)
        seen: dict[str, list[Host]] = {g: [] for g in self._rules}
        for h in hosts:
            group = self.group_of(h)
            if group is not None and h.hostname not in self._released:
                seen[group].append(h)

        def idle(h: Host) -> bool:
            return not h.running and h.hostname not in busy_set

        # known (not released) hosts per group, and the slots each group can still grow by
        known: dict[str, list[str]] = {g: [] for g in self._rules}
        for name, k in self._known.items():
            if name not in self._released:
                known[k.group].append(name)
        draining_idle: dict[str, list[str]] = {}
        for g in self._rules:
            draining_idle[g] = sorted(
                (h.hostname for h in seen[g] if h.hostname in self._draining and idle(h)), key=natural_key
            )
        needs = self._shortfall(unplaced, known, draining_idle)

        actions: list[Action] = []
        for rule in self.rules:
            g = rule.group
            actions.extend(self._decide_group(rule, now, seen[g], known[g], draining_idle[g], needs.get(g, 0), idle))
        return actions

    def _decide_group(
        self,
        rule: AutoscaleRule,
        now: float,
        seen: list[Host],
        known: list[str],
        draining_idle: list[str],
        needed: int,
        idle: Callable[[Host], bool],
    ) -> list[Action]:
        g = rule.group
        out: list[Action] = []
        # 1. drained hosts: give back the busy ones, release the confirmed idle ones (unless capacity is needed)
        busy_drained = sorted(
            (h.hostname for h in seen if h.hostname in self._draining and not idle(h)), key=natural_key
        )
        if busy_drained:
            out.append(Action("enable", g, len(busy_drained), tuple(busy_drained), "busy"))
        starting = self.starting(g)
        size = len(known) + starting
        cooled = now - self._last_action.get(g, -math.inf) >= rule.cooldown
        # 2.-4. grow: re-enable drained idle hosts, count starting ones, start new ones
        reenable, up, reasons = self._growth(rule, seen, idle, draining_idle, needed, starting, size, cooled)
        confirmed = [
            h.hostname
            for h in seen
            if h.hostname in self._draining
            and h.hostname not in reenable
            and h.disabled
            and idle(h)
            and self._draining[h.hostname].evaluation < self._evaluations
            and now - self._draining[h.hostname].since >= self.drain_delay
        ]
        confirmed.sort(key=natural_key)
        if confirmed:
            out.append(Action("release", g, len(confirmed), tuple(confirmed), "drained"))
        if reenable:
            reenable.sort(key=natural_key)
            out.append(Action("enable", g, len(reenable), tuple(reenable), "capacity"))
        if up > 0:
            out.append(Action("scale_up", g, up, (), "+".join(reasons)))
        if up > 0 or reenable or needed or not cooled:
            return out

        # 5. scale down the idle hosts above max idle
        idle_hosts = self._idle(rule, seen, idle)
        draining_count = sum(1 for name in known if name in self._draining)
        count = min(len(idle_hosts) - rule.max_idle, size - draining_count - rule.min_size)
        if count > 0:
            chosen = self._balanced(idle_hosts, [n for n in known if n not in self._draining], count)
            out.append(Action("disable", g, len(chosen), tuple(chosen), "max_idle"))
        return out

    def _growth(
        self,
        rule: AutoscaleRule,
        seen: list[Host],
        idle: Callable[[Host], bool],
        draining_idle: list[str],
        needed: int,
        starting: int,
        size: int,
        cooled: bool,
    ) -> tuple[list[str], int, list[str]]:
        """Rules 2-4 for one group: the drained idle hosts to re-enable, how many new hosts to start (capped at
        ``max_size``) and why."""
        # 2. shortfall: drained idle hosts first, then the hosts starting, then new ones
        reenable: list[str] = []
        n = needed
        from_drained = min(n, len(draining_idle))
        reenable += draining_idle[:from_drained]
        n -= from_drained
        from_starting = min(n, starting)
        n -= from_starting
        up_short = n
        reasons = ["shortfall"] if up_short else []
        # 3. min idle, min size
        up_rules = 0
        if cooled:
            idle_hosts = self._idle(rule, seen, idle)
            deficit = max(0, rule.min_idle - (len(idle_hosts) + starting - from_starting))
            more_drained = min(deficit, len(draining_idle) - from_drained)
            reenable += draining_idle[from_drained : from_drained + more_drained]
            deficit -= more_drained
            if deficit:
                reasons.append("min_idle")
            up_rules = deficit
            grow_to_min = rule.min_size - size - up_short - up_rules
            if grow_to_min > 0:
                up_rules += grow_to_min
                reasons.append("min_size")
        up = up_short + up_rules
        if rule.max_size is not None:
            up = min(up, max(0, rule.max_size - size))
        return reenable, up, reasons

    def _idle(self, rule: AutoscaleRule, seen: list[Host], idle: Callable[[Host], bool]) -> list[Host]:
        """The group's idle hosts: no task, not draining, not disabled by someone else, not too small."""
        return [
            h for h in seen if h.hostname not in self._draining and not h.disabled and idle(h) and not rule.too_small(h)
        ]

    def _zone(self, name: str, host: Host | None = None) -> str:
        if self.balance_attribute is None:
            return ""
        h = host or (self._known[name].host if name in self._known else None)
        return "" if h is None else h.attributes.get(self.balance_attribute, "")

    def _balanced(self, candidates: list[Host], remaining: list[str], count: int) -> list[str]:
        left: dict[str, int] = {}
        for name in remaining:
            z = self._zone(name)
            left[z] = left.get(z, 0) + 1
        pools: dict[str, list[str]] = {}
        for h in candidates:
            pools.setdefault(self._zone(h.hostname, h), []).append(h.hostname)
        for pool in pools.values():
            pool.sort(key=natural_key)  # the last goes first
        chosen: list[str] = []
        while len(chosen) < count and any(pools.values()):
            zone = min((z for z, p in pools.items() if p), key=lambda z: (-left.get(z, 0), -len(pools[z]), z))
            chosen.append(pools[zone].pop())
            left[zone] = left.get(zone, 0) - 1
        return chosen

    # ------------------------------------------------------------------ shortfall analysis
    def engine(self) -> Engine:
        """The engine of the shortfall analysis: the one given, made by the factory given, or cpu bin packing."""
        if self._engine is None:
            self._engine = default_engine()
        elif not isinstance(self._engine, Engine):
            self._engine = self._engine()  # a factory
        return self._engine

    def _shortfall(
        self, unplaced: Sequence[TaskRequest], known: Mapping[str, list[str]], draining_idle: Mapping[str, list[str]]
    ) -> dict[str, int]:
        """Hosts of each group's shape needed for the unplaced tasks (before counting starting or drained ones)."""
        needs: dict[str, int] = {}
        tasks = list(unplaced)
        for rule in self.rules:
            if not tasks or not rule.shape:
                continue
            g = rule.group
            occupied = len(known[g]) - len(draining_idle[g])
            room = len(tasks) if rule.max_size is None else max(0, min(len(tasks), rule.max_size - occupied))
            used, placed = self.hosts_needed(rule, tasks, room)
            if used:
                needs[g] = used
                tasks = [t for t in tasks if t.id not in placed]
        self.unfit = tuple(t.id for t in tasks)
        return needs

    def hosts_needed(self, rule: AutoscaleRule, tasks: Sequence[TaskRequest], limit: int) -> tuple[int, set[str]]:
        """Pack `tasks` onto at most `limit` empty pseudo-hosts of the rule's shape with the engine; returns how
        many pseudo-hosts hold tasks and which tasks they hold (see `shortfall.hosts_needed`)."""
        return hosts_needed(self.engine(), rule.group, rule.shape, rule.attributes, self.group_attribute, tasks, limit)

    # ------------------------------------------------------------------ carrying actions out
    async def apply(self, actions: Sequence[Action]) -> list[Action]:
        """Record the actions and carry them out through the provider (without a provider, only record them:
        scale ups then count as anonymous starting hosts). Returns them with the new hostnames and any error."""
        now = self.clock()
        result: list[Action] = list(actions)
        for a in actions:  # first what needs no provider, so that the next run sees it at once
            if a.kind == "enable":
                for name in a.hostnames:
                    self._draining.pop(name, None)
                if a.reason == "capacity":
                    self._last_action[a.group] = now
            elif a.kind == "disable":
                for name in a.hostnames:
                    self._draining[name] = _Drain(a.group, now, self._evaluations)
                self._last_action[a.group] = now
        if self.on_change is not None and any(a.kind in ("enable", "disable") for a in actions):
            self.on_change(self.disabled)
        for i, a in enumerate(actions):
            if a.kind == "release":
                result[i] = await self._release(a, now)
            elif a.kind == "scale_up":
                result[i] = await self._scale_up(a, now)
        self.history.extend(result)
        for a in result:
            log.info(
                "autoscale",
                kind=a.kind,
                group=a.group,
                count=a.count,
                hosts=list(a.hostnames),
                reason=a.reason,
                error=a.error or None,
            )
        if self.on_change is not None:
            self.on_change(self.disabled)
        return result

    async def _release(self, a: Action, now: float) -> Action:
        for name in a.hostnames:
            self._draining.pop(name, None)
            self._released[name] = (a.group, now)
        if self.provider is None:
            return a
        try:
            await self.provider.scale_down(a.group, list(a.hostnames))
        except Exception as e:  # the hosts stay disabled and are tried again
            for name in a.hostnames:
                self._released.pop(name, None)
                self._draining[name] = _Drain(a.group, now, self._evaluations)
            return replace(a, error=f"{type(e).__name__}: {e}")
        return a

    async def _scale_up(self, a: Action, now: float) -> Action:
        self._last_action[a.group] = now
        launches = self._starting.setdefault(a.group, [])
        if self.provider is None:
            launches.extend(_Launch(None, now) for _ in range(a.count))
            return a
        try:
            names = await self.provider.scale_up(a.group, a.count)
        except Exception as e:
            return replace(a, error=f"{type(e).__name__}: {e}")
        if names:
            launches.extend(_Launch(name, now) for name in names)
        else:
            launches.extend(_Launch(None, now) for _ in range(a.count))
        return replace(a, count=len(names) or a.count, hostnames=tuple(names))

    # ------------------------------------------------------------------ bookkeeping
    def _observe(self, hosts: Sequence[Host], now: float) -> None:
        for h in hosts:
            group = self.group_of(h)
            if group is None:
                continue
            if h.hostname in self._released:
                self._released[h.hostname] = (group, now)  # still around: keep it released
                continue
            if h.hostname not in self._known:
                self._arrived(group, h.hostname)
            self._known[h.hostname] = _Known(group, h, now, self._evaluations)
        for name, k in list(self._known.items()):
            if now - k.seen_at > self.forget_after:
                del self._known[name]
                self._draining.pop(name, None)
        for name, (_, at) in list(self._released.items()):
            if now - at > self.forget_after:
                del self._released[name]
        for launches in self._starting.values():
            launches[:] = [x for x in launches if now - x.since <= self.launch_timeout]

    def _arrived(self, group: str, hostname: str) -> None:
        launches = self._starting.get(group, [])
        for i, x in enumerate(launches):
            if x.name == hostname:
                del launches[i]
                return
        for i, x in enumerate(launches):
            if x.name is None:
                del launches[i]
                return

    # ------------------------------------------------------------------ wiring to PlacementScheduler
    def after_run(
        self, result: SchedulingResult, hosts: Sequence[Host], tasks: Mapping[str, TaskRequest] | None = None
    ) -> asyncio.Task[list[Action]] | None:
        """For `PlacementScheduler(after_run=...)` (synchronous): decide now, carry out in the background. Skipped
        while the previous evaluation's actions are still being carried out. `tasks` maps task ids to requests
        (to find the unplaced tasks of `result.failures`); `attach` supplies the scheduler's."""
        if self._inflight is not None and not self._inflight.done():
            return None
        lookup = tasks if tasks is not None else self._tasks()
        unplaced = [t for tid in result.failures if (t := lookup.get(tid)) is not None]
        busy = {a.hostname for a in result.assignments}
        actions = self.decide(hosts, unplaced, busy)
        self._inflight = asyncio.get_running_loop().create_task(self.apply(actions))
        return self._inflight

    def attach(self, scheduler: Any) -> None:
        """Wire to a `PlacementScheduler`: evaluate after each of its runs, find unplaced tasks in its `tasks`,
        and keep its `disabled_hosts` equal to `disabled`."""
        self._tasks = lambda: scheduler.tasks
        scheduler.after_run = self.after_run

        def sync(disabled: frozenset[str]) -> None:
            scheduler.disabled_hosts.clear()
            scheduler.disabled_hosts.update(disabled)

        self.on_change = sync
