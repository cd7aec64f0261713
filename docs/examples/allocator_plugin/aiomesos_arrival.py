"""An example allocation policy for aiomesos: first come, first served ("arrival").

Roles, and frameworks inside a role, are offered resources strictly in the order the allocator first asked
about them (which is the order they subscribed): the earliest first, whatever they already hold, like
Hadoop's FIFO scheduler. A later arrival gets what the earlier ones declined, filtered or could not use.

It is a `Sorter`: the allocator keeps all the mechanics (role tree, quota, reservations, filters, offer
constraints, minimums, revocation) and asks the sorter only for each client's sort key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mesos_master.allocator import Sorter


class ArrivalSorter(Sorter):
    name = "arrival"

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[bool, str], int] = {}

    def key(self, client: str, allocation: Mapping[str, int], weight: float, *, is_role: bool) -> Any:
        # Keys must be comparable within one level: an arrival number is.
        return self._seen.setdefault((is_role, client), len(self._seen))
