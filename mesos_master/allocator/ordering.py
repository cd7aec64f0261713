"""`SortedOrder`: clients kept sorted by (key, name), repositioned one at a time as their keys change.

A cycle reads the order as a plain list and moves a client when an allocation changes its share: a bisect and
two list moves, instead of sorting every client again for every agent. A client may be *hidden*: it keeps its key
(kept up to date as for any other) but is left out of the list a cycle reads, e.g. a role with no offerable
framework, so that a cycle does not walk past thousands of roles that have nothing to take.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class SortedOrder:
    __slots__ = ("entries", "hidden", "keys", "stale")

    def __init__(self) -> None:
        self.entries: list[tuple[Any, str]] = []  # the visible clients, sorted
        self.keys: dict[str, Any] = {}  # every client's key, hidden ones included
        self.hidden: set[str] = set()
        # Set by the owner when it skipped moving the only client (its key is then out of date, which does not
        # matter while it is alone): the owner draws the keys again before adding a second one.
        self.stale = False

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.keys

    def __iter__(self) -> Iterator[str]:
        return (name for _key, name in self.entries)

    def add(self, name: str, key: Any, *, hidden: bool = False) -> None:
        if name in self.keys:
            self.update(name, key)
            if hidden:
                self.hide(name)
            else:
                self.show(name)
            return
        self.keys[name] = key
        if hidden:
            self.hidden.add(name)
        else:
            insort(self.entries, (key, name))

    def remove(self, name: str) -> None:
        if name not in self.keys:
            return
        key = self.keys.pop(name)
        if name in self.hidden:
            self.hidden.discard(name)
            return
        entries = self.entries
        i = bisect_left(entries, (key, name))
        del entries[i]

    def update(self, name: str, key: Any) -> None:
        old = self.keys.get(name, _MISSING)
        if old is _MISSING or old == key:
            return
        self.keys[name] = key
        if self.hidden and name in self.hidden:
            return
        entries = self.entries
        i = bisect_left(entries, (old, name))
        del entries[i]
        insort(entries, (key, name))

    def hide(self, name: str) -> None:
        """Leave the client out of `entries` (it keeps its key); nothing when unknown or hidden already."""
        if name not in self.keys or name in self.hidden:
            return
        i = bisect_left(self.entries, (self.keys[name], name))
        del self.entries[i]
        self.hidden.add(name)

    def show(self, name: str) -> None:
        """Put a hidden client back in `entries`, at its key."""
        if name not in self.hidden:
            return
        self.hidden.discard(name)
        insort(self.entries, (self.keys[name], name))

    def rebuild(self, keys: Mapping[str, Any], hidden: Iterable[str] = ()) -> None:
        self.keys = dict(keys)
        self.hidden = {name for name in hidden if name in self.keys}
        self.entries = sorted((key, name) for name, key in self.keys.items() if name not in self.hidden)
        self.stale = False

    def names(self) -> list[str]:
        return [name for _key, name in self.entries]


_MISSING: Any = object()
