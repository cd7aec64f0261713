"""The servicers' side of authorisation: the ACL check of one action, with its `audit` event and
PERMISSION_DENIED (who may call a service at all is `security.Authentication`'s `callers`). On an insecure
daemon (no TLS, loopback) every call is allowed, as before security existed: there is no one to name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import grpc
import structlog

from scheduler_sdk._daemon.process import DaemonError
from scheduler_sdk._daemon.security import DaemonSecurity, caller
from scheduler_sdk.security.acls import AclError, Authorizer, audit
from scheduler_sdk.security.certs import Principal, SecurityError

log = structlog.get_logger(__name__)

#: Who reads a daemon's state: operators and frameworks (and the master, of an agent); never an agent.
READERS = ("operator", "framework", "master")


class Guard:
    def __init__(self, authorizer: Authorizer, *, secure: bool) -> None:
        self.authorizer = authorizer
        self.secure = secure

    def caller(self) -> Principal | None:
        return caller() if self.secure else None

    async def authorize(
        self, context: grpc.aio.ServicerContext, action: str, obj: str = "", *, owner: Principal | None = None
    ) -> None:
        """The ACLs' answer for the caller doing `action` on `obj`; audited; PERMISSION_DENIED when refused."""
        if not self.secure:
            return
        decision = audit(self.authorizer.authorize(self.caller(), action, obj, owner=owner))
        if not decision.allowed:
            await deny(context, decision.message)

    def viewer(self) -> Callable[[str], bool]:
        """For one read: may the caller see what the framework of this principal owns (view_frameworks)?
        Not audited (reads); every answer is remembered for the rest of the read."""
        return viewer_of(self.authorizer if self.secure else None, self.caller())


def viewer_of(authorizer: Authorizer | None, principal: Principal | None) -> Callable[[str], bool]:
    """May `principal` see what the framework of this principal owns (view_frameworks)? Not audited (reads);
    every answer is remembered by the function returned (make one per read, so that reloaded ACLs apply).
    Without an authorizer (an insecure daemon) everyone sees everything."""
    if authorizer is None:
        return lambda owner: True
    seen: dict[str, bool] = {}

    def may_view(owner: str) -> bool:
        if owner not in seen:
            decision = authorizer.authorize(principal, "view_frameworks", owner, owner=Principal.parse(owner))
            seen[owner] = decision.allowed
        return seen[owner]

    return may_view


async def deny(context: grpc.aio.ServicerContext, message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
    raise AssertionError("abort() raises")  # for the type checker


def load_authorizer(path: str | None) -> Authorizer:
    """The `--acls` of a daemon (the built-in rules without one); DaemonError for a bad file."""
    if not path:
        return Authorizer()
    try:
        return Authorizer.from_file(Path(path))
    except AclError as e:
        raise DaemonError(f"--acls: {e}") from None


def reload_security(authorizer: Authorizer, security: DaemonSecurity | None) -> None:
    """Reread the ACLs and the credentials if their files changed (each tick, and at once on SIGHUP); a broken
    edit keeps the old ones and says why."""
    try:
        if authorizer.reload():
            log.info("ACLs reloaded", path=str(authorizer.path))
    except AclError as e:
        log.error("ACL file not reloaded: keeping the rules in force", error=str(e))
    if security is not None and security.credentials is not None:
        try:
            if security.credentials.reload():
                log.info("credentials reloaded", path=str(security.credentials.path))
        except SecurityError as e:
            log.error("credentials file not reloaded: keeping the tokens in force", error=str(e))
