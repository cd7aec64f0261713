"""What a daemon (master or agent) needs to be safe on a shared network: its TLS flags, where it may listen, the
ports it binds, and the server interceptor that decodes every request and names its caller.

Security is on when the daemon has a certificate (`--cert`, `--key`, `--ca`): every port serves TLS, the main
port requires a client certificate from the cluster CA (mutual TLS), and a master with `--credentials` serves
bearer tokens on a second port (`--token-port`), because grpcio cannot ask for a client certificate without
requiring one. Without a certificate a daemon listens on loopback only, unless `--insecure` says otherwise.

`Authentication` runs before every method: it decodes the request itself, so that a malformed message is
INVALID_ARGUMENT (grpcio would answer UNKNOWN), refuses a caller without a valid certificate or token
(UNAUTHENTICATED), and makes the caller known to the method as `caller()`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import inspect
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from scheduler_sdk._daemon.flags import FlagParser, port
from scheduler_sdk._daemon.process import DaemonError
from scheduler_sdk.security.certs import Principal, SecurityError
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.credentials import Credentials
from scheduler_sdk.security.tls import ServerTLS, bearer_token, peer_principal

log = structlog.get_logger(__name__)

#: How long a refused streaming call's first message is waited for before the call is ended anyway.
FIRST_MESSAGE_WAIT = 5.0
_caller: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("aiomesos_caller", default=None)


def caller() -> Principal | None:
    """The authenticated principal of the call being served (None on an insecure daemon)."""
    return _caller.get()


def add_security_flags(p: FlagParser, *, tokens: bool, default_port: int = 5050) -> None:
    """The TLS flags; with `tokens`, --credentials and --token-port (whose default, `default_port` + 2, is told)."""
    p.add_flag("--ca", default=None, help="the cluster CA certificate (PEM); with --cert and --key: TLS on")
    p.add_flag("--cert", default=None, help="this daemon's certificate (PEM), issued by the CA")
    p.add_flag("--key", default=None, help="this daemon's private key (PEM)")
    if tokens:
        p.add_flag(
            "--credentials",
            default=None,
            help="principals' bearer-token hashes (TOML); tokens are served on --token-port; reread on change",
        )
        p.add_flag(
            "--token-port",
            type=port,
            default=None,
            help=f"with --credentials: the TLS port for bearer tokens (default --port + 2: {default_port + 2}; any "
            "free port when --port is 0)",
        )
    p.add_flag(
        "--insecure",
        action="store_true",
        help="without TLS, listen on other addresses than loopback too: anyone who reaches the port runs tasks",
    )


def is_loopback(ip: str) -> bool:
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DaemonSecurity:
    tls: ServerTLS | None
    credentials: Credentials | None
    token_port: int | None
    insecure: bool

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> DaemonSecurity:
        """From the flags; raises DaemonError (one readable line) for a half-configured or unreadable setup."""
        given = [name for name in ("ca", "cert", "key") if getattr(a, name, None)]
        if given and len(given) != 3:
            missing = ", ".join(f"--{n}" for n in ("ca", "cert", "key") if n not in given)
            raise DaemonError(f"TLS needs --ca, --cert and --key together: {missing} missing")
        tls = ServerTLS(Path(a.cert), Path(a.key), Path(a.ca)) if given else None
        credentials_path = getattr(a, "credentials", None)
        if credentials_path and tls is None:
            raise DaemonError("--credentials needs TLS (--ca, --cert, --key): tokens must not cross the wire plain")
        try:
            if tls is not None:
                tls.credentials()  # the files are readable and a valid pair, or one line now
            credentials = Credentials.load(Path(credentials_path)) if credentials_path else None
        except SecurityError as e:
            raise DaemonError(str(e)) from None
        except Exception as e:  # grpcio's own check of the key and certificate
            raise DaemonError(f"cannot use --cert {a.cert} / --key {a.key}: {e}") from None
        return cls(tls, credentials, getattr(a, "token_port", None), bool(a.insecure))

    @property
    def secure(self) -> bool:
        return self.tls is not None

    def client_config(self, master: str = "") -> ClientConfig | None:
        """How this daemon dials others (the agent the master, the master an agent): with its own certificate."""
        if self.tls is None:
            return None
        return ClientConfig(master=master, ca=self.tls.ca, cert=self.tls.cert, key=self.tls.key)

    def listen_ip(self, requested: str | None) -> str:
        """Where to listen: what was asked, checked; by default everywhere when secure, else loopback only."""
        if requested is None:
            return "0.0.0.0" if self.secure or self.insecure else "127.0.0.1"
        if not self.secure and not self.insecure and not is_loopback(requested):
            raise DaemonError(
                f"--ip {requested} without TLS would let anyone who reaches the port run tasks: give --ca, --cert "
                "and --key, or --insecure to do it anyway"
            )
        return requested

    def interceptors(self, callers: Mapping[str, tuple[str, ...]]) -> list[grpc.aio.ServerInterceptor]:
        return [Authentication(self.credentials, required=self.secure, callers=callers)]

    def bind(self, server: grpc.aio.Server, ip: str, port_: int) -> tuple[int, int | None]:
        """Add the ports: the main one (mutual TLS, or plaintext) and, with credentials, the token port."""
        main = _bind(server, ip, port_, self.tls.credentials() if self.tls else None)
        if self.tls is None or self.credentials is None:
            return main, None
        wanted = self.token_port if self.token_port is not None else (port_ + 2 if port_ else 0)
        token_tls = ServerTLS(self.tls.cert, self.tls.key, self.tls.ca, require_client_cert=False)
        return main, _bind(server, ip, wanted, token_tls.credentials())

    def log_start(self, daemon: str, ip: str) -> None:
        if self.secure:
            log.info(
                f"{daemon} security: TLS on",
                client_certificates="required on the main port",
                bearer_tokens=self.credentials is not None,
            )
        elif self.insecure and not is_loopback(ip):
            log.warning(
                f"{daemon} security: OFF (--insecure): no TLS, no authentication; anyone who reaches {ip} runs tasks"
            )
        else:
            log.warning(f"{daemon} security: off (no --cert): no TLS, no authentication; listening on loopback only")


def _bind(server: grpc.aio.Server, ip: str, port_: int, credentials: grpc.ServerCredentials | None) -> int:
    address = f"{ip}:{port_}"
    try:
        bound = int(server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address))
    except RuntimeError:  # grpcio raises where older versions returned 0
        bound = 0
    if bound == 0:
        what = "the port is in use" if port_ else "no free port"
        raise DaemonError(f"cannot listen on {address} ({what}, or the address is not on this host)")
    return bound


# ------------------------------------------------------------------------------------------ interceptor
Behaviour = Callable[..., Any]


class Authentication(grpc.aio.ServerInterceptor):
    """Decode each request (INVALID_ARGUMENT when it is not the message it should be) and name its caller
    (UNAUTHENTICATED when security is on and the call carries neither a client certificate nor a valid token).

    `callers`: service name (`aiomesos.v1.AgentRegistry`) -> the roles whose principals may call it at all
    (PERMISSION_DENIED for others); what each may then do there is the ACLs' business."""

    def __init__(
        self, credentials: Credentials | None, *, required: bool, callers: Mapping[str, tuple[str, ...]] = {}
    ) -> None:
        self.credentials = credentials
        self.required = required
        self.callers = dict(callers)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        decode = handler.request_deserializer
        serialize = handler.response_serializer
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.stream_stream, decode, method), None, serialize
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                self._streaming(handler.stream_unary, decode, method), None, serialize
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._unary(handler.unary_stream, decode, method), None, serialize
            )
        return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, decode, method), None, serialize)

    async def _authenticate(
        self, context: grpc.aio.ServicerContext, method: str, requests: AsyncIterator[bytes] | None = None
    ) -> None:
        """Name the caller, or end the call. A streaming call is ended only once its first message is in (or
        after FIRST_MESSAGE_WAIT): grpcio, ending a stream whose first message is still on its way, sometimes
        reports INTERNAL to the client instead of the status it was given."""
        principal = peer_principal(context, self.credentials)
        if principal is None and self.credentials is not None and bearer_token(context.invocation_metadata()):
            self.credentials.reload()  # a token added since: the file changed (a stat, no read, when not)
            principal = peer_principal(context, self.credentials)
        refusal: tuple[grpc.StatusCode, str] | None = None
        roles = self.callers.get(method.split("/")[1]) if self.required else None
        if principal is None and self.required:
            refusal = (
                grpc.StatusCode.UNAUTHENTICATED,
                f"{method}: no client certificate from the cluster CA and no valid bearer token",
            )
        elif principal is not None and roles is not None and principal.role not in roles:
            only = ", ".join(f"{r}/*" for r in roles)
            refusal = (
                grpc.StatusCode.PERMISSION_DENIED,
                f"{principal} may not call {method} (only {only} principals may)",
            )
        if refusal is not None:
            if requests is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(anext(aiter(requests)), FIRST_MESSAGE_WAIT)
            await context.abort(*refusal)
        _caller.set(principal)

    def _unary(self, behaviour: Behaviour, decode: Callable[[bytes], Any] | None, method: str) -> Behaviour:
        async def request(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            await self._authenticate(context, method)
            return await _decoded(raw, decode, context, method)

        if inspect.isasyncgenfunction(behaviour):

            async def stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for response in behaviour(await request(raw, context), context):
                    yield response

            return stream

        async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await behaviour(await request(raw, context), context)

        return unary

    def _streaming(self, behaviour: Behaviour, decode: Callable[[bytes], Any] | None, method: str) -> Behaviour:
        async def messages(raw: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in raw:
                yield await _decoded(item, decode, context, method)

        if inspect.isasyncgenfunction(behaviour):

            async def stream(raw: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await self._authenticate(context, method, raw)
                async for response in behaviour(messages(raw, context), context):
                    yield response

            return stream

        async def call(raw: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            await self._authenticate(context, method, raw)
            return await behaviour(messages(raw, context), context)

        return call


async def _decoded(
    raw: bytes, decode: Callable[[bytes], Any] | None, context: grpc.aio.ServicerContext, method: str
) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception as e:  # DecodeError, or RecursionError on over-deep nesting
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request is not a valid message ({str(e)[:120]})"
        )
