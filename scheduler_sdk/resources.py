"""The `Resources` value type: an immutable bag of named resources, keyed by name and role.

Scalars (cpus, mem, disk, gpus, any name) are kept in fixed point with three decimals, as Mesos does, so that
sums and differences never drift. Ranges (ports) are kept as sorted, disjoint, inclusive intervals; sets as
frozensets. The text form is Mesos' own: ``cpus:4;mem:2048;ports:[31000-32000];cpus(eng):2;zones:{a,b}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from aiomesos.v1 import resources_pb2 as pb
from scheduler_sdk.enums import enum_name
from scheduler_sdk.quoting import quoted

UNRESERVED = "*"
_MILLI = 1000

Range = tuple[int, int]
_Key = tuple[str, str]  # (name, role)
_KeepFn = Callable[[str, str], bool]


class ResourcesError(ValueError):
    """Malformed resource text, or an operation that would leave a negative amount."""


def _to_milli(value: float) -> int:
    return round(value * _MILLI)


# The most of one scalar a resource may say it has: a trillion of its unit (a million TB of mem in MB) is more than
# any host holds, and its thousandths stay exact integers. Larger amounts are an error, not an overflow.
MAX_SCALAR = 1e12
#: A port is 16 bits; the ends of any other range are bounded as scalars are.
MAX_PORT = 65535
MAX_RANGE_VALUE = int(MAX_SCALAR)
#: The most ranges (or set items) one resource may list: a host's ports are a few ranges, and 1024 single ports
#: are more than a task asks for.
MAX_RANGES = 1024
MAX_SET_ITEMS = 1024


def _amount_in_milli(value: float, shown: object, name: str) -> int:
    """A scalar amount read from a user (text or wire), checked, in thousandths."""
    if not 0 <= value <= MAX_SCALAR:  # NaN fails this too
        raise ResourcesError(f"invalid amount {shown} for {quoted(name)}: must be a number from 0 to {MAX_SCALAR:g}")
    return _to_milli(value)


def _checked_range(name: str, begin: int, end: int) -> Range:
    """A range read from a user (text or wire): it begins before it ends, and ends within its kind's bound."""
    if begin > end:
        raise ResourcesError(f"range [{begin}-{end}] for {quoted(name)} ends before it begins")
    limit = MAX_PORT if name == "ports" else MAX_RANGE_VALUE
    if end > limit:
        raise ResourcesError(f"range [{begin}-{end}] for {quoted(name)} goes past {limit}")
    return begin, end


def _checked_count(name: str, count: int, what: str, limit: int) -> None:
    if count > limit:
        raise ResourcesError(f"resource {quoted(name)} lists {count} {what}, at most {limit}")


