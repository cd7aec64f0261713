"""The web UI's long responses (server-sent events: the live updates, a followed log), kept in bounds: at most
MAX_STREAMS_PER_PRINCIPAL open at once per principal; every write raced against a deadline and against the end
of what feeds it (a page that stops reading holds no task or socket for ever); and the principal checked again
at each keepalive (`Streams.still_allowed`), so a revoked token or a changed ACL ends an open stream within
KEEPALIVE seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from scheduler_sdk._daemon.http import SERVER
from scheduler_sdk._daemon.tasks import cancel_and_wait
from scheduler_sdk.security.certs import Principal

#: The most streams one principal may hold open at once (a page holds one, and one per followed log).
MAX_STREAMS_PER_PRINCIPAL = 32
#: Seconds one write may wait for the page to read before the stream is given up.
WRITE_TIMEOUT = 10.0


class StreamStalled(ConnectionResetError):
    """The page stopped reading (a write outlived its deadline) or what fed the stream ended meanwhile."""


class TooManyStreams(Exception):
    pass


class Streams:
    """The open streams: their tasks (cancelled when the server stops) and how many each principal holds.
    `reauthenticate` (None: the request's HttpServer, `app[SERVER].principal`) names a request's principal
    afresh, from its certificate, token or cookie as they stand now."""

    def __init__(
        self,
        per_principal: int = MAX_STREAMS_PER_PRINCIPAL,
        write_timeout: float = WRITE_TIMEOUT,
        reauthenticate: Callable[[web.Request], Principal | None] | None = None,
    ) -> None:
        self.per_principal = per_principal
        self.write_timeout = write_timeout
        self.reauthenticate = reauthenticate
        self.tasks: set[asyncio.Task[Any]] = set()
        self.held: Counter[str] = Counter()

    @contextlib.contextmanager
    def opened(self, principal: Principal | None) -> Iterator[None]:
        """One stream of `principal` while the block runs; TooManyStreams if it holds its share already."""
        who = str(principal) if principal is not None else ""
        if self.held[who] >= self.per_principal:
            raise TooManyStreams(
                f"{who or 'you'} already hold {self.held[who]} open streams, at most {self.per_principal}"
            )
        me = asyncio.current_task()
        assert me is not None
        self.held[who] += 1
        self.tasks.add(me)
        try:
            yield
        finally:
            self.tasks.discard(me)
            self.held[who] -= 1
            if self.held[who] <= 0:
                del self.held[who]

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def still_authenticated(self, request: web.Request, principal: Principal | None) -> bool:
        """Does the request still name `principal` (its token not revoked, its certificate the same)?"""
        check = self.reauthenticate
        if check is None:
            server = request.app.get(SERVER)
            if server is None or not server.secure:
                return True
            check = server.principal
        return check(request) == principal

    async def send(
        self, request: web.Request, response: web.StreamResponse, data: bytes, ended: asyncio.Future[Any] | None = None
    ) -> None:
        """Write `data`, or raise StreamStalled (the connection aborted) if the page does not take it within
        `write_timeout` or `ended` comes first."""
        write = asyncio.ensure_future(response.write(data))
        waiting: set[asyncio.Future[Any]] = {write} if ended is None else {write, ended}
        try:
            await asyncio.wait(waiting, timeout=self.write_timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            write.cancel()
            raise
        if write.done():
            write.result()
            return
        await cancel_and_wait(write)
        if request.transport is not None:
            request.transport.abort()  # what is queued for a page that reads nothing is dropped, not flushed
        raise StreamStalled("the page stopped reading" if ended is None or not ended.done() else "the stream ended")
