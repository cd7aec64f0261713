"""Scalar vectors: a `Resources`' scalars summed over roles, by name, in fixed-point milli-units (ints).

The allocator's inner loop works on these plain dicts instead of `Resources` objects: shares, quota headroom,
limits and minimums are all role-free comparisons of amounts. Milli-units keep sums exact (as `Resources` does).
`Resources` keeps its scalars as ``{(name, role): milli}``; reading that mapping directly is the one place the
allocator relies on the representation, for speed.
"""

from __future__ import annotations

from collections.abc import Mapping

from scheduler_sdk.resources import UNRESERVED, Resources

Vec = dict[str, int]
MILLI = 1000


def vectors(res: Resources) -> tuple[Vec, Vec]:
    """(every scalar by name, the reserved scalars by name), in milli-units. The reserved part is usually
    empty, which is why the books keep it rather than the unreserved part."""
    everything: Vec = {}
    reserved: Vec = {}
    for (name, role), milli in res._scalars.items():
        everything[name] = everything.get(name, 0) + milli
        if role != UNRESERVED:
            reserved[name] = reserved.get(name, 0) + milli
    return everything, reserved


def unreserved_of(vec: Mapping[str, int], rvec: Mapping[str, int]) -> Vec:
    """`vec` less its reserved part `rvec`."""
    if not rvec:
        return dict(vec)
    return positive_diff(vec, rvec)


def vector(res: Resources) -> Vec:
    """Every scalar by name (summed over roles), in milli-units."""
    out: Vec = {}
    for (name, _role), milli in res._scalars.items():
        out[name] = out.get(name, 0) + milli
    return out


def reserved_by_role(res: Resources) -> dict[str, Vec]:
    """The reserved scalars by reservation role, then by name."""
    out: dict[str, Vec] = {}
    for (name, role), milli in res._scalars.items():
        if role != UNRESERVED:
            vec = out.setdefault(role, {})
            vec[name] = vec.get(name, 0) + milli
    return out


def has_reserved(res: Resources) -> bool:
    return any(role != UNRESERVED for (_n, role) in (*res._scalars, *res._ranges, *res._sets))


def add_into(target: Vec, vec: Mapping[str, int]) -> None:
    for name, milli in vec.items():
        target[name] = target.get(name, 0) + milli


def sub_from(target: Vec, vec: Mapping[str, int]) -> None:
    """Subtract, dropping names that reach zero (never below zero: books are clamped like `Resources`)."""
    for name, milli in vec.items():
        left = target.get(name, 0) - milli
        if left > 0:
            target[name] = left
        else:
            target.pop(name, None)


def meets(vec: Mapping[str, int], minimum: Mapping[str, int]) -> bool:
    """True when `vec` holds at least `minimum` of every name (role-free)."""
    return all(vec.get(name, 0) >= milli for name, milli in minimum.items())


def meets_any(vec: Mapping[str, int], minimums: tuple[Vec, ...]) -> bool:
    """Mesos' minimum allocatable test: an empty list of minimums lets anything non-empty through."""
    if not minimums:
        return bool(vec)
    for minimum in minimums:  # plain loops: this runs for every agent of a cycle
        for name, milli in minimum.items():
            if vec.get(name, 0) < milli:
                break
        else:
            return True
    return False


def positive_diff(a: Mapping[str, int], b: Mapping[str, int]) -> Vec:
    """max(0, a - b) for every name of `a`."""
    out: Vec = {}
    for name, milli in a.items():
        left = milli - b.get(name, 0)
        if left > 0:
            out[name] = left
    return out


def to_resources(vec: Mapping[str, int], role: str = UNRESERVED) -> Resources:
    return Resources.from_scalars({name: milli / MILLI for name, milli in vec.items() if milli > 0}, role)


def shrink_unreserved(res: Resources, unreserved: Mapping[str, int], allowed: Mapping[str, int]) -> Resources:
    """`res` with its unreserved scalars cut down to `allowed` (by name); other resources are kept."""
    excess = {}
    for name, cap in allowed.items():
        have = unreserved.get(name, 0)
        if have > cap:
            excess[name] = (have - max(cap, 0)) / MILLI
    if not excess:
        return res
    return res.subtract_clamped(Resources.from_scalars(excess))


def has_non_scalars(res: Resources) -> bool:
    return bool(res._ranges or res._sets)


def intersection(a: Resources, b: Resources) -> Resources:
    """The part of `a` that `b` also has (same names and roles)."""
    if a is b or a == b:
        return a
    return a.subtract_clamped(a.subtract_clamped(b))


def take_role_free(want: Resources, pool: Resources, role: str) -> Resources:
    """Up to `want` taken out of `pool` by name alone, whatever the reservation roles: what the pool holds under
    roles `role` may use first. Used to keep the books straight when resources changed reservation while
    allocated (a RESERVE or UNRESERVE of offered resources)."""

    def rank(key: tuple[str, str]) -> tuple[int, str]:
        r = key[1]
        usable = r in (UNRESERVED, role) or role.startswith(r + "/")
        return (0 if usable else 1, r)

    scalars: dict[tuple[str, str], int] = {}
    pool_scalars = dict(pool._scalars)
    for (name, _r), amount in sorted(want._scalars.items()):
        need = amount
        for key in sorted((k for k in pool_scalars if k[0] == name), key=rank):
            if need <= 0:
                break
            got = min(need, pool_scalars[key])
            if got > 0:
                scalars[key] = scalars.get(key, 0) + got
                pool_scalars[key] -= got
                need -= got
    taken = Resources._make(scalars, {}, {})
    for (name, _r), rgs in sorted(want._ranges.items()):
        for key in sorted((k for k in pool._ranges if k[0] == name), key=rank):
            candidate = Resources._make({}, {key: rgs}, {})
            part = intersection(candidate, Resources._make({}, {key: pool._ranges[key]}, {}))
            part = part.subtract_clamped(taken)
            taken = taken + part
    for (name, _r), items in sorted(want._sets.items()):
        for key in sorted((k for k in pool._sets if k[0] == name), key=rank):
            part = Resources._make({}, {}, {key: items & pool._sets[key]})
            part = part.subtract_clamped(taken)
            taken = taken + part
    return taken
