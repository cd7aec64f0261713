"""Allocators decide how much each framework gets. The master talks to them only through `Allocator`."""

from mesos_master.allocator.base import Allocation, Allocator
from mesos_master.allocator.hierarchical import HierarchicalAllocator

__all__ = ["Allocation", "Allocator", "HierarchicalAllocator", "create_allocator"]


def create_allocator(name: str, **kwargs: object) -> Allocator:
    """Build the allocator policy named on the command line (`--allocator`)."""
    if name in ("drf", "hierarchical"):
        return HierarchicalAllocator(**kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown allocator {name!r}: known allocators are drf")
