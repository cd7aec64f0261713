"""Every daemon's HTTP port (`--http-port`): Prometheus `/metrics`, the master's web UI, `/health`; served by
aiohttp with the same security as the daemon's gRPC ports.

With TLS (the daemon's `--ca/--cert/--key`) the port serves HTTPS with the daemon's own certificate and *asks*
for a client certificate without requiring one (what grpcio cannot do, so gRPC needs a second port for tokens).
Every request names its caller, in this order: a client certificate from the cluster CA, `Authorization: Bearer
TOKEN`, or the login cookie (`SESSION_COOKIE`, which carries the token). Every token check rereads the
credentials file if it changed (a stat when it did not), so a revoked token stops working on the next request, on
every daemon's port, whether or not anything else rereads the file. The principal is `request["principal"]`
(None on an insecure daemon, where every request is allowed, as on its gRPC port). Without one: 401; a principal
whose role may not use the route: 403; each a one-line text body (an HTML page is sent to `login_path` instead
when one is set).

Browsers are kept out where they could be used against their user: a request that is not GET/HEAD/OPTIONS and
comes from another origin (`Origin`, `Sec-Fetch-Site: cross-site`) is 403, so a cross-site form can neither log
its victim in (as the attacker) nor out; without TLS, a request whose Host is not localhost, a loopback address or
the server's own address is 421, so a web page cannot read the port by DNS rebinding.

    server = HttpServer(host, port, tls=security.tls, authenticate=token_authenticator(security.credentials))
    server.app.router.add_get("/metrics", handler)        # routes are added before start
    server.add_public("/static/")                         # or @public on a handler; @allow("operator") narrows
    await server.start(); server.port; server.url; await server.stop()

Code that gets only the application (a web UI's `install(app, ...)`) reaches the server as `app[SERVER]`: set
`app[SERVER].login_path = "/login"` to send browsers there, check a login form's token with
`app[SERVER].check_token(token)` and answer with `set_login_cookie(response, token)`.
"""

from __future__ import annotations

import argparse
import ipaddress
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import structlog
from aiohttp import web

from scheduler_sdk._daemon.flags import FlagParser, port
from scheduler_sdk._daemon.process import DaemonError, write_atomically
from scheduler_sdk._daemon.security import DaemonSecurity
from scheduler_sdk.security.certs import Principal, SecurityError
from scheduler_sdk.security.credentials import Credentials
from scheduler_sdk.security.tls import BEARER, ServerTLS, _principal_of_pem

log = structlog.get_logger(__name__)
# The contract with the routes is `request["principal"]`, a plain key: aiohttp's advice to use a RequestKey is noise.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module=r"scheduler_sdk\._daemon\.http")

#: The login cookie: the bearer token itself (HttpOnly, Secure, SameSite=Strict, Path=/, no Domain: `__Host-`, so
#: no other host, nor plain http, can set or shadow it), checked on every request.
SESSION_COOKIE = "__Host-aiomesos_token"
#: Who may use a route that names no roles: what reads a daemon's state over gRPC may (scheduler_sdk._daemon.guard).
DEFAULT_ROLES = ("operator", "framework", "master")
#: `--http-port` how far above `--port` by default (master 5054, agent 5055, jobs service 5064).
HTTP_PORT_OFFSET = 4
OFF = "off"
#: The methods a cross-site request may use (they change nothing).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: How long a login cookie lasts in the browser (the token itself is checked on every request regardless).
COOKIE_SECONDS = 12 * 3600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])
TokenCheck = Callable[[str], Principal | None]


#: The server an application belongs to: `request.app[SERVER]` (set by HttpServer).
SERVER: web.AppKey[HttpServer] = web.AppKey("aiomesos_http_server")


def public(handler: H) -> H:
    """Mark a route handler as open to anyone (no principal needed): `/login`, `/health`, an open `/metrics`."""
    handler._aiomesos_public = True  # type: ignore[attr-defined]
    return handler


def allow(*roles: str) -> Callable[[H], H]:
    """Mark a route handler as open to principals of these roles only (default: DEFAULT_ROLES)."""

    def mark(handler: H) -> H:
        handler._aiomesos_roles = tuple(roles)  # type: ignore[attr-defined]
        return handler

    return mark


