"""The one error type of a call the master refuses (and its NOT_FOUND kind), shared by the checks of
`validation` and `bounds` and the transitions of the core; the servicers map them to gRPC statuses."""

from __future__ import annotations

from scheduler_sdk.quoting import cut


class CallError(ValueError):
    """A call that cannot be carried out; the message says what is wrong. It is cut to a bounded length, so that
    no message, whatever it quotes, overflows a client's metadata limit (`scheduler_sdk.quoting.cut`)."""

    def __init__(self, message: str) -> None:
        super().__init__(cut(message))


class UnknownIdError(CallError):
    """The call names a framework or agent the master does not know (gRPC: NOT_FOUND)."""


class DeniedError(CallError):
    """The caller may not do this: not its framework or agent, or the ACLs say no (gRPC: PERMISSION_DENIED)."""


class PreconditionError(CallError):
    """The call does not fit the state of what it names, e.g. reactivating an agent that is not draining (gRPC:
    FAILED_PRECONDITION)."""
