"""The daemons' HTTP server over real HTTPS on loopback: a client certificate, a bearer token or the login cookie
names the caller; nothing is 401, a role the route does not allow 403 (one-line bodies); public routes are open;
a revoked token stops working at once; without TLS every request for this host is allowed (loopback only, as gRPC)."""

from __future__ import annotations

import ssl
from argparse import Namespace
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from scheduler_sdk._daemon.flags import FlagParser
from scheduler_sdk._daemon.http import (
    SERVER,
    SESSION_COOKIE,
    HttpServer,
    add_http_flags,
    allow,
    client_ssl_context,
    daemon_http_server,
    http_port_of,
    public,
    set_login_cookie,
    token_authenticator,
)
from scheduler_sdk._daemon.security import DaemonSecurity
from scheduler_sdk.security import CertificateAuthority
from scheduler_sdk.security.credentials import Credentials, add_token, revoke
from scheduler_sdk.security.tls import ServerTLS


async def whoami(request: web.Request) -> web.Response:
    return web.Response(text=str(request["principal"]))


@public
async def health(request: web.Request) -> web.Response:
    return web.Response(text=f"ok {request['principal']}")


@allow("agent")
async def agents_only(request: web.Request) -> web.Response:
    return web.Response(text="agent")


@public
async def login(request: web.Request) -> web.Response:
    """What a web UI's login form does: check the token, set the cookie."""
    token = str((await request.post()).get("token", ""))
    if request.app[SERVER].check_token(token) is None:
        return web.Response(status=401, text="not a valid token\n")
    response = web.Response(text="welcome")
    set_login_cookie(response, token)
    return response


def routes(server: HttpServer) -> None:
    server.app.router.add_post("/login", login)
    server.app.router.add_get("/whoami", whoami)
    server.app.router.add_get("/health", health)
    server.app.router.add_get("/agents-only", agents_only)
    server.app.router.add_get("/static/x.css", whoami)
    server.add_public("/static/")


@pytest.fixture
async def pki(tmp_path: Path) -> AsyncIterator[dict]:
    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue("master", "master").write(tmp_path, "master")
    tokens = tmp_path / "credentials.toml"
    token = add_token(tokens, "ml", "framework")
    credentials = Credentials.load(tokens)
    server = HttpServer(
        "127.0.0.1",
        0,
        tls=ServerTLS(cert, key, tmp_path / "ca" / "ca.crt"),
        authenticate=token_authenticator(credentials),
    )
    routes(server)
    await server.start()
    yield {"ca": ca, "dir": tmp_path, "server": server, "token": token, "tokens": tokens, "credentials": credentials}
    await server.stop()


def _client_ssl(pki: dict, role: str | None = None) -> ssl.SSLContext:
    ca_path = pki["dir"] / "ca" / "ca.crt"
    if role is None:
        return client_ssl_context(ca_path)
    cert, key = pki["ca"].issue(f"someone-{role}", role).write(pki["dir"], f"client-{role}")
    return client_ssl_context(ca_path, cert, key)


async def _get(url: str, context: ssl.SSLContext | None, **kw) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context, allow_redirects=False, **kw) as r:
        return r.status, await r.text(), r


@pytest.mark.asyncio
async def test_a_client_certificate_names_the_caller(pki: dict) -> None:
    status, body, _ = await _get(pki["server"].url + "/whoami", _client_ssl(pki, "operator"))
    assert (status, body) == (200, "operator/someone-operator")


@pytest.mark.asyncio
async def test_a_bearer_token_or_the_login_cookie_names_the_caller(pki: dict) -> None:
    url, context = pki["server"].url + "/whoami", _client_ssl(pki)
    status, body, _ = await _get(url, context, headers={"Authorization": f"Bearer {pki['token']}"})
    assert (status, body) == (200, "framework/ml")
    status, body, _ = await _get(url, context, cookies={SESSION_COOKIE: pki["token"]})
    assert (status, body) == (200, "framework/ml")


@pytest.mark.asyncio
async def test_without_credentials_401_and_a_role_not_allowed_403_each_one_line(pki: dict) -> None:
    url, context = pki["server"].url, _client_ssl(pki)
    status, body, _ = await _get(url + "/whoami", context)
    assert status == 401 and body.count("\n") == 1 and "no client certificate" in body
    status, body, _ = await _get(url + "/whoami", context, headers={"Authorization": "Bearer not-a-token"})
    assert status == 401
    status, body, _ = await _get(url + "/agents-only", _client_ssl(pki, "operator"))
    assert status == 403 and body.count("\n") == 1 and "operator/someone-operator may not" in body
    status, body, _ = await _get(url + "/whoami", _client_ssl(pki, "agent"))
    assert status == 403
    assert (await _get(url + "/agents-only", _client_ssl(pki, "agent")))[:2] == (200, "agent")