def token_authenticator(credentials: Credentials | None) -> TokenCheck | None:
    """Tokens checked against the credentials file, reread before every check if it changed (one stat when not):
    a token added works, and one revoked stops, on the next request. A broken or missing file keeps the tokens in
    force and is logged once (until it changes), as the daemon's gRPC ports do; never a 500."""
    if credentials is None:
        return None
    refused: list[str] = []  # the error last logged

    def check(token: str) -> Principal | None:
        try:
            credentials.reload()
            refused.clear()
        except SecurityError as e:
            if refused != [str(e)]:
                log.error("credentials file not reloaded: keeping the tokens in force", error=str(e))
                refused[:] = [str(e)]
        return credentials.authenticate(token)

    return check


def set_login_cookie(response: web.StreamResponse, token: str) -> None:
    """After a login form checked `token` (`HttpServer.check_token`): the browser sends it on every request."""
    response.set_cookie(
        SESSION_COOKIE, token, max_age=COOKIE_SECONDS, httponly=True, secure=True, samesite="Strict", path="/"
    )


def clear_login_cookie(response: web.StreamResponse) -> None:
    # A browser ignores a __Host- cookie's deletion unless it too is Secure, Path=/.
    response.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


def bearer_of(header: str | None) -> str | None:
    if header and header[: len(BEARER)].lower() == BEARER:
        return header[len(BEARER) :].strip() or None
    return None


def server_ssl_context(tls: ServerTLS) -> ssl.SSLContext:
    """HTTPS with the daemon's certificate; a client certificate from the CA is asked for, not required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_ssl_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """How a client (a test, the bench, the master reading an agent) reaches a daemon's HTTP port: trusting the
    cluster CA, proving who it is with a certificate when given one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def peer_certificate_principal(request: web.Request) -> Principal | None:
    """The principal of the client certificate the TLS handshake verified, if the client sent one."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return _principal_of_pem(ssl.DER_cert_to_PEM_cert(der).encode())


def refusal(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


def host_name(host: str) -> str:
    """The name in a Host header, without its port: "[::1]:5054" -> "::1", "localhost:5054" -> "localhost"."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_own_host(host: str | None, bound: str) -> bool:
    """Whether a plain-http server bound to `bound` answers a request for `host` (its Host header): localhost, a
    loopback address, the bound address (any address when bound to all). A name a web page's DNS could point
    here (rebinding) is none of these."""
    if not host:
        return True  # HTTP/1.0 without Host: not a browser
    name = host_name(host).lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or bound in ("0.0.0.0", "::", "") or address == ipaddress.ip_address(bound)


def cross_site(request: web.Request) -> str | None:
    """Why a request that may change something comes from another site (None: it does not, or it cannot)."""
    if request.method in SAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return f"Origin {origin}"
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return "Sec-Fetch-Site: cross-site"
    return None


