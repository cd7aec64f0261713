"""Pages of the operator's long lists, as Kubernetes pages a list (`limit` and a `continue` token). Pure.

A list is one or more *sections* (GetState: agents, then frameworks, then tasks), each a set of items with a unique
key (a tuple of strings). A page gives the items in section order and, within a section, in key order, from just
after the cursor: at most `limit` of them (0: no count limit) and at most `max_bytes` of them in all, but always at
least one, so every page moves on. When items are left, the page ends with a continue token naming the last key it
gave; the next page starts just after that key.

The token holds no snapshot, only that position, so the master keeps nothing between pages and a token outlives a
restart. What this promises while a list is paged through: every item that exists from the first page to the last
is listed exactly once (keys are stable, so an item is before the cursor or after it, never both); an item added or
removed in between may or may not be listed. A key that moves when an item changes (a task that completes) moves
towards the front of its section, so the item is not listed twice.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
Key = tuple[str, ...]

#: What a page holds at most, in bytes of its items (the master's default for every list): a page stays well under a
#: default gRPC client's 4 MiB receive limit whatever the items; only a single item bigger than this travels alone.
PAGE_BYTES = 1 << 20
#: What each item of a repeated message field costs on the wire beyond its own bytes: its tag and length varint.
ITEM_OVERHEAD = 6
#: A token longer than this is no token this master gave out (its key is a few ids).
TOKEN_CHARS_MAX = 1 << 16
TOKEN_VERSION = 1


class PageTokenError(ValueError):
    """A continue token that this master did not give out for this request; the message says why."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the last page ended: the key of the last item it gave, in its section."""

    section: int
    key: Key


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next: Cursor | None  # None: that was the last page


def encode_token(scope: str, cursor: Cursor) -> str:
    """The continue token of `cursor` for the request named by `scope` (which RPC, with which filter)."""
    raw = json.dumps([TOKEN_VERSION, scope, cursor.section, list(cursor.key)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(scope: str, token: str, sections: int) -> Cursor | None:
    """The cursor in `token` (None for the empty token: the first page); PageTokenError if it is not one of ours
    for this scope and a list of `sections` sections."""
    if not token:
        return None
    if len(token) > TOKEN_CHARS_MAX:
        raise PageTokenError(f"continue_token is {len(token)} characters, more than any this master gives out")
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise PageTokenError("continue_token is not one this master gave out") from None
    if not (
        isinstance(raw, list)
        and len(raw) == 4
        and raw[0] == TOKEN_VERSION
        and isinstance(raw[1], str)
        and type(raw[2]) is int
        and isinstance(raw[3], list)
        and all(isinstance(part, str) for part in raw[3])
    ):
        raise PageTokenError("continue_token is not one this master gave out")
    if raw[1] != scope:
        raise PageTokenError("continue_token was given out for another request: ask again without it")
    if not 0 <= raw[2] < sections:
        raise PageTokenError("continue_token is not one this master gave out")
    return Cursor(raw[2], tuple(raw[3]))


def unique_keys(keyed: Sequence[tuple[Key, T]]) -> list[tuple[Key, T]]:
    """`keyed` sorted by key, with keys made unique: a key that is there more than once gets, in order of
    appearance, a further part "0", "1", ... (the few items whose own fields do not tell them apart)."""
    out: list[tuple[Key, T]] = []
    for key, group in itertools.groupby(sorted(keyed, key=lambda kv: kv[0]), key=lambda kv: kv[0]):
        same = [item for _, item in group]
        if len(same) == 1:
            out.append((key, same[0]))
        else:
            out.extend(((*key, f"{n:06d}"), item) for n, item in enumerate(same))
    return out


@dataclass(frozen=True, slots=True)
class SortedSection(Generic[T]):
    """A section whose keys the caller already has in order (e.g. the agents, kept sorted across calls), so a page
    neither sorts nor makes an entry per item: `build(key)` is called only for the keys looked at, and may return
    None for an item gone meanwhile (it is skipped)."""

    keys: Sequence[Key]
    build: Callable[[Key], T | None]


Section = Sequence[tuple[Key, Callable[[], T]]] | SortedSection[T]


def _sorted(section: Section[T]) -> SortedSection[T]:
    if isinstance(section, SortedSection):
        return section
    ordered = sorted(section, key=lambda kv: kv[0])
    builds = dict(ordered)
    return SortedSection([key for key, _ in ordered], lambda key: builds[key]())


class PageBuilder(Generic[T]):
    """One page, built a few items at a time (`step`), so that a caller on an event loop may let others run
    between steps (a page of 1 MiB is thousands of items); `take_page` builds it at once."""

    def __init__(
        self,
        sections: Sequence[Section[T]],
        after: Cursor | None,
        size: Callable[[T], int],
        *,
        limit: int = 0,
        max_bytes: int = PAGE_BYTES,
    ) -> None:
        self.sections = sections
        self.size = size
        self.limit = limit
        self.max_bytes = max_bytes
        self.items: list[T] = []
        self.used = 0
        self.last: Cursor | None = None
        self.section = 0 if after is None else after.section
        self._after = after
        self._current: SortedSection[T] | None = None
        self._index = 0
        self._full = False

    def step(self, items: int) -> bool:
        """Look at up to `items` more items; False once the page is done (`page()` has it)."""
        looked = 0
        while not self._full and self.section < len(self.sections):
            current = self._current
            if current is None:
                current = self._current = _sorted(self.sections[self.section])
                after = self._after
                self._index = 0
                if after is not None and self.section == after.section:
                    self._index = bisect.bisect_right(current.keys, after.key)
            if self._index >= len(current.keys):
                self.section += 1
                self._current = None
                continue
            if looked >= items:
                return True
            if self.limit and len(self.items) >= self.limit:
                self._full = True
                break
            key = current.keys[self._index]
            item = current.build(key)
            looked += 1
            if item is None:
                self._index += 1
                continue
            cost = self.size(item)
            if self.items and self.used + cost > self.max_bytes:
                self._full = True
                break
            self.items.append(item)
            self.used += cost
            self.last = Cursor(self.section, key)
            self._index += 1
        return False

    def page(self) -> Page[T]:
        return Page(self.items, self.last if self._full else None)


def take_page(
    sections: Sequence[Section[T]],
    after: Cursor | None,
    size: Callable[[T], int],
    *,
    limit: int = 0,
    max_bytes: int = PAGE_BYTES,
) -> Page[T]:
    """The page after `after`: each section's items are (key, build), keys unique within the section, in any
    order (or a SortedSection); an item is built only if it is looked at (the one that does not fit is built and
    left for the next page). `size` is an item's size in bytes on the wire."""
    builder = PageBuilder(sections, after, size, limit=limit, max_bytes=max_bytes)
    while builder.step(1 << 30):
        pass
    return builder.page()
