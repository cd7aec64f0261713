"""The web UI's routes (aiohttp): each page reads the current term's core through the `MasterView`, as the
principal the HTTP server authenticated (`request["principal"]`: scheduler_sdk._daemon.http), and renders it.
Bad input is a 4xx with a one-line message; a standby answers 503 naming the leader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from typing import Any

import structlog
from aiohttp import web
from yarl import URL

from mesos_master.cluster import Framework, Task
from mesos_master.events import EventsClosedError, Subscription
from mesos_master.webui import jobs, live, pages, sandbox, streams
from mesos_master.webui.markup import message_page, page
from mesos_master.webui.model import (
    TaskFilter,
    agent_row,
    agent_rows,
    find_framework,
    find_task,
    framework_rows,
    task_rows,
    totals,
)
from mesos_master.webui.view import MasterView, Term
from scheduler_sdk._daemon.http import allow, clear_login_cookie, public, set_login_cookie
from scheduler_sdk.quoting import quoted
from scheduler_sdk.sandbox_files import file_name_problem
from scheduler_sdk.security.certs import Principal

log = structlog.get_logger("mesos_master.webui")

#: Every page's headers: nothing but the master's own scripts and styles, never framed, never cached.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {"app.js": "application/javascript", "app.css": "text/css"}
UI = ("operator", "framework")  # who may use the pages (webui.view.UI_ROLES)
#: The login page, where the HTTP server sends a browser that shows no principal.
LOGIN = "/login"
#: Why an open stream ends when its principal's token was revoked or it may no longer use the UI.
NO_LONGER = "your login is no longer valid here, or you may no longer see this: reload the page"


def _static(name: str) -> bytes:
    return resources.files("mesos_master.webui").joinpath("static", name).read_bytes()


def _local(target: str) -> str:
    """A login's `next`: a path on this server, never another site. A control character, a space or a backslash
    is refused outright (URL parsers strip or turn them, so "/\\t/evil" would become "//evil"); what is left
    must still start with exactly one "/" once normalised."""
    if any(c <= " " or c == "\\" for c in target):
        return "/"
    normal = URL(target).path_qs if target.startswith("/") else ""
    ok = (
        target.startswith("/")
        and not target.startswith("//")
        and normal.startswith("/")
        and not normal.startswith("//")
    )
    return target if ok else "/"


class WebUI:
    def __init__(self, view: MasterView) -> None:
        self.view = view
        self.static = {name: _static(name) for name in STATIC_TYPES}
        self.streams = streams.Streams()
        #: Seconds between keepalives on a quiet stream; the principal is checked again at each.
        self.keepalive = live.KEEPALIVE

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.overview),
            web.get(LOGIN, self.login_form),
            web.post(LOGIN, self.login),
            web.post("/logout", self.logout),
            web.get("/static/{name}", self.static_file),
            web.get("/agents", self.agents),
            web.get("/agents/{agent_id}", self.agent),
            web.get("/frameworks", self.frameworks),
            web.get("/tasks", self.tasks),
            web.get("/tasks/{framework_id}/{task_id}", self.task),
            web.get("/tasks/{framework_id}/{task_id}/files/{name}/follow", self.follow),
            web.get("/jobs", self.jobs),
            web.get("/jobs/{framework_id}/{job_id}", self.job),
            web.get("/events", self.events),
        ]

    async def on_shutdown(self, app: web.Application) -> None:
        """End the long responses (event streams, followed logs) so that the server stops at once."""
        self.streams.cancel_all()

    # ------------------------------------------------------------------ helpers
    def _html(self, body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)

    def _who(self, request: web.Request) -> Principal | None:
        principal = request.get("principal")
        return principal if isinstance(principal, Principal) else None

    def _term(self, request: web.Request) -> Term:
        term = self.view.term()
        if term is None:
            leader = self.view.leader()
            where = f": the leader is {leader}" if leader else ""
            raise self._refusal(503, f"this master does not lead now{where}", request)
        return term

    def _refusal(self, status: int, message: str, request: web.Request) -> web.HTTPException:
        who = self._who(request)
        body = message_page(f"{status}", message, principal=str(who) if who else "")
        return _error(status, body)

    async def _page(
        self,
        request: web.Request,
        title: str,
        active: str,
        build: Callable[[Term, Callable[[str], bool]], str],
    ) -> web.Response:
        term = self._term(request)
        who = self._who(request)
        visible = self.view.viewer(who)
        body = build(term, visible)
        has_jobs = bool(jobs.jobs_services(term.master, visible, self.view.jobs_from))
        return self._html(page(title, body, principal=str(who) if who else "", active=active, jobs=has_jobs))

    def _task(self, request: web.Request, term: Term) -> tuple[Task, Framework]:
        framework_id, task_id = request.match_info["framework_id"], request.match_info["task_id"]
        visible = self.view.viewer(self._who(request))
        found = find_framework(term.master, visible, framework_id)
        task = find_task(term.master, visible, framework_id, task_id)
        if found is None or task is None:
            raise self._refusal(
                404, f"no task {quoted(task_id)} of framework {quoted(framework_id)} that you may see", request
            )
        return task, found[0]

    # ------------------------------------------------------------------ login
    @public
    async def login_form(self, request: web.Request) -> web.Response:
        return self._html(page("Log in", pages.login(next_path=_local(request.query.get("next", "/")))))

    @public
    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        target = _local(str(form.get("next", "/")))
        principal = self.view.check_token(token) if self.view.check_token is not None and token else None
        if principal is None:
            return self._html(page("Log in", pages.login("that token is not valid here", target)), 401)
        if not self.view.may_use(principal):
            return self._html(page("Log in", pages.login(f"{principal} may not use the web UI", target)), 403)
        log.info("web UI login", principal=str(principal))
        response = web.HTTPSeeOther(target, headers=HEADERS)
        set_login_cookie(response, token)
        raise response

    @public
    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther(LOGIN, headers=HEADERS)
        clear_login_cookie(response)
        raise response

    @public
    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.static:
            raise web.HTTPNotFound(text=f"no static file {quoted(name)}\n")
        return web.Response(
            body=self.static[name], content_type=STATIC_TYPES[name], headers={"Cache-Control": "max-age=300"}
        )

    # ------------------------------------------------------------------ pages
    @allow(*UI)
    async def overview(self, request: web.Request) -> web.Response:
        return await self._page(
            request, "Cluster", "/", lambda term, visible: pages.overview(totals(term.master, visible))
        )

    @allow(*UI)
    async def agents(self, request: web.Request) -> web.Response:
        return await self._page(request, "Agents", "/agents", lambda term, _: pages.agents(agent_rows(term.master)))

    @allow(*UI)
    async def agent(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        term = self._term(request)
        record = term.master.agents.get(agent_id)
        if record is None:
            raise self._refusal(404, f"no agent {quoted(agent_id)}", request)

        visible = self.view.viewer(self._who(request))
        usage = pages.usage_table(*await self._usage(term, record.info.address if record.connected else "", visible))

        def build(term: Term, visible: Callable[[str], bool]) -> str:
            rows = task_rows(term.master, visible, TaskFilter(agent=agent_id))
            return pages.agent(agent_row(term.master, record), rows, usage)

        return await self._page(request, f"Agent {record.info.hostname}", "/agents", build)

    async def _usage(self, term: Term, address: str, visible: Callable[[str], bool]) -> tuple[list[Any], str]:
        """The agent's containers the viewer may see, or why they cannot be read."""
        if not address:
            return [], "the agent is not connected"
        try:
            async with asyncio.timeout(sandbox.AGENT_TIMEOUT):
                found = await sandbox.containers(address, self.view.client_config)
        except (sandbox.AgentError, TimeoutError) as e:
            return [], f"cannot ask the agent: {e or 'timed out'}"
        frameworks = term.master.frameworks
        owners = {fid: fw.info.principal for fid, fw in frameworks.items()}
        return [c for c in found if visible(owners.get(c.framework_id, ""))], ""

    @allow(*UI)
    async def frameworks(self, request: web.Request) -> web.Response:
        def build(term: Term, visible: Callable[[str], bool]) -> str:
            ids = frozenset(s.framework_id for s in jobs.jobs_services(term.master, visible, self.view.jobs_from))
            return pages.frameworks(framework_rows(term.master, visible), ids)

        return await self._page(request, "Frameworks", "/frameworks", build)

    @allow(*UI)
    async def tasks(self, request: web.Request) -> web.Response:
        try:
            wanted = TaskFilter.parse(request.query)
        except ValueError as e:
            raise self._refusal(400, str(e), request) from None

        def build(term: Term, visible: Callable[[str], bool]) -> str:
            return pages.tasks(task_rows(term.master, visible, wanted), wanted)

        return await self._page(request, "Tasks", "/tasks", build)

    @allow(*UI)
    async def task(self, request: web.Request) -> web.Response:
        term = self._term(request)
        task, fw = self._task(request, term)
        agent = term.master.agents.get(task.agent_id)
        hostname = agent.info.hostname if agent is not None else ""
        files: list[str] = []
        logs: dict[str, sandbox.Tail] = {}
        error = ""
        allowed, why = self.view.may_read_sandbox(self._who(request), fw.info.principal)
        if not allowed:
            error = why
        elif agent is None or not agent.connected or not agent.info.address:
            error = "the task's agent is not connected: its sandbox cannot be read now"
        else:
            try:
                files, logs = await self._read_logs(agent.info.address, task)
            except (sandbox.AgentError, TimeoutError) as e:
                error = f"cannot read the sandbox from {hostname or task.agent_id}: {e or 'timed out'}"
        return await self._page(
            request,
            f"Task {task.task_id}",
            "/tasks",
            lambda _t, _v: pages.task(task, fw, hostname, files, logs, error),
        )

    async def _read_logs(self, address: str, task: Task) -> tuple[list[str], dict[str, sandbox.Tail]]:
        config = self.view.client_config
        async with asyncio.timeout(sandbox.AGENT_TIMEOUT * 2):
            files = await sandbox.list_files(address, config, task.framework_id, task.task_id)
            names = [n for n in sandbox.LOG_FILES if n in files]
            tails = await asyncio.gather(
                *(sandbox.tail(address, config, task.framework_id, task.task_id, n) for n in names)
            )
        return files, dict(zip(names, tails, strict=True))

    @allow(*UI)
    async def jobs(self, request: web.Request) -> web.Response:
        term = self._term(request)
        visible = self.view.viewer(self._who(request))
        services = jobs.jobs_services(term.master, visible, self.view.jobs_from)

        async def read(service: jobs.JobsService) -> tuple[jobs.JobsService, Any, str]:
            try:
                return service, await jobs.list_jobs(service, self.view.client_config), ""
            except jobs.JobsError as e:
                return service, None, str(e)

        listed = await asyncio.gather(*(read(s) for s in services))
        return await self._page(request, "Jobs", "/jobs", lambda _t, _v: jobs.jobs_page(listed))

    @allow(*UI)
    async def job(self, request: web.Request) -> web.Response:
        term = self._term(request)
        framework_id, job_id = request.match_info["framework_id"], request.match_info["job_id"]
        visible = self.view.viewer(self._who(request))
        service = next(
            (
                s
                for s in jobs.jobs_services(term.master, visible, self.view.jobs_from)
                if s.framework_id == framework_id
            ),
            None,
        )
        if service is None:
            raise self._refusal(404, f"no jobs service {quoted(framework_id)} that you may see", request)
        try:
            status = await jobs.get_job(service, self.view.client_config, job_id)
        except jobs.JobsError as e:
            raise self._refusal(404 if e.refused else 502, str(e), request) from None
        fw = term.master.frameworks.get(framework_id)
        known: dict[str, int] = {}
        if fw is not None:
            for t in (*fw.completed_tasks, *fw.tasks.values()):
                known[t.task_id] = t.state
        return await self._page(request, f"Job {job_id}", "/jobs", lambda _t, _v: jobs.job_page(service, status, known))

    # ------------------------------------------------------------------ streams
    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        await self.streams.send(request, response, f"retry: {live.RETRY_MS}\n\n".encode())
        return response

    def _still_allowed(self, request: web.Request) -> bool:
        """At a keepalive: does the request still name its principal, who may still use the UI?"""
        who = self._who(request)
        return self.streams.still_authenticated(request, who) and self.view.may_use(who)

    @allow(*UI)
    async def events(self, request: web.Request) -> web.StreamResponse:
        term = self._term(request)
        if term.hub is None:
            raise self._refusal(503, "this master has no event stream", request)
        with self._opened(request):
            try:
                subscription = term.hub.subscribe(self._who(request))
            except EventsClosedError as e:  # the term ended just now: the browser retries
                raise self._refusal(503, str(e), request) from None
            ended = asyncio.ensure_future(subscription.wait_ended())
            try:
                response = await self._stream(request)
                snapshot = live.snapshot_update(subscription.take_snapshot())
                await self.streams.send(request, response, live.sse(snapshot), ended)
                why = await self._relay(request, response, subscription, term, ended)
                await self.streams.send(request, response, live.sse_text("end", why or subscription.end_reason or ""))
                return response
            except ConnectionResetError:  # the page went away, or stopped reading
                return web.Response(status=204)
            finally:
                subscription.close()
                ended.cancel()

    @contextlib.contextmanager
    def _opened(self, request: web.Request) -> Iterator[None]:
        try:
            with self.streams.opened(self._who(request)):
                yield
        except streams.TooManyStreams as e:
            raise self._refusal(429, str(e), request) from None

    async def _relay(
        self,
        request: web.Request,
        response: web.StreamResponse,
        subscription: Subscription,
        term: Term,
        ended: asyncio.Future[str],
    ) -> str:
        """Send the subscription's batches until it ends (""), or until the page's principal may no longer
        see them (why)."""
        agents = term.master.agents

        def hostname(agent_id: str) -> str:
            agent = agents.get(agent_id)
            return agent.info.hostname if agent is not None else ""

        batches = aiter(subscription)
        while True:
            try:
                async with asyncio.timeout(self.keepalive):
                    batch = await anext(batches)
            except TimeoutError:
                if not self._still_allowed(request):
                    return NO_LONGER
                await self.streams.send(request, response, b": keepalive\n\n", ended)
                continue
            except StopAsyncIteration:
                return ""
            changes = live.updates(batch, hostname)
            if changes:
                await self.streams.send(request, response, live.sse(changes), ended)

    @allow(*UI)
    async def follow(self, request: web.Request) -> web.StreamResponse:
        term = self._term(request)
        task, fw = self._task(request, term)
        name = request.match_info["name"]
        problem = file_name_problem(name)
        if problem is not None:
            raise self._refusal(400, f"file name: {problem}", request)
        try:
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            raise self._refusal(400, "offset: not a whole number", request) from None
        if not -(2**63) <= offset < 2**63:  # the agent's field is an int64
            raise self._refusal(400, f"offset: {offset} is out of range (a 64-bit signed integer)", request)
        allowed, why = self.view.may_read_sandbox(self._who(request), fw.info.principal)
        if not allowed:
            raise self._refusal(403, why, request)
        agent = term.master.agents.get(task.agent_id)
        if agent is None or not agent.info.address:
            raise self._refusal(503, "the task's agent is not connected", request)
        with self._opened(request):
            response = await self._stream(request)
            appended = sandbox.follow(
                agent.info.address, self.view.client_config, task.framework_id, task.task_id, name, offset
            )
            await self._relay_log(request, response, appended, name, fw.info.principal)
            return response

    async def _relay_log(
        self,
        request: web.Request,
        response: web.StreamResponse,
        appended: AsyncIterator[tuple[str, int]],
        name: str,
        owner: str,
    ) -> None:
        send = self.streams.send
        try:
            async with contextlib.aclosing(live.with_keepalives(appended, self.keepalive)) as texts:
                async for item in texts:
                    if item is not None:
                        await send(request, response, live.sse_text("log", item[0], str(item[1])))
                        continue
                    if not self._still_allowed(request) or not self.view.may_read_sandbox(self._who(request), owner)[0]:
                        await send(request, response, live.sse_text("end", NO_LONGER))
                        return
                    await send(request, response, b": keepalive\n\n")
            await send(request, response, live.sse_text("end", "the task is over"))
        except sandbox.AgentError as e:
            with contextlib.suppress(ConnectionResetError):
                await send(request, response, live.sse_text("end", f"cannot read {name}: {e}"))
        except ConnectionResetError:  # the page went away, or stopped reading
            pass


def _error(status: int, body: str) -> web.HTTPException:
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        429: web.HTTPTooManyRequests,
        502: web.HTTPBadGateway,
        503: web.HTTPServiceUnavailable,
    }
    return classes.get(status, web.HTTPBadRequest)(text=body, content_type="text/html", headers=HEADERS)
