"""The built-in constraints (the `Constraint` contract is in extension.py): each judges one (task, host) pair in
the context of the run, and works as hard or soft.

``evaluate(task, host, ctx) -> ConstraintResult(ok, score, reason)``. Used as a *hard* constraint (a filter) only
``ok`` is read: a host where it is False is dropped and the reason is reported. Used as a *soft* constraint only
``score`` (0 worst .. 1 best) is read and combined with fitness by the engine.

Co-tasks are the tasks of the same ``group`` (a task with an empty group has none): the ones running on a host
(`Host.running`) and the ones this run has already assigned both count. The attribute ``"hostname"`` always means
the host itself. A host that lacks the attribute a constraint asks about fails it (score 0).

- `UniqueByAttribute(attr)`: at most one task of the group per value of the attribute (per host, per zone, ...).
  Soft score ``1 / (1 + co-tasks with that value)``.
- `BalancedByAttribute(attr, values=None)`: spread the group evenly over the attribute's values (all values seen
  on the run's hosts, or the given ones). Hard: a value may not go above (lowest count among the values) + 1, i.e.
  the host's value must currently hold the lowest count. Soft: ``clamp((avg - count + 1) / (avg + 1))`` with
  ``count`` the group's tasks on the host's value and ``avg`` their mean over the values: 1 for a value with none
  of the group, falling linearly with the count to 0 for a value a whole task above the average.
- `ExclusiveHost()`: the task wants a host with nothing else on it. As a hard constraint the engine also keeps
  every later task of the same run off the host once the exclusive task is placed there.
- `AttributeValue(attr, equals=... | in_=... | regex=...)`: pin to a hostname, zone, instance type, ...
  (``regex`` must match the whole value).
- `LifecycleAffinity(lifecycle, lifecycle_of)`: keep tasks of one lifecycle ("perpetual", "transient") on hosts
  apart from the other's, so that hosts empty out when the transient work ends (Fenzo's objective). Soft: 1.0 on a
  host whose tasks of a known lifecycle are all of this one, 0.5 on a host with none, 0.0 where any task of another
  lifecycle is; hard: ok unless another lifecycle is there. ``lifecycle_of`` maps groups to lifecycles (groups not
  in it are neutral); ``outside`` maps agent ids to lifecycles of tasks there that the run does not see.
- `Custom(name, fn)`: ``fn(task, host, ctx)`` returns a bool, a score in [0, 1] (as hard: ok when > 0) or a
  `ConstraintResult`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping

from scheduler_sdk.placement.extension import (
    Constraint,
    CustomFn,
    HostView,
    RunContext,
    attribute_values,
    group_counts_by_value,
    host_attribute,
)
from scheduler_sdk.placement.model import ConstraintResult, TaskRequest

__all__ = [
    "OK",
    "AttributeValue",
    "BalancedByAttribute",
    "Custom",
    "CustomFn",
    "ExclusiveHost",
    "LifecycleAffinity",
    "UniqueByAttribute",
    "as_constraint",
    "attribute_values",
    "group_counts_by_value",
    "host_attribute",
]

OK = ConstraintResult(True, 1.0, "")


def _missing(attribute: str) -> ConstraintResult:
    return ConstraintResult(False, 0.0, f"host has no attribute {attribute!r}")


class UniqueByAttribute:
    """At most one task of the group per value of ``attribute`` ("hostname": per host)."""

    __slots__ = ("attribute", "name")

    def __init__(self, attribute: str = "hostname") -> None:
        self.attribute = attribute
        self.name = f"unique({attribute})"

    def evaluate(self, task: TaskRequest, host: HostView, ctx: RunContext) -> ConstraintResult:
        if not task.group:
            return OK
        value = host_attribute(host, self.attribute)
        if value is None:
            return _missing(self.attribute)
        if self.attribute == "hostname":
            n = host.groups().get(task.group, 0)
        else:
            n = group_counts_by_value(ctx, task.group, self.attribute).get(value, 0)
        if n <= 0:
            return OK
        return ConstraintResult(
            False, 1.0 / (1 + n), f"{n} task(s) of group {task.group!r} already on {self.attribute} {value!r}"
        )

    def __repr__(self) -> str:
        return f"UniqueByAttribute({self.attribute!r})"


class BalancedByAttribute:
    """Spread the group evenly over the values of ``attribute`` (e.g. zones)."""

    __slots__ = ("attribute", "name", "values")

    def __init__(self, attribute: str, values: Iterable[str] | None = None) -> None:
        self.attribute = attribute
        self.values: tuple[str, ...] | None = None if values is None else tuple(sorted(set(values)))
        if self.values is not None and not self.values:
            raise ValueError("BalancedByAttribute: values, when given, must not be empty")
        self.name = f"balanced({attribute})"

    def evaluate(self, task: TaskRequest, host: HostView, ctx: RunContext) -> ConstraintResult:
        if not task.group:
            return OK
        value = host_attribute(host, self.attribute)
        if value is None:
            return _missing(self.attribute)
        domain = self.values if self.values is not None else attribute_values(ctx, self.attribute)
        if value not in domain:
            return ConstraintResult(False, 0.0, f"{self.attribute} {value!r} is not among the balanced values")
        counts = group_counts_by_value(ctx, task.group, self.attribute)
        here = counts.get(value, 0)
        lowest = min(counts.get(v, 0) for v in domain)
        avg = sum(counts.get(v, 0) for v in domain) / len(domain)
        x = (avg - here + 1.0) / (avg + 1.0)
        score = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
        if here <= lowest:
            return ConstraintResult(True, score, "")
        return ConstraintResult(
            False,
            score,
            f"{self.attribute} {value!r} has {here} task(s) of group {task.group!r}, the least loaded has {lowest}",
        )

    def __repr__(self) -> str:
        return f"BalancedByAttribute({self.attribute!r}, values={self.values!r})"


class ExclusiveHost:
    """The task wants a host with no other task on it (running or assigned this run).

    As a hard constraint the engine also bars every later task of the run from a host once an exclusive task has
    been placed there (reported as a failure of this constraint's name).
    """

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = "exclusive_host"

    def evaluate(self, task: TaskRequest, host: HostView, ctx: RunContext) -> ConstraintResult:
        n = host.task_count()
        if n == 0:
            return OK
        return ConstraintResult(False, 0.0, f"host has {n} task(s), the task wants it exclusively")

    def __repr__(self) -> str:
        return "ExclusiveHost()"


class AttributeValue:
    """Pin to hosts whose attribute equals a value, is one of several, or fully matches a regex."""

    __slots__ = ("_check", "_want", "attribute", "name")

    def __init__(
        self,
        attribute: str,
        *,
        equals: str | None = None,
        in_: Collection[str] | None = None,
        regex: str | re.Pattern[str] | None = None,
    ) -> None:
        given = sum(x is not None for x in (equals, in_, regex))
        if given != 1:
            raise ValueError("AttributeValue needs exactly one of equals=, in_=, regex=")
        self.attribute = attribute
        self.name = f"attribute({attribute})"
        self._check: Callable[[str], bool]
        if equals is not None:
            want = equals
            self._check = lambda v: v == want
            self._want = f"{equals!r}"
        elif in_ is not None:
            if isinstance(in_, str):
                raise ValueError("AttributeValue: in_ takes a collection of values, not a string")
            allowed = frozenset(in_)
            self._check = allowed.__contains__
            self._want = "one of " + ", ".join(repr(v) for v in sorted(allowed))
        else:
            assert regex is not None
            pattern = re.compile(regex) if isinstance(regex, str) else regex
            self._check = lambda v: pattern.fullmatch(v) is not None
            self._want = f"a match for /{pattern.pattern}/"

    def evaluate(self, task: TaskRequest, host: HostView, ctx: RunContext) -> ConstraintResult:
        value = host_attribute(host, self.attribute)
        if value is None:
            return _missing(self.attribute)
        if self._check(value):
            return OK
        return ConstraintResult(False, 0.0, f"{self.attribute} is {value!r}, wants {self._want}")

    def __repr__(self) -> str:
        return f"AttributeValue({self.attribute!r}, {self._want})"


class LifecycleAffinity:
    """Perpetual tasks on hosts apart from transient ones (see the module docstring for the scores).

    ``lifecycle_of`` (group -> lifecycle) and ``outside`` (agent id -> the lifecycles of tasks on it that the run's
    hosts do not show, e.g. another scheduler's) are read, never copied: their owner keeps them current between
    runs and must not change them during one."""

    __slots__ = ("lifecycle", "lifecycle_of", "name", "outside")

    _NONE: Mapping[str, Collection[str]] = {}

    def __init__(
        self,
        lifecycle: str,
        lifecycle_of: Mapping[str, str],
        outside: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        if not lifecycle:
            raise ValueError("LifecycleAffinity: lifecycle must not be empty")
        self.lifecycle = lifecycle
        self.lifecycle_of = lifecycle_of
        self.outside = outside if outside is not None else self._NONE
        self.name = f"lifecycle({lifecycle})"

    def evaluate(self, task: TaskRequest, host: HostView, ctx: RunContext) -> ConstraintResult:
        same = False
        for lifecycle in self.outside.get(host.agent_id, ()):
            if lifecycle == self.lifecycle:
                same = True
            elif lifecycle:
                return self._other(lifecycle)
        of = self.lifecycle_of
        for group in host.groups():
            lifecycle = of.get(group, "")
            if lifecycle == self.lifecycle:
                same = True
            elif lifecycle:
                return self._other(lifecycle)
        return OK if same else ConstraintResult(True, 0.5, "")

    def _other(self, lifecycle: str) -> ConstraintResult:
        return ConstraintResult(False, 0.0, f"host runs {lifecycle} tasks, the task is {self.lifecycle}")

    def __repr__(self) -> str:
        return f"LifecycleAffinity({self.lifecycle!r})"


class Custom:
    """A user-defined constraint from a function ``fn(task, host, ctx)``.

    The function returns a bool (score 1 or 0), a number (the score, clamped to [0, 1]; as hard it passes when > 0)
    or a full `ConstraintResult`.
    """

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: CustomFn) -> None:
        if not callable(fn):
            raise TypeError(f"Custom({name!r}): fn must be callable as fn(task, host, ctx)")
        self.name = name
        self.fn = fn

    def evaluate(self, task: TaskRequest, host: HostView, ctx: RunContext) -> ConstraintResult:
        r = self.fn(task, host, ctx)
        if isinstance(r, ConstraintResult):
            return r
        if isinstance(r, bool):
            return OK if r else ConstraintResult(False, 0.0, f"{self.name} rejected the host")
        if isinstance(r, int | float):
            s = float(r)
            s = 0.0 if not s > 0.0 else 1.0 if s > 1.0 else s
            return ConstraintResult(s > 0.0, s, "" if s > 0.0 else f"{self.name} scored the host 0")
        raise TypeError(f"constraint {self.name!r} returned {r!r}; expected bool, float or ConstraintResult")

    def __repr__(self) -> str:
        return f"Custom({self.name!r})"


def as_constraint(c: Constraint | CustomFn | object) -> Constraint:
    """Accept a constraint as is, or wrap a plain function ``fn(task, host, ctx)`` into `Custom`; anything else is a
    TypeError. (Called for every constraint of every task placed: a duck-type check, not a protocol isinstance.)"""
    if hasattr(c, "evaluate"):
        return c  # type: ignore[return-value]
    if callable(c):
        return Custom(getattr(c, "__name__", "custom"), c)
    raise TypeError(f"not a constraint: {c!r} (needs evaluate(task, host, ctx), or be a function)")
