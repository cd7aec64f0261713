"""Offer constraints (the Mesos paper's two filter kinds), compiled once per framework:
"only nodes from list L" as predicates on agent attributes, "only nodes with at least R free" as a minimum."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from mesos_master.allocator import _vectors as vectors
from mesos_master.allocator.base import AttributeMatch, OfferConstraints
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import Resources

AttributePredicate = Callable[[Mapping[str, str]], bool]


def compile_match(match: AttributeMatch) -> Callable[[Mapping[str, str]], bool]:
    """One predicate; a missing attribute never matches. `regex` must match the whole value."""
    given = [x is not None for x in (match.equals, match.in_, match.regex)]
    if sum(given) != 1:
        raise ValueError(f"offer constraint on {quoted(match.attribute)}: give exactly one of equals, in_, regex")
    name = match.attribute
    if match.equals is not None:
        wanted = match.equals
        return lambda attrs: attrs.get(name) == wanted
    if match.in_ is not None:
        allowed = frozenset(match.in_)
        return lambda attrs: attrs.get(name) in allowed
    assert match.regex is not None
    try:
        pattern = re.compile(match.regex)
    except re.error as e:
        raise ValueError(f"offer constraint on {quoted(name)}: bad regex {quoted(match.regex)}: {e}") from None

    def matches(attrs: Mapping[str, str]) -> bool:
        value = attrs.get(name)
        return value is not None and pattern.fullmatch(value) is not None

    return matches


class CompiledConstraints:
    __slots__ = ("min_flat", "min_resources", "min_vec", "predicates", "uses_hostname")

    def __init__(self, constraints: OfferConstraints) -> None:
        self.predicates = tuple(compile_match(m) for m in constraints.attributes)
        # (agents share their other attributes: a predicate on the hostname is decided per agent)
        self.uses_hostname = any(m.attribute == "hostname" for m in constraints.attributes)
        self.min_resources = constraints.min_resources or None
        self.min_vec = vectors.vector(self.min_resources) if self.min_resources else {}
        # Ranges or sets in the minimum need a full (role-free) containment test; scalars a vector compare.
        self.min_flat = (
            Resources.flatten(self.min_resources)
            if self.min_resources is not None and vectors.has_non_scalars(self.min_resources)
            else None
        )

    def agent_ok(self, attributes: Mapping[str, str]) -> bool:
        return all(p(attributes) for p in self.predicates)

    def offer_ok(self, offer: Resources, offer_vec: Mapping[str, int]) -> bool:
        if self.min_resources is None:
            return True
        if not vectors.meets(offer_vec, self.min_vec):
            return False
        return self.min_flat is None or Resources.flatten(offer).contains(self.min_flat)
