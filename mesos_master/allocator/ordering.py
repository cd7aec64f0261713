"""`SortedOrder`: clients kept sorted by (key, name), repositioned one at a time as their keys change.

A cycle reads the order as a plain list and moves a client when an allocation changes its share: a bisect and
two list moves, instead of sorting every client again for every agent.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator, Mapping
from typing import Any


class SortedOrder:
    __slots__ = ("entries", "keys", "stale")

    def __init__(self) -> None:
        self.entries: list[tuple[Any, str]] = []
        self.keys: dict[str, Any] = {}
        # Set by the owner when it skipped moving the only entry (its key is then out of date, which does not
        # matter while it is alone): the owner draws the keys again before adding a second one.
        self.stale = False

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.keys

    def __iter__(self) -> Iterator[str]:
        return (name for _key, name in self.entries)

    def add(self, name: str, key: Any) -> None:
        if name in self.keys:
            self.update(name, key)
            return
        self.keys[name] = key
        insort(self.entries, (key, name))

    def remove(self, name: str) -> None:
        if name not in self.keys:
            return
        key = self.keys.pop(name)
        entries = self.entries
        i = bisect_left(entries, (key, name))
        del entries[i]

    def update(self, name: str, key: Any) -> None:
        old = self.keys.get(name, _MISSING)
        if old is _MISSING or old == key:
            return
        entries = self.entries
        i = bisect_left(entries, (old, name))
        del entries[i]
        self.keys[name] = key
        insort(entries, (key, name))

    def rebuild(self, keys: Mapping[str, Any]) -> None:
        self.keys = dict(keys)
        self.entries = sorted((key, name) for name, key in self.keys.items())
        self.stale = False

    def names(self) -> list[str]:
        return [name for _key, name in self.entries]


_MISSING: Any = object()