def _normalize_ranges(ranges: Iterable[Range]) -> tuple[Range, ...]:
    out: list[list[int]] = []
    for begin, end in sorted(ranges):
        if begin > end:
            raise ResourcesError(f"range [{begin}-{end}] ends before it begins")
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def _subtract_ranges(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    result: list[Range] = []
    for begin, end in have:
        pieces = [(begin, end)]
        for tb, te in take:
            nxt: list[Range] = []
            for pb_, pe in pieces:
                if te < pb_ or tb > pe:
                    nxt.append((pb_, pe))
                    continue
                if pb_ < tb:
                    nxt.append((pb_, tb - 1))
                if te < pe:
                    nxt.append((te + 1, pe))
            pieces = nxt
        result.extend(pieces)
    return _normalize_ranges(result)


def _ranges_contain(have: tuple[Range, ...], want: tuple[Range, ...]) -> bool:
    return all(any(hb <= wb and we <= he for hb, he in have) for wb, we in want)


def _range_count(ranges: tuple[Range, ...]) -> int:
    return sum(e - b + 1 for b, e in ranges)


@dataclass(frozen=True, slots=True)
class Resources:
    """An immutable bag of resources. Build with `Resources.parse`, `Resources.of` or `Resources.from_proto`."""

    _scalars: Mapping[_Key, int]  # milli-units
    _ranges: Mapping[_Key, tuple[Range, ...]]
    _sets: Mapping[_Key, frozenset[str]]
    # What `scalar_sums` and `role_set` computed, kept (the bag never changes): a scrape of 50,000 agents sums
    # their totals, and must not rebuild every one of them each time.
    _sums: Mapping[str, float] | None = field(default=None, compare=False, repr=False)
    _role_set: frozenset[str] | None = field(default=None, compare=False, repr=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def empty(cls) -> Resources:
        return _EMPTY

    @classmethod
    def _make(
        cls,
        scalars: Mapping[_Key, int],
        ranges: Mapping[_Key, tuple[Range, ...]],
        sets: Mapping[_Key, frozenset[str]],
    ) -> Resources:
        return cls(
            {k: v for k, v in scalars.items() if v != 0},
            {k: v for k, v in ranges.items() if v},
            {k: v for k, v in sets.items() if v},
        )

    @classmethod
    def of(cls, role: str = UNRESERVED, **scalars: float) -> Resources:
        """`Resources.of(cpus=1, mem=128)`: scalars only, one role."""
        return cls.from_scalars(scalars, role)

    @classmethod
    def from_scalars(cls, scalars: Mapping[str, float], role: str = UNRESERVED) -> Resources:
        """`Resources.from_scalars({"cpus": 1, "gpus": 1})`: scalars only, one role."""
        for name, value in scalars.items():
            if value < 0:
                raise ResourcesError(f"negative amount {value} for {name}")
        return cls._make({(n, role): _to_milli(v) for n, v in scalars.items()}, {}, {})

    @classmethod
    def ports(cls, *ranges: Range, role: str = UNRESERVED, name: str = "ports") -> Resources:
        return cls._make({}, {(name, role): _normalize_ranges(ranges)}, {})

    @classmethod
    def parse(cls, text: str, default_role: str = UNRESERVED) -> Resources:
        """Parse Mesos' text form; raise `ResourcesError` naming the bad part."""
        scalars: dict[_Key, int] = {}
        ranges: dict[_Key, list[Range]] = {}
        sets: dict[_Key, set[str]] = {}
        for raw in text.split(";"):
            part = raw.strip()
            if not part:
                continue
            m = _PART.fullmatch(part)
            if not m:
                raise ResourcesError(f"malformed resource {quoted(part)}: expected NAME[(ROLE)]:VALUE")
            name, role, value = m.group("name"), m.group("role") or default_role, m.group("value").strip()
            key = (name, role)
            if value.startswith("["):
                if not value.endswith("]"):
                    raise ResourcesError(f"malformed ranges for {quoted(name)}: {quoted(value)}")
                listed = [s.strip() for s in value[1:-1].split(",") if s.strip()]
                _checked_count(name, len(listed) + len(ranges.get(key, ())), "ranges", MAX_RANGES)
                for item in listed:
                    rm = _RANGE.fullmatch(item)
                    if not rm:
                        raise ResourcesError(f"malformed range {quoted(item)} for {quoted(name)}: expected BEGIN-END")
                    begin, end = int(rm.group(1)), int(rm.group(2) or rm.group(1))
                    ranges.setdefault(key, []).append(_checked_range(name, begin, end))
            elif value.startswith("{"):
                if not value.endswith("}"):
                    raise ResourcesError(f"malformed set for {quoted(name)}: {quoted(value)}")
                items = {s.strip() for s in value[1:-1].split(",") if s.strip()}
                sets.setdefault(key, set()).update(items)
                _checked_count(name, len(sets[key]), "set items", MAX_SET_ITEMS)
            else:
                try:
                    amount = float(value)
                except ValueError:
                    raise ResourcesError(
                        f"malformed amount {quoted(value)} for {quoted(name)}: expected a number"
                    ) from None
                scalars[key] = scalars.get(key, 0) + _amount_in_milli(amount, repr(value[:32]), name)
        return cls._make(
            scalars,
            {k: _normalize_ranges(v) for k, v in ranges.items()},
            {k: frozenset(v) for k, v in sets.items()},
        )

    @classmethod
    def from_proto(cls, resources: Iterable[pb.Resource]) -> Resources:
        scalars: dict[_Key, int] = {}
        ranges: dict[_Key, list[Range]] = {}
        sets: dict[_Key, set[str]] = {}
        for r in resources:
            if not r.name:
                raise ResourcesError("resource without a name")
            key = (r.name, r.role or UNRESERVED)
            if r.type == pb.Value.SCALAR:
                v = r.scalar.value
                scalars[key] = scalars.get(key, 0) + _amount_in_milli(v, v, r.name)
            elif r.type == pb.Value.RANGES:
                _checked_count(r.name, len(r.ranges.range) + len(ranges.get(key, ())), "ranges", MAX_RANGES)
                for rg in r.ranges.range:
                    ranges.setdefault(key, []).append(_checked_range(r.name, rg.begin, rg.end))
            elif r.type == pb.Value.SET:
                _checked_count(r.name, len(r.set.item) + len(sets.get(key, ())), "set items", MAX_SET_ITEMS)
                sets.setdefault(key, set()).update(r.set.item)
            else:
                raise ResourcesError(
                    f"resource {quoted(r.name)} has unsupported type {enum_name(pb.Value.Type, r.type)}"
                )
        return cls._make(
            scalars,
            {k: _normalize_ranges(v) for k, v in ranges.items()},
            {k: frozenset(v) for k, v in sets.items()},
        )

    def to_proto(self) -> list[pb.Resource]:
        out: list[pb.Resource] = []
        for (name, role), milli in sorted(self._scalars.items()):
            out.append(
                pb.Resource(name=name, role=role, type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=milli / _MILLI))
            )
        for (name, role), rgs in sorted(self._ranges.items()):
            out.append(
                pb.Resource(
                    name=name,
                    role=role,
                    type=pb.Value.RANGES,
                    ranges=pb.Value.Ranges(range=[pb.Value.Range(begin=b, end=e) for b, e in rgs]),
                )
            )
        for (name, role), items in sorted(self._sets.items()):
            out.append(pb.Resource(name=name, role=role, type=pb.Value.SET, set=pb.Value.Set(item=sorted(items))))
        return out

    # ----------------------------------------------------------------- algebra
    def __add__(self, other: Resources) -> Resources:
        if not other:
            return self
        if not self:
            return other
        scalars = dict(self._scalars)
        for k, v in other._scalars.items():
            scalars[k] = scalars.get(k, 0) + v
        ranges = dict(self._ranges)
        for k, rgs in other._ranges.items():
            ranges[k] = _normalize_ranges(ranges.get(k, ()) + rgs)
        sets = dict(self._sets)
        for k, s in other._sets.items():
            sets[k] = sets.get(k, frozenset()) | s
        return Resources._make(scalars, ranges, sets)

    def __sub__(self, other: Resources) -> Resources:
        """Subtract what `other` holds; raise `ResourcesError` if `self` does not contain it."""
        if not other:
            return self
        if not self.contains(other):
            raise ResourcesError(f"cannot subtract {other} from {self}: not contained")
        return self.subtract_clamped(other)

    def subtract_clamped(self, other: Resources) -> Resources:
        """Subtract what `other` holds, dropping whatever `self` does not have (never negative)."""
        scalars = dict(self._scalars)
        for k, v in other._scalars.items():
            if k in scalars:
                scalars[k] = max(0, scalars[k] - v)
        if not other._ranges and not other._sets:  # scalars only (most tasks): the rest is shared, as it is
            return Resources({k: v for k, v in scalars.items() if v}, self._ranges, self._sets)
        ranges = dict(self._ranges)
        for k, rgs in other._ranges.items():
            if k in ranges:
                ranges[k] = _subtract_ranges(ranges[k], rgs)
        sets = dict(self._sets)
        for k, s in other._sets.items():
            if k in sets:
                sets[k] = sets[k] - s
        return Resources._make(scalars, ranges, sets)

    def contains(self, other: Resources) -> bool:
        """True when every resource of `other` (same name and role) is within `self`."""
        for k, v in other._scalars.items():
            if self._scalars.get(k, 0) < v:
                return False
        for k, rgs in other._ranges.items():
            if not _ranges_contain(self._ranges.get(k, ()), rgs):
                return False
        return all(s <= self._sets.get(k, frozenset()) for k, s in other._sets.items())

    def fit_count(self, unit: Resources, limit: int | None = None) -> int:
        """How many copies of `unit` `self` holds side by side (as `contains` counts: same name and role), at most
        `limit`: how many tasks of that size an offer takes. An empty `unit` is a ResourcesError."""
        if not unit:
            raise ResourcesError("fit_count of empty resources: any number fits")
        if not unit._ranges and not unit._sets:
            n = min(self._scalars.get(k, 0) // v for k, v in unit._scalars.items())
            return n if limit is None else max(0, min(n, limit))
        n, rest = 0, self
        while (limit is None or n < limit) and rest.contains(unit):
            rest, n = rest.subtract_clamped(unit), n + 1
        return n

    def __ge__(self, other: Resources) -> bool:
        return self.contains(other)

    def __le__(self, other: Resources) -> bool:
        return other.contains(self)

    def __bool__(self) -> bool:
        return bool(self._scalars or self._ranges or self._sets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return self._scalars == other._scalars and self._ranges == other._ranges and self._sets == other._sets

    def __hash__(self) -> int:
        return hash((frozenset(self._scalars.items()), frozenset(self._ranges.items()), frozenset(self._sets.items())))

    # ----------------------------------------------------------------- views
    def names(self) -> set[str]:
        return {k[0] for k in (*self._scalars, *self._ranges, *self._sets)}

    def roles(self) -> set[str]:
        return {k[1] for k in (*self._scalars, *self._ranges, *self._sets)}

    def role_set(self) -> frozenset[str]:
        """`roles()`, computed once and shared."""
        roles = self._role_set
        if roles is None:
            roles = frozenset(self.roles())
            object.__setattr__(self, "_role_set", roles)
        return roles

    def scalar_sums(self) -> Mapping[str, float]:
        """`scalars()`, computed once and shared (read-only: a copy is `scalars()`)."""
        sums = self._sums
        if sums is None:
            sums = self.scalars()
            object.__setattr__(self, "_sums", sums)
        return sums

    def scalar(self, name: str, role: str | None = None) -> float:
        """The amount of a scalar, summed over roles unless `role` is given."""
        return sum(v for (n, r), v in self._scalars.items() if n == name and (role is None or r == role)) / _MILLI

    def scalars(self) -> dict[str, float]:
        """Every scalar summed over roles, by name."""
        out: dict[str, int] = {}
        for (n, _), v in self._scalars.items():
            out[n] = out.get(n, 0) + v
        return {n: v / _MILLI for n, v in out.items()}

    def ranges(self, name: str = "ports", role: str | None = None) -> tuple[Range, ...]:
        merged: list[Range] = []
        for (n, r), v in self._ranges.items():
            if n == name and (role is None or r == role):
                merged.extend(v)
        return _normalize_ranges(merged)

    def range_count(self, name: str = "ports") -> int:
        return _range_count(self.ranges(name))

    def set_items(self, name: str, role: str | None = None) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for (n, r), v in self._sets.items():
            if n == name and (role is None or r == role):
                out |= v
        return out

    def allocatable_to(self, role: str) -> Resources:
        """What a framework in `role` may be offered: unreserved resources, and those reserved for `role`
        or for one of its ancestors (`eng` reservations reach `eng/prod`)."""
        return self.filter(lambda _n, r: r in (UNRESERVED, role) or role.startswith(r + "/"))

    def reserved(self, role: str | None = None) -> Resources:
        return self.filter(lambda _n, r: r != UNRESERVED and (role is None or r == role))

    def unreserved(self) -> Resources:
        return self.filter(lambda _n, r: r == UNRESERVED)

    def filter(self, keep: _KeepFn) -> Resources:
        return Resources._make(
            {k: v for k, v in self._scalars.items() if keep(*k)},
            {k: v for k, v in self._ranges.items() if keep(*k)},
            {k: v for k, v in self._sets.items() if keep(*k)},
        )

    def only(self, *names: str) -> Resources:
        wanted = set(names)
        return self.filter(lambda n, _r: n in wanted)

    def with_role(self, role: str) -> Resources:
        """The same amounts, all carried under `role`."""
        return Resources.flatten(self, role)

    @staticmethod
    def flatten(res: Resources, role: str = UNRESERVED) -> Resources:
        scalars: dict[_Key, int] = {}
        for (n, _), v in res._scalars.items():
            scalars[(n, role)] = scalars.get((n, role), 0) + v
        ranges: dict[_Key, tuple[Range, ...]] = {}
        for (n, _), rgs in res._ranges.items():
            ranges[(n, role)] = _normalize_ranges(ranges.get((n, role), ()) + rgs)
        sets: dict[_Key, frozenset[str]] = {}
        for (n, _), s in res._sets.items():
            sets[(n, role)] = sets.get((n, role), frozenset()) | s
        return Resources._make(scalars, ranges, sets)

    def dominant_share(self, total: Resources) -> float:
        """max over scalar names of self/total (names missing from `total` are ignored)."""
        mine = self.scalars()
        best = 0.0
        for name, amount in total.scalars().items():
            if amount > 0:
                best = max(best, mine.get(name, 0.0) / amount)
        return best

    def take_ports(self, count: int, name: str = "ports") -> Resources:
        """The first `count` ports of `self` (lowest first, role kept), or raise if there are fewer."""
        if count <= 0:
            return _EMPTY
        taken: dict[_Key, list[Range]] = {}
        left = count
        for key in sorted(k for k in self._ranges if k[0] == name):
            for b, e in self._ranges[key]:
                if left == 0:
                    break
                n = min(left, e - b + 1)
                taken.setdefault(key, []).append((b, b + n - 1))
                left -= n
        if left:
            raise ResourcesError(f"only {self.range_count(name)} {name} available, {count} needed")
        return Resources._make({}, {k: _normalize_ranges(v) for k, v in taken.items()}, {})

    def __iter__(self) -> Iterator[pb.Resource]:
        return iter(self.to_proto())

    # ----------------------------------------------------------------- text
    def __str__(self) -> str:
        parts: list[str] = []

        def label(key: _Key) -> str:
            return key[0] if key[1] == UNRESERVED else f"{key[0]}({key[1]})"

        for key, milli in sorted(self._scalars.items()):
            parts.append(f"{label(key)}:{_fmt(milli / _MILLI)}")
        for key, rgs in sorted(self._ranges.items()):
            body = ",".join(f"{b}-{e}" for b, e in rgs)
            parts.append(f"{label(key)}:[{body}]")
        for key, items in sorted(self._sets.items()):
            parts.append(f"{label(key)}:{{{','.join(sorted(items))}}}")
        return ";".join(parts)

    def __repr__(self) -> str:
        return f"Resources({str(self)!r})"


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.3f}".rstrip("0")


_PART = re.compile(r"(?P<name>[A-Za-z_][\w.\-]*)(?:\((?P<role>[^()]+)\))?\s*:\s*(?P<value>.+)")
_RANGE = re.compile(r"\s*(\d{1,20})\s*(?:-\s*(\d{1,20})\s*)?")
_EMPTY = Resources({}, {}, {})


def attribute_values(attributes: Iterable[pb.Attribute], hostname: str = "") -> dict[str, str]:
    """Text and scalar attributes as text (`zone` -> `a`, `generation` -> `3`), plus `hostname`: what offer
    constraints and placement constraints match against."""
    out = {"hostname": hostname} if hostname else {}
    for a in attributes:
        if a.type == pb.Value.TEXT:
            out[a.name] = a.text.value
        elif a.type == pb.Value.SCALAR:
            out[a.name] = _fmt(a.scalar.value)
    return out