@pytest.mark.asyncio
async def test_public_routes_are_open_and_still_name_a_caller_who_has_one(pki: dict) -> None:
    url, context = pki["server"].url, _client_ssl(pki)
    assert (await _get(url + "/health", context))[:2] == (200, "ok None")
    assert (await _get(url + "/static/x.css", context))[:2] == (200, "None")
    assert (await _get(url + "/health", _client_ssl(pki, "agent")))[:2] == (200, "ok agent/someone-agent")


@pytest.mark.asyncio
async def test_a_revoked_token_stops_working_and_a_new_one_works_at_once(pki: dict) -> None:
    url, context = pki["server"].url + "/whoami", _client_ssl(pki)
    new = add_token(pki["tokens"], "ops", "operator")  # the server has not reread the file yet
    assert (await _get(url, context, headers={"Authorization": f"Bearer {new}"}))[:2] == (200, "operator/ops")
    revoke(pki["tokens"], "ml", "framework")
    status, _, _ = await _get(url, context, headers={"Authorization": f"Bearer {pki['token']}"})
    assert status == 401
    assert (await _get(url, context, cookies={SESSION_COOKIE: pki["token"]}))[0] == 401


@pytest.mark.asyncio
async def test_a_login_sets_the_cookie_that_names_the_caller_until_the_token_is_revoked(pki: dict) -> None:
    server: HttpServer = pki["server"]
    url, context = server.url, _client_ssl(pki)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:  # unsafe: an IP host
        async with browser.post(url + "/login", data={"token": "wrong"}, ssl=context) as r:
            assert r.status == 401
        async with browser.post(url + "/login", data={"token": pki["token"]}, ssl=context) as r:
            assert r.status == 200
            assert "HttpOnly" in r.headers["Set-Cookie"] and "Secure" in r.headers["Set-Cookie"]
        async with browser.get(url + "/whoami", ssl=context) as r:
            assert (r.status, await r.text()) == (200, "framework/ml")
        revoke(pki["tokens"], "ml", "framework")  # the server rereads the file on the next request
        async with browser.get(url + "/whoami", ssl=context) as r:
            assert r.status == 401


@pytest.mark.asyncio
async def test_a_browser_is_sent_to_the_login_page_when_there_is_one(pki: dict) -> None:
    server: HttpServer = pki["server"]
    server.login_path = "/login"
    status, _, response = await _get(server.url + "/whoami?a=1&b=2", _client_ssl(pki), headers={"Accept": "text/html"})
    location = URL(response.headers["Location"])
    assert status == 303 and location.path == "/login" and location.query["next"] == "/whoami?a=1&b=2"


@pytest.mark.asyncio
async def test_plain_http_without_tls_allows_every_request() -> None:
    server = HttpServer("127.0.0.1", 0, tls=None)
    routes(server)
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert (await _get(server.url + "/agents-only", None))[:2] == (200, "agent")
    finally:
        await server.stop()


def test_http_port_flag_defaults_to_port_plus_4_and_may_be_off_or_any_free_port() -> None:
    p = FlagParser(prog="x")
    p.add_flag("--port", type=int, default=5050)
    add_http_flags(p, default_port=5050)
    assert http_port_of(p.parse_args([])) == 5054
    assert http_port_of(p.parse_args(["--port", "0"])) == 0
    assert http_port_of(p.parse_args(["--http-port", "off"])) is None
    assert http_port_of(p.parse_args(["--http-port", "0"])) == 0
    assert http_port_of(p.parse_args(["--http-port", "8080"])) == 8080
    assert p.parse_args(["--metrics-open"]).metrics_open is True
    with pytest.raises(SystemExit):
        p.parse_args(["--http-port", "soon"])


def test_a_daemon_with_http_port_off_has_no_http_server() -> None:
    insecure = DaemonSecurity(tls=None, credentials=None, token_port=None, insecure=False)
    assert daemon_http_server(Namespace(port=5050, http_port="off"), insecure, "127.0.0.1") is None
    server = daemon_http_server(Namespace(port=5050, http_port="auto"), insecure, "127.0.0.1")
    assert server is not None and server.requested_port == 5054 and not server.secure
