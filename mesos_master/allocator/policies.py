"""Allocation policies by name: the built-in sorters and third-party ones from the entry-point group
``aiomesos.allocators`` (`importlib.metadata`). See docs/allocator-plugins.md."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from mesos_master.allocator.base import Allocator
from mesos_master.allocator.hierarchical import HierarchicalAllocator
from mesos_master.allocator.sorter import DRFSorter, FairSorter, PrioritySorter, RandomSorter, Sorter

ENTRY_POINT_GROUP = "aiomesos.allocators"

BUILTIN: dict[str, type[Sorter]] = {
    "drf": DRFSorter,
    "hierarchical": DRFSorter,  # the historical name of the default
    "fair": FairSorter,
    "priority": PrioritySorter,
    "random": RandomSorter,
}

#: Options the master passes from its flags whatever the policy (``--fair-resource``, ``--priorities``,
#: ``--allocator-seed``): a policy that does not take one simply does not get it.
POLICY_OPTIONS = frozenset({"fair_resource", "priorities", "seed"})


def plugin_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_allocators() -> list[str]:
    """Every name `create_allocator` accepts: the built-in ones, then the installed plugins'."""
    return sorted(BUILTIN) + sorted(set(plugin_entry_points()) - set(BUILTIN))


def create_allocator(name: str, **kwargs: Any) -> Allocator:
    """Build the allocator policy named on the command line (``aiomesos master --allocator NAME``).

    Keyword arguments go where they are accepted: the policy's own options (e.g. ``fair_resource`` for ``fair``,
    ``priorities`` for ``priority``, ``seed`` for ``random``) to the sorter, the rest (``allocation_interval``,
    ``revocation``, ``min_allocatable``) to `HierarchicalAllocator`. A plugin may also be a whole `Allocator`
    subclass: it gets the keyword arguments it accepts. Unknown names raise ValueError listing the known ones."""
    target: Any
    if name in BUILTIN:
        target = BUILTIN[name]
    else:
        plugins = plugin_entry_points()
        ep = plugins.get(name)
        if ep is None:
            found = ", ".join(sorted(plugins)) or "none installed"
            raise ValueError(
                f"unknown allocator {name!r}: known allocators are {', '.join(sorted(BUILTIN))} "
                f"(plugins from entry-point group {ENTRY_POINT_GROUP!r}: {found})"
            )
        target = ep.load()
    return _build(name, target, kwargs)


def _build(name: str, target: Any, kwargs: dict[str, Any]) -> Allocator:
    if isinstance(target, type) and issubclass(target, Allocator):
        mine, _rest = _split(target, kwargs, drop_unaccepted_options=True)
        leftover = {k: v for k, v in kwargs.items() if k not in mine and k not in POLICY_OPTIONS}
        if leftover:
            raise TypeError(f"allocator {name!r} does not take {', '.join(sorted(leftover))}")
        return target(**mine)
    if not callable(target):
        raise TypeError(f"allocator plugin {name!r} is neither a Sorter, an Allocator nor a factory: {target!r}")
    mine, rest = _split(target, kwargs, drop_unaccepted_options=True)
    made = target(**mine)
    if isinstance(made, Allocator):
        return made
    if not isinstance(made, Sorter):
        raise TypeError(f"allocator plugin {name!r} made {made!r}, neither a Sorter nor an Allocator")
    return HierarchicalAllocator(sorter=made, **rest)


def _split(
    target: Callable[..., Any], kwargs: dict[str, Any], *, drop_unaccepted_options: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what `target` accepts, the rest less the policy options it does not take)."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}, dict(kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs), {}
    accepted = {
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    mine = {k: v for k, v in kwargs.items() if k in accepted}
    rest = {
        k: v for k, v in kwargs.items() if k not in accepted and not (drop_unaccepted_options and k in POLICY_OPTIONS)
    }
    return mine, rest
