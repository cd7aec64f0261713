"""Refusal filters: what a framework declined on an agent is withheld from it until the filter expires."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler_sdk.resources import Resources


@dataclass(slots=True)
class RefusalFilter:
    resources: Resources
    expires_at: float

    def filters(self, offered: Resources, now: float) -> bool:
        """True while unexpired and `offered` is a subset of what was refused (Mesos' semantics)."""
        return now < self.expires_at and self.resources.contains(offered)


@dataclass(slots=True)
class Filters:
    """Per (framework, agent) refusal filters."""

    _by_key: dict[tuple[str, str], list[RefusalFilter]] = field(default_factory=dict)

    def add(self, framework_id: str, agent_id: str, resources: Resources, expires_at: float) -> None:
        self._by_key.setdefault((framework_id, agent_id), []).append(RefusalFilter(resources, expires_at))

    def is_filtered(self, framework_id: str, agent_id: str, offered: Resources, now: float) -> bool:
        entries = self._by_key.get((framework_id, agent_id))
        if not entries:
            return False
        live = [f for f in entries if f.expires_at > now]
        if len(live) != len(entries):
            if live:
                self._by_key[(framework_id, agent_id)] = live
            else:
                del self._by_key[(framework_id, agent_id)]
        return any(f.filters(offered, now) for f in live)

    def clear_framework(self, framework_id: str) -> None:
        for key in [k for k in self._by_key if k[0] == framework_id]:
            del self._by_key[key]

    def clear_agent(self, agent_id: str) -> None:
        for key in [k for k in self._by_key if k[1] == agent_id]:
            del self._by_key[key]

    def count(self) -> int:
        return sum(len(v) for v in self._by_key.values())
