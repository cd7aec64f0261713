"""The HTTP port against what a security review found: a revoked token stops on the next request with nothing
else rereading the file; a broken or missing credentials file keeps the tokens in force (no 500); a server
without TLS answers only requests for its own host (DNS rebinding); a cross-site form cannot POST (login CSRF);
the login cookie is `__Host-` prefixed."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from scheduler_sdk._daemon.http import (
    SERVER,
    SESSION_COOKIE,
    HttpServer,
    clear_login_cookie,
    client_ssl_context,
    public,
    set_login_cookie,
    token_authenticator,
)
from scheduler_sdk.security import CertificateAuthority
from scheduler_sdk.security.credentials import Credentials, add_token, revoke
from scheduler_sdk.security.tls import ServerTLS


async def whoami(request: web.Request) -> web.Response:
    return web.Response(text=str(request["principal"]))


@public
async def login(request: web.Request) -> web.Response:
    token = str((await request.post()).get("token", ""))
    if request.app[SERVER].check_token(token) is None:
        return web.Response(status=401, text="not a valid token\n")
    response = web.Response(text="welcome")
    set_login_cookie(response, token)
    return response


@public
async def logout(request: web.Request) -> web.Response:
    response = web.Response(text="bye")
    clear_login_cookie(response)
    return response


def _routes(server: HttpServer) -> HttpServer:
    server.app.router.add_get("/whoami", whoami)
    server.app.router.add_post("/login", login)
    server.app.router.add_post("/logout", logout)
    return server


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[dict]:
    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue("master", "master").write(tmp_path, "master")
    tokens = tmp_path / "credentials.toml"
    token = add_token(tokens, "ml", "framework")
    # As a jobs service or a standby master has it: loaded once, and nothing else ever calls reload().
    credentials = Credentials.load(tokens)
    tls = ServerTLS(cert, key, tmp_path / "ca" / "ca.crt")
    server = _routes(HttpServer("127.0.0.1", 0, tls=tls, authenticate=token_authenticator(credentials)))
    await server.start()
    yield {"server": server, "token": token, "tokens": tokens, "ssl": client_ssl_context(tmp_path / "ca" / "ca.crt")}
    await server.stop()


async def _status(url: str, context: ssl.SSLContext | None, method: str = "GET", **kw) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url, ssl=context, **kw) as r:
        return r.status, await r.text()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.asyncio
async def test_a_revoked_token_is_refused_on_the_next_request_with_no_one_else_rereading(tls_server: dict) -> None:
    url, context, token = tls_server["server"].url + "/whoami", tls_server["ssl"], tls_server["token"]
    assert await _status(url, context, headers=_bearer(token)) == (200, "framework/ml")
    revoke(tls_server["tokens"], "ml", "framework")  # what `aiomesos certs revoke` does to the file
    assert (await _status(url, context, headers=_bearer(token)))[0] == 401
    assert (await _status(url, context, cookies={SESSION_COOKIE: token}))[0] == 401


@pytest.mark.asyncio
async def test_a_broken_or_missing_credentials_file_keeps_the_tokens_and_logs_once(
    tls_server: dict,
) -> None:
    url, context, token, tokens = (
        tls_server["server"].url + "/whoami",
        tls_server["ssl"],
        *[tls_server[k] for k in ("token", "tokens")],
    )
    good = tokens.read_text()
    tokens.write_text("[[principal]\nnot toml")
    with capture_logs() as logs:
        for _ in range(3):
            assert await _status(url, context, headers=_bearer(token)) == (200, "framework/ml")
        os.unlink(tokens)
        for _ in range(3):
            assert await _status(url, context, headers=_bearer(token)) == (200, "framework/ml")
        assert (await _status(url, context, headers=_bearer("not-a-token")))[0] == 401
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 2, errors  # once for the broken file, once for the missing one
    tokens.write_text(good)
    assert await _status(url, context, headers=_bearer(token)) == (200, "framework/ml")


@pytest.mark.asyncio
async def test_without_tls_only_requests_for_this_host_are_answered() -> None:
    server = _routes(HttpServer("127.0.0.1", 0, tls=None))
    await server.start()
    try:
        url, port = server.url + "/whoami", server.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "127.0.0.2"):
            assert (await _status(url, None, headers={"Host": host}))[0] == 200, host
        for host in (f"evil.example:{port}", "evil.example", f"10.1.2.3:{port}", f"localhost.evil.example:{port}"):
            status, body = await _status(url, None, headers={"Host": host})
            assert status == 421 and body.count("\n") == 1 and "not a host this server answers for" in body, host
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_a_cross_site_post_is_refused_and_a_same_origin_one_is_not(tls_server: dict) -> None:
    server: HttpServer = tls_server["server"]
    context, token = tls_server["ssl"], tls_server["token"]
    data = {"token": token}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": f"https://127.0.0.1:{server.port + 1}"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        for path in ("/login", "/logout"):
            status, body = await _status(server.url + path, context, "POST", data=data, headers=headers)
            assert status == 403 and body.count("\n") == 1 and "cross-site" in body, (path, headers)
    same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert await _status(server.url + "/login", context, "POST", data=data, headers=same) == (200, "welcome")
    assert await _status(server.url + "/login", context, "POST", data=data) == (200, "welcome")  # curl: no Origin
    assert (await _status(server.url + "/whoami", context, headers={"Origin": "https://evil.example"}))[0] == 401


@pytest.mark.asyncio
async def test_the_login_cookie_is_host_prefixed_and_logout_clears_it(tls_server: dict) -> None:
    server: HttpServer = tls_server["server"]
    context = tls_server["ssl"]
    assert SESSION_COOKIE == "__Host-aiomesos_token"
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/login", data={"token": tls_server["token"]}, ssl=context) as r:
            cookie = r.cookies[SESSION_COOKIE]
            assert cookie["secure"] and cookie["httponly"] and cookie["path"] == "/" and not cookie["domain"]
            assert cookie["samesite"] == "Strict"
        async with session.post(server.url + "/logout", ssl=context) as r:
            cookie = r.cookies[SESSION_COOKIE]
            # A browser drops a __Host- cookie's deletion unless it too is Secure with Path=/.
            assert cookie.value == "" and cookie["secure"] and cookie["path"] == "/" and not cookie["domain"]
