"""Authorisation in Mesos' ACL terms: which principals may do which action on which objects. Pure: the shell
(the master's and the agents' servicers) asks `Authorizer.authorize` and logs every decision on a write with
`audit(decision)`, a structlog `audit` event.

The ACL file is JSON, as Mesos' `--acls`:

    {"permissive": false,
     "register_frameworks": [{"principals": {"values": ["framework/ml"]}, "roles": {"values": ["ml", "ml/*"]}}],
     "run_tasks":           [{"principals": {"type": "ANY"}, "users": {"values": ["root"]}, "allow": false},
                             {"principals": {"type": "ANY"}, "users": {"type": "ANY"}}]}

Each action has a list of rules, read in order; the first whose principals and objects both match decides.
Principals are written `ROLE/NAME` (`framework/ml`, `operator/ops`) or `ROLE/*`; roles may end in `/*` for every
role below (as Mesos' `eng/*`). An entity is `{"values": [...]}`, `{"type": "ANY"}` or `{"type": "NONE"}`
(`NONE` objects: the principal may do the action on nothing). `"allow": false` makes a rule deny what it matches:
an extension in Mesos' direction, so that "anyone, but not as root" is one rule. When no rule matches,
`permissive` decides (false unless the file says otherwise: safe by default, where Mesos defaults to true).

Without an ACL file the built-in `DEFAULT_ACLS` apply: operators may do everything; agents may register;
frameworks may register in any role, run tasks as any user but root, and reserve for their roles (the
master holds a framework to its own roles, in an ACCEPT and through the Operator API). Whatever the
ACLs say, a principal may always act on what it owns (tear down its own frameworks, read its own sandboxes, see
its own frameworks and tasks: `view_frameworks` decides who sees the others' in the operator's reads)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from scheduler_sdk.security._files import WatchedFile
from scheduler_sdk.security.certs import Principal

audit_log = structlog.get_logger("audit")

# action -> the name of its object entity, as in Mesos' ACLs
ACTIONS: dict[str, str] = {
    "register_frameworks": "roles",
    "run_tasks": "users",
    "teardown_frameworks": "framework_principals",
    "update_weights": "roles",
    "update_quotas": "roles",
    "reserve_resources": "roles",
    "unreserve_resources": "roles",
    "access_sandboxes": "framework_principals",
    "view_frameworks": "framework_principals",
    "register_agents": "agents",
    "drain_agents": "agents",
}


class AclError(ValueError):
    """A malformed ACL file: the message names the action and rule."""


@dataclass(frozen=True)
class Entity:
    """A set of principals or objects: every one (ANY), none (NONE), or the listed values."""

    kind: str  # "ANY" | "NONE" | "SOME"
    values: tuple[str, ...] = ()

    def matches(self, value: str) -> bool:
        if self.kind != "SOME":
            return True  # ANY matches everything; NONE matches everything and then denies
        return any(v == value or (v.endswith("/*") and value.startswith(v[:-1])) for v in self.values)


ANY = Entity("ANY")
NONE = Entity("NONE")


def some(*values: str) -> Entity:
    return Entity("SOME", tuple(values))


@dataclass(frozen=True)
class Rule:
    principals: Entity
    objects: Entity
    allow: bool = True

    def decides(self, principal: str, obj: str) -> bool:
        return self.principals.matches(principal) and self.objects.matches(obj)

    @property
    def allows(self) -> bool:
        return self.allow and self.objects.kind != "NONE"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    principal: Principal | None
    action: str
    object: str
    why: str  # which rule, or the owner rule, or the permissive default

    @property
    def message(self) -> str:
        """For PERMISSION_DENIED: names the principal, the action and the object."""
        who = str(self.principal) if self.principal else "an unauthenticated caller"
        target = f"{ACTIONS[self.action][:-1].replace('_', ' ')} {self.object[:64]!r}: " if self.object else ""
        return f"{who} may not {self.action.replace('_', ' ')} ({target}{self.why})"


@dataclass(frozen=True)
class Acls:
    rules: Mapping[str, tuple[Rule, ...]]
    permissive: bool = False
    source: str = "built-in ACLs"


def _entity(raw: Any, where: str) -> Entity:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise AclError(f'{where}: expected {{"values": [...]}} or {{"type": "ANY" | "NONE"}}')
    if "type" in raw:
        if raw["type"] not in ("ANY", "NONE"):
            raise AclError(f"{where}: type must be ANY or NONE, not {str(raw['type'])[:32]!r}")
        return ANY if raw["type"] == "ANY" else NONE
    values = raw.get("values")
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise AclError(f"{where}: values must be a non-empty list of strings")
    return some(*values)


def parse_acls(text: str, source: str = "ACLs") -> Acls:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AclError(f"{source}: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise AclError(f"{source}: expected a JSON object")
    permissive = data.pop("permissive", False)
    if not isinstance(permissive, bool):
        raise AclError(f"{source}: permissive must be true or false")
    rules: dict[str, tuple[Rule, ...]] = {}
    for action, raw_rules in data.items():
        if action not in ACTIONS:
            raise AclError(f"{source}: unknown action {action[:64]!r} (known: {', '.join(ACTIONS)})")
        if not isinstance(raw_rules, list):
            raise AclError(f"{source}: {action} must be a list of rules")
        parsed = []
        for i, raw in enumerate(raw_rules, 1):
            where = f"{source}: {action} rule {i}"
            object_key = ACTIONS[action]
            if not isinstance(raw, dict) or not {"principals", object_key} <= set(raw) <= {
                "principals",
                object_key,
                "allow",
            }:
                raise AclError(f"{where}: needs principals and {object_key} (and optionally allow)")
            allow = raw.get("allow", True)
            if not isinstance(allow, bool):
                raise AclError(f"{where}: allow must be true or false")
            parsed.append(
                Rule(_entity(raw["principals"], f"{where} principals"), _entity(raw[object_key], where), allow)
            )
        rules[action] = tuple(parsed)
    return Acls(rules, permissive, source)


DEFAULT_ACLS = Acls(
    {
        "register_frameworks": (Rule(some("operator/*", "framework/*"), ANY),),
        "run_tasks": (Rule(ANY, some("root"), allow=False), Rule(some("operator/*", "framework/*"), ANY)),
        "teardown_frameworks": (Rule(some("operator/*"), ANY),),
        "update_weights": (Rule(some("operator/*"), ANY),),
        "update_quotas": (Rule(some("operator/*"), ANY),),
        "reserve_resources": (Rule(some("operator/*", "framework/*"), ANY),),
        "unreserve_resources": (Rule(some("operator/*", "framework/*"), ANY),),
        "access_sandboxes": (Rule(some("operator/*", "master/*"), ANY),),  # the master: for its web UI
        "view_frameworks": (Rule(some("operator/*", "master/*"), ANY),),
        "register_agents": (Rule(some("agent/*"), ANY),),
        "drain_agents": (Rule(some("operator/*"), ANY),),
    },
    permissive=False,
)


@dataclass
class Authorizer:
    """The ACLs in force, re-read from their file when it changes (a broken edit keeps the old ones)."""

    acls: Acls = DEFAULT_ACLS
    path: Path | None = None
    _file: WatchedFile | None = field(default=None, repr=False)

    @classmethod
    def from_file(cls, path: Path) -> Authorizer:
        authorizer = cls(path=path)
        authorizer.reload(force=True)
        return authorizer

    def __post_init__(self) -> None:
        if self.path is not None:
            self._file = WatchedFile(self.path, "ACL file", AclError)

    def reload(self, *, force: bool = False) -> bool:
        acls = self._file.read_if_changed(parse_acls, force=force) if self._file is not None else None
        if acls is None:
            return False
        self.acls = acls
        return True

    def authorize(
        self, principal: Principal | None, action: str, obj: str = "", *, owner: Principal | None = None
    ) -> Decision:
        """May `principal` do `action` on `obj`? `owner` is whose the object is (a framework's principal)."""
        if action not in ACTIONS:
            raise KeyError(f"unknown action {action!r}")
        if principal is None:
            return Decision(False, None, action, obj, "not authenticated")
        if owner is not None and owner == principal:
            return Decision(True, principal, action, obj, "its own")
        for i, rule in enumerate(self.acls.rules.get(action, ()), 1):
            if rule.decides(str(principal), obj):
                return Decision(rule.allows, principal, action, obj, f"{action} rule {i} of {self.acls.source}")
        why = "permissive" if self.acls.permissive else f"no {action} rule of {self.acls.source} allows it"
        return Decision(self.acls.permissive, principal, action, obj, why)


def audit(decision: Decision) -> Decision:
    """Log an authorisation decision on a write (the `audit` event); returns it."""
    audit_log.info(
        "audit",
        principal=str(decision.principal) if decision.principal else None,
        action=decision.action,
        object=decision.object[:256],
        allowed=decision.allowed,
        why=decision.why,
    )
    return decision
