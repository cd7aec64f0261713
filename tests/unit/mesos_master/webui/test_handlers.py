"""The web UI's routes on a plain aiohttp application (a stand-in for the HTTP server's authentication sets
`request["principal"]` from a header), over a real `Master` core and a real `EventHub`: pages as a principal
sees them, one-line 4xx for bad input, 503 on a standby, the login form, and the live stream's snapshot and
updates."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from functools import partial

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.events import EventHub, state_snapshot
from mesos_master.outbox import Published
from mesos_master.webui import MasterView, Term, WebUI, install, live, streams
from mesos_master.webui.handlers import NO_LONGER, _local
from mesos_master.webui.view import UI_ROLES
from scheduler_sdk._daemon.http import SESSION_COOKIE
from scheduler_sdk.security.acls import Authorizer
from scheduler_sdk.security.certs import Principal
from tests.unit.mesos_master.webui.test_model import cluster

ALICE = Principal("operator", "alice")
TOKENS = {"alice-token": ALICE, "agent-token": Principal("agent", "h1"), "b-token": Principal("framework", "b")}


@web.middleware
async def stand_in(request: web.Request, handler: Callable) -> web.StreamResponse:  # type: ignore[type-arg]
    """As scheduler_sdk._daemon.http does it, in short: the principal, or 401 (the public routes excepted)."""
    principal = TOKENS.get(request.headers.get("X-Token", "") or request.cookies.get(SESSION_COOKIE, ""))
    request["principal"] = principal
    if getattr(request.match_info.handler, "_aiomesos_public", False):
        return await handler(request)
    roles = getattr(request.match_info.handler, "_aiomesos_roles", UI_ROLES)
    if principal is None or principal.role not in roles:
        return web.Response(status=401 if principal is None else 403, text="no\n")
    return await handler(request)


class Setup:
    def __init__(self) -> None:
        self.w, self.fa, self.fb, self.agent = cluster()
        self.hub = EventHub(partial(state_snapshot, self.w.master), authorizer=Authorizer())
        self.leading = True
        self.ui: WebUI | None = None
        self.view = MasterView(
            term=lambda: Term(self.w.master, self.hub) if self.leading else None,
            authorizer=Authorizer(),
            secure=True,
            leader=lambda: "10.0.0.2:5050",
            check_token=TOKENS.get,
        )


@pytest.fixture
async def ui() -> AsyncIterator[tuple[Setup, TestClient]]:  # type: ignore[type-arg]
    setup = Setup()
    app = web.Application(middlewares=[stand_in])
    setup.ui = install(app, setup.view)
    async with TestClient(TestServer(app)) as client:
        yield setup, client


async def get(client: TestClient, path: str, token: str = "alice-token") -> tuple[int, str]:  # type: ignore[type-arg]
    async with client.get(path, headers={"X-Token": token}, allow_redirects=False) as r:
        return r.status, await r.text()


async def test_pages_as_an_operator_sees_them(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    setup, client = ui
    status, html = await get(client, "/")
    assert status == 200 and "Allocation by role" in html and 'data-role="eng"' in html
    status, html = await get(client, "/agents")
    assert status == 200 and f'data-agent="{setup.agent}"' in html
    status, html = await get(client, "/tasks?state=TASK_RUNNING")
    assert status == 200 and f'data-task="{setup.fa}/web-1"' in html and "web-2" not in html
    status, html = await get(client, f"/tasks/{setup.fa}/web-2")
    assert status == 200 and "Status history" in html and "TASK_FINISHED" in html
    assert "its sandbox cannot be read now" in html  # this agent has no address: it is not a real one
    status, html = await get(client, "/frameworks")
    assert status == 200 and "alpha" in html and "beta" in html


async def test_a_framework_sees_its_own_and_no_one_elses(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    setup, client = ui
    status, html = await get(client, "/tasks", token="b-token")
    assert status == 200 and "web-1" not in html and "alpha" not in html
    status, html = await get(client, "/frameworks", token="b-token")
    assert "beta" in html and "alpha" not in html
    assert (await get(client, f"/tasks/{setup.fa}/web-1", token="b-token"))[0] == 404
    async with client.get("/events", headers={"X-Token": "b-token"}) as r:
        snapshot = await next_data(r)
        assert snapshot["tasks"] == []  # type: ignore[index]


async def test_bad_input_is_a_4xx_with_one_line(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    setup, client = ui
    status, html = await get(client, "/tasks?state=RUNNING")
    assert status == 400 and "state: 'RUNNING' is not a task state" in html
    assert (await get(client, f"/tasks/{setup.fa}/nope"))[0] == 404
    assert (await get(client, "/agents/nope"))[0] == 404
    assert (await get(client, f"/tasks/{setup.fa}/web-1/files/..%2Fx/follow"))[0] in (400, 404)
    for offset in (2**63, -(2**63) - 1):
        status, html = await get(client, f"/tasks/{setup.fa}/web-1/files/stdout/follow?offset={offset}")
        assert status == 400 and "offset: " in html and "out of range" in html
    assert (await get(client, "/", token="agent-token"))[0] == 403
    assert (await get(client, "/", token=""))[0] == 401


async def test_a_standby_names_the_leader(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    setup, client = ui
    setup.leading = False
    status, html = await get(client, "/tasks")
    assert status == 503 and "the leader is 10.0.0.2:5050" in html


async def test_login_sets_the_cookie_and_refuses_a_bad_token(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    _, client = ui
    assert (await get(client, "/login", token=""))[0] == 200
    async with client.post("/login", data={"token": "wrong", "next": "/"}, allow_redirects=False) as r:
        assert r.status == 401 and "not valid" in await r.text()
    async with client.post("/login", data={"token": "agent-token"}, allow_redirects=False) as r:
        assert r.status == 403
    async with client.post("/login", data={"token": "alice-token", "next": "//evil"}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/"
        assert r.cookies[SESSION_COOKIE].value == "alice-token"
        assert r.cookies[SESSION_COOKIE]["httponly"] and r.cookies[SESSION_COOKIE]["samesite"] == "Strict"
    async with client.get("/tasks", cookies={SESSION_COOKIE: "alice-token"}) as r:  # the cookie is the login
        assert r.status == 200 and "Content-Security-Policy" in r.headers


async def test_static_files_are_public(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    _, client = ui
    async with client.get("/static/app.js") as r:
        assert r.status == 200 and "EventSource" in await r.text()
    assert (await get(client, "/static/nope.js", token=""))[0] == 404


async def test_the_live_stream_sends_a_snapshot_then_updates(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    setup, client = ui
    async with client.get("/events", headers={"X-Token": "alice-token"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        snapshot = await next_data(r)
        assert snapshot["k"] == "snapshot"
        assert [setup.fa, "web-1", "TASK_RUNNING"] in snapshot["tasks"]
        (subscription,) = setup.hub._subscriptions.values()
        assert subscription.snapshot.ByteSize() == 0  # sent, so released: not kept for the stream's life
        update = epb.OperatorEvent(
            type=epb.OperatorEvent.TASK_UPDATED,
            task_update=epb.EventTaskUpdate(
                framework_id=setup.fa, task_id="web-1", agent_id=setup.agent, state=tpb.TASK_FINISHED
            ),
        )
        setup.hub.publish([Published(update, "framework/a")])
        (change,) = await next_data(r)
        assert (change["k"], change["id"], change["state"]) == ("task", "web-1", "TASK_FINISHED")
        setup.hub.close("the term is over")
        assert "the term is over" in (await r.content.read()).decode()


async def next_data(response: object) -> object:
    """The next `data:` of a server-sent event stream, decoded."""
    async with asyncio.timeout(5):
        while True:
            line = (await response.content.readline()).decode()  # type: ignore[attr-defined]
            if line.startswith("data: "):
                return json.loads(line[len("data: ") :])


def test_updates_of_agent_and_framework_events() -> None:
    agent = epb.EventAgent(active=False)
    agent.agent_info.id, agent.agent_info.hostname = "S1", "h1"
    assert live.update_of(epb.OperatorEvent(type=epb.OperatorEvent.AGENT_UPDATED, agent=agent), str) == {
        "k": "agent",
        "id": "S1",
        "hostname": "h1",
        "state": "disconnected",
    }
    agent.unreachable_time = 5.0
    assert live.agent_state(agent) == "unreachable"
    agent.drain.drained = True
    assert live.agent_state(agent) == "DRAINED"
    fw = epb.EventFramework(active=False)
    assert (
        live.update_of(epb.OperatorEvent(type=epb.OperatorEvent.FRAMEWORK_REMOVED, framework=fw), str)["state"]
        == "removed"
    )  # type: ignore[index]
    assert live.update_of(epb.OperatorEvent(type=epb.OperatorEvent.OFFERS_MADE), str) is None
    assert live.sse_text("log", "a\r\nb\n") == b"event: log\ndata: a\ndata: b\ndata: \n\n"


async def test_keepalives_come_while_a_source_is_quiet_and_its_task_ends_with_the_reader() -> None:
    stopped = asyncio.Event()

    async def quiet() -> AsyncIterator[str]:
        try:
            yield "a"
            await asyncio.sleep(3600)
            yield "never"
        finally:
            stopped.set()

    async with contextlib.aclosing(live.with_keepalives(quiet(), every=0.01)) as items:
        assert [await anext(items), await anext(items), await anext(items)] == ["a", None, None]
    assert stopped.is_set()  # the page went away: nothing of its source is left running

    async def failing() -> AsyncIterator[str]:
        yield "x"
        raise ConnectionError("the agent went away")

    with pytest.raises(ConnectionError, match="went away"):
        async with contextlib.aclosing(live.with_keepalives(failing(), every=5)) as items:
            assert [i async for i in items] == ["x"]


async def test_an_insecure_master_shows_everything_to_anyone() -> None:
    setup = Setup()
    setup.view.secure = False  # as scheduler_sdk._daemon.http on an insecure daemon: no principal, no check
    app = web.Application()
    install(app, setup.view)
    async with TestClient(TestServer(app)) as client, client.get("/tasks") as r:
        html = await r.text()
        assert r.status == 200 and "web-1" in html and "log out" not in html


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.example", "/\n/evil.example", "/ /evil", "\\\\evil", "/\\evil", "//evil", "https://evil", "/\x00x"],
)
def test_a_login_goes_on_only_to_a_path_here(target: str) -> None:
    assert _local(target) == "/"
    assert _local("/tasks?state=TASK_RUNNING") == "/tasks?state=TASK_RUNNING"


async def test_streams_are_capped_per_principal(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    setup, client = ui
    assert setup.ui is not None
    setup.ui.streams.per_principal = 1
    setup.ui.keepalive = 0.05  # so that a page gone is noticed soon
    async with client.get("/events", headers={"X-Token": "alice-token"}) as first:
        await next_data(first)
        status, html = await get(client, "/events")
        assert status == 429 and "at most 1" in html
        async with client.get("/events", headers={"X-Token": "b-token"}) as other:  # another principal's own share
            assert other.status == 200
    async with asyncio.timeout(5):  # the pages went away: their shares are given back
        while setup.ui.streams.held:
            await asyncio.sleep(0.02)


async def test_an_open_stream_ends_at_a_keepalive_once_its_login_is_revoked(ui: tuple[Setup, TestClient]) -> None:  # type: ignore[type-arg]
    setup, client = ui
    assert setup.ui is not None
    revoked: set[str] = set()
    setup.ui.keepalive = 0.05
    setup.ui.streams.reauthenticate = lambda r: (
        None if r.headers["X-Token"] in revoked else TOKENS[r.headers["X-Token"]]
    )
    async with client.get("/events", headers={"X-Token": "alice-token"}) as r:
        await next_data(r)
        assert b": keepalive" in await r.content.readuntil(b"\n\n")  # still allowed: kept open
        revoked.add("alice-token")
        async with asyncio.timeout(5):
            rest = (await r.content.read()).decode()
        assert "event: end" in rest and NO_LONGER in rest


class _Stuck:
    """A response whose page reads nothing: its writes never finish."""

    async def write(self, data: bytes) -> None:
        await asyncio.Event().wait()


class _Request:
    transport = None


async def test_a_write_the_page_does_not_take_is_given_up() -> None:
    box = streams.Streams(write_timeout=0.05)
    async with asyncio.timeout(5):
        with pytest.raises(streams.StreamStalled, match="stopped reading"):
            await box.send(_Request(), _Stuck(), b"x")  # type: ignore[arg-type]
        ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        ended.set_result("dropped: too slow")
        box.write_timeout = 3600
        with pytest.raises(streams.StreamStalled, match="ended"):  # the hub ended it meanwhile: at once
            await box.send(_Request(), _Stuck(), b"x", ended)  # type: ignore[arg-type]