class HttpServer:
    """An aiohttp application on one port, every request authenticated (see the module's docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ServerTLS | None,
        authenticate: TokenCheck | None = None,
        roles: tuple[str, ...] = DEFAULT_ROLES,
        public_prefixes: Iterable[str] = (),
        login_path: str | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.tls = tls
        self.authenticate = authenticate
        self.roles = roles
        self.public_prefixes: list[str] = list(public_prefixes)
        #: Where an unauthenticated browser (Accept: text/html) is sent, if anywhere; the page itself is public.
        self.login_path = login_path
        self.app = web.Application(middlewares=[self._middleware])
        self.app[SERVER] = self  # for routes added elsewhere: request.app[SERVER].check_token(...), .login_path
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def secure(self) -> bool:
        return self.tls is not None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"

    def add_public(self, prefix: str) -> None:
        """Paths starting with `prefix` are open to anyone (e.g. "/static/")."""
        self.public_prefixes.append(prefix)

    def principal(self, request: web.Request) -> Principal | None:
        """Who sent the request: client certificate, then bearer token, then the login cookie."""
        principal = peer_certificate_principal(request)
        if principal is not None or self.authenticate is None:
            return principal
        token = bearer_of(request.headers.get("Authorization")) or request.cookies.get(SESSION_COOKIE)
        return self.authenticate(token) if token else None

    def check_token(self, token: str) -> Principal | None:
        """For a login form: the principal of this token, or None."""
        return self.authenticate(token) if self.authenticate is not None and token else None

    def _is_public(self, request: web.Request) -> bool:
        handler = request.match_info.handler
        if getattr(handler, "_aiomesos_public", False):
            return True
        if self.login_path is not None and request.path == self.login_path:
            return True
        return any(request.path.startswith(prefix) for prefix in self.public_prefixes)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.secure and not is_own_host(request.headers.get("Host"), self.host):
            return refusal(421, f"{request.headers.get('Host')!r} is not a host this server answers for")
        why = cross_site(request)
        if why is not None:
            return refusal(403, f"{request.method} {request.path}: a cross-site request ({why}) changes nothing here")
        if not self.secure:
            request["principal"] = None
            return await handler(request)
        principal = self.principal(request)
        request["principal"] = principal
        if self._is_public(request):
            return await handler(request)
        if principal is None:
            if self.login_path is not None and "text/html" in request.headers.get("Accept", ""):
                raise web.HTTPSeeOther(f"{self.login_path}?{urlencode({'next': request.path_qs})}")
            return refusal(401, f"{request.path}: no client certificate from the cluster CA and no valid bearer token")
        roles = getattr(request.match_info.handler, "_aiomesos_roles", self.roles)
        if principal.role not in roles:
            only = ", ".join(f"{r}/*" for r in roles)
            return refusal(403, f"{principal} may not read {request.path} (only {only} principals may)")
        return await handler(request)

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        context = server_ssl_context(self.tls) if self.tls is not None else None
        site = web.TCPSite(runner, self.host, self.requested_port, ssl_context=context, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            what = "the port is in use" if self.requested_port else "no free port"
            raise DaemonError(
                f"cannot listen for HTTP on {self.host}:{self.requested_port} ({what}: {e.strerror})"
            ) from None
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.requested_port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


# ------------------------------------------------------------------------------------------ flags
AUTO = "auto"


def http_port(text: str) -> int | str:
    """`--http-port`: a port (0: any free one), `off`, or `auto` (--port + HTTP_PORT_OFFSET)."""
    word = text.strip().lower()
    if word in (OFF, AUTO):
        return word
    return port(text)


def add_http_flags(p: FlagParser, *, default_port: int, what: str = "/metrics") -> None:
    """`--http-port` and `--metrics-open`, the same on every daemon."""
    p.add_flag(
        "--http-port",
        type=http_port,
        default=AUTO,
        help=f"the HTTP port of {what} (TLS and authentication as the gRPC port): a port, 0 for any free one, off, "
        f"or auto: --port + {HTTP_PORT_OFFSET} ({default_port + HTTP_PORT_OFFSET}; any free port when --port is 0)",
    )
    p.add_flag(
        "--metrics-open",
        action="store_true",
        help="serve /metrics to anyone who reaches the HTTP port (a Prometheus without a certificate or token)",
    )


def http_port_of(a: argparse.Namespace) -> int | None:
    """The HTTP port the flags ask for; None: no HTTP server (`--http-port off`)."""
    raw = getattr(a, "http_port", AUTO)
    if isinstance(raw, str):
        raw = http_port(raw)
    if raw == OFF:
        return None
    if raw == AUTO:
        main = int(getattr(a, "port", 0) or 0)
        return main + HTTP_PORT_OFFSET if main else 0
    return int(raw)


# ------------------------------------------------------------------------------------------ daemons
def daemon_http_server(a: argparse.Namespace, security: DaemonSecurity, ip: str) -> HttpServer | None:
    """The daemon's HTTP server as its flags ask (None with `--http-port off`): on the gRPC port's address, with
    its TLS and certificate, and the bearer tokens of its `--credentials` where it has some."""
    wanted = http_port_of(a)
    if wanted is None:
        return None
    return HttpServer(ip, wanted, tls=security.tls, authenticate=token_authenticator(security.credentials))


def http_address_file(name: str) -> str:
    """`NAME.http.addr`: the file in a daemon's work dir that names its HTTP port's URL."""
    return f"{name}.http.addr"


def write_http_address(work_dir: Path, name: str, server: HttpServer) -> Path:
    """`NAME.http.addr` in the work dir: the server's URL (how LocalCluster and scripts find the port)."""
    path = work_dir / http_address_file(name)
    write_atomically(path, server.url + "\n")
    return path
