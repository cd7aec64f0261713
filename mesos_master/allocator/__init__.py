"""Allocators decide how much each framework gets. The master talks to them only through `Allocator`.

`create_allocator(name, **kwargs)` builds one by policy name: the built-in sorters (`drf`, `fair`, `priority`,
`random`) on the hierarchical allocator's mechanics, or a third-party policy registered under the entry-point
group ``aiomesos.allocators`` (see docs/allocator-plugins.md)."""

from mesos_master.allocator.base import (
    AllocatedTask,
    Allocation,
    Allocator,
    AttributeMatch,
    OfferConstraints,
    Quota,
    Revocation,
)
from mesos_master.allocator.hierarchical import DEFAULT_MIN_ALLOCATABLE, HierarchicalAllocator
from mesos_master.allocator.policies import ENTRY_POINT_GROUP, available_allocators, create_allocator
from mesos_master.allocator.quota import validate_quota
from mesos_master.allocator.sorter import DRFSorter, FairSorter, PrioritySorter, RandomSorter, Sorter

__all__ = [
    "DEFAULT_MIN_ALLOCATABLE",
    "ENTRY_POINT_GROUP",
    "AllocatedTask",
    "Allocation",
    "Allocator",
    "AttributeMatch",
    "DRFSorter",
    "FairSorter",
    "HierarchicalAllocator",
    "OfferConstraints",
    "PrioritySorter",
    "Quota",
    "RandomSorter",
    "Revocation",
    "Sorter",
    "available_allocators",
    "create_allocator",
    "validate_quota",
]
