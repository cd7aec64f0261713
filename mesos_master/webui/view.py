"""`MasterView`: what the web UI may read of the master daemon, and how it decides who sees what.

The master builds its core afresh for each term it leads (mesos_master/terms.py): the view asks for the current
term every request (`term()`: None on a standby, or between terms) and never keeps one. Who sees what is the
Operator API's rule: `view_frameworks` for frameworks and their tasks, `access_sandboxes` for a task's files,
checked here against the principal the HTTP server authenticated (`request["principal"]`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mesos_master.api.standby import Seat
from mesos_master.cluster import Master
from mesos_master.events import EventHub
from scheduler_sdk._daemon.guard import viewer_of
from scheduler_sdk.security.acls import Authorizer, audit
from scheduler_sdk.security.certs import Principal
from scheduler_sdk.security.config import ClientConfig

#: Who may use the web UI at all: those who may call the Operator API.
UI_ROLES = ("operator", "framework")
#: Whose jobs API label the master follows unless told (`--jobs-principals`): the jobs service's own principal
#: (`aiomesos jobs serve` with LocalCluster's certificate, `framework/jobs`).
DEFAULT_JOBS_PRINCIPALS = "framework/jobs"


def principal_list(text: str) -> frozenset[str]:
    """`--jobs-principals`: principals, comma-separated."""
    return frozenset(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Term:
    """One term of the master as leader: its core, and its event hub (mesos_master.events) when it has one."""

    master: Master
    hub: EventHub | None = None


def seat_term(seat: Seat) -> Term | None:
    """The term a master's seat holds now (mesos_master.api.standby): its Operator servicer's core and the hub."""
    services = seat.services
    if services is None:
        return None
    return Term(services["aiomesos.v1.Operator"].master, seat.events)


@dataclass
class MasterView:
    """`term`: the term this master leads now (None: it does not). `client_config`: how the master dials agents
    and the jobs service, with its own certificate (None on an insecure master). `leader`: the leading master's
    address as a standby knows it ("" when unknown). `check_token`: the login form's check of a bearer token
    (the HTTP server's `HttpServer.check_token`; None: tokens are not served)."""

    term: Callable[[], Term | None]
    authorizer: Authorizer
    secure: bool
    client_config: ClientConfig | None = None
    leader: Callable[[], str] = lambda: ""
    check_token: Callable[[str], Principal | None] | None = None
    #: The framework principals whose jobs API label is followed (`--jobs-principals`); on an insecure master,
    #: where frameworks name no principal, every framework's.
    jobs_principals: frozenset[str] = frozenset({DEFAULT_JOBS_PRINCIPALS})

    def jobs_from(self, principal: str) -> bool:
        """May the master dial the jobs service this framework principal advertises?"""
        return not self.secure or principal in self.jobs_principals

    def may_use(self, principal: Principal | None) -> bool:
        """May this principal use the UI at all (an agent may not, as it may not call the Operator API)?"""
        return not self.secure or (principal is not None and principal.role in UI_ROLES)

    def viewer(self, principal: Principal | None) -> Callable[[str], bool]:
        """For one page: may `principal` see the frameworks (and tasks) of this framework principal?"""
        if not self.secure:
            return lambda owner: True
        return viewer_of(self.authorizer, principal)

    def may_read_sandbox(self, principal: Principal | None, owner: str) -> tuple[bool, str]:
        """access_sandboxes for the task of a framework of principal `owner` (audited, as the agent's check);
        (allowed, why not)."""
        if not self.secure:
            return True, ""
        decision = audit(self.authorizer.authorize(principal, "access_sandboxes", owner, owner=Principal.parse(owner)))
        return decision.allowed, decision.message


def master_view(
    seat: Seat,
    authorizer: Authorizer,
    secure: bool,
    client_config: ClientConfig | None,
    check_token: Callable[[str], Principal | None] | None,
    jobs_principals: frozenset[str] = frozenset({DEFAULT_JOBS_PRINCIPALS}),
) -> MasterView:
    """The view of a master daemon: its seat's term, its ACLs, its own certificate, the HTTP server's token check."""

    def leader() -> str:
        record = seat.leader()
        return record.address if record is not None else ""

    return MasterView(
        term=lambda: seat_term(seat),
        authorizer=authorizer,
        secure=secure,
        client_config=client_config,
        leader=leader,
        check_token=check_token,
        jobs_principals=jobs_principals,
    )
