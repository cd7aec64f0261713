"""The task page's log tail: only the file's last TAIL_BYTES are read from the agent (a file of few newlines is
not streamed whole), and the last TAIL_LINES lines of them are kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import pytest

from aiomesos.v1 import agent_pb2
from mesos_master.webui import live, sandbox


class FakeAgent:
    """An agent's read_file over bytes in memory, as the agent reads (a negative offset counts from the end)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = 0

    def __call__(self, *args: object, **kwargs: object) -> FakeAgent:
        return self

    async def __aenter__(self) -> FakeAgent:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None

    async def read_file(
        self, task_id: str, path: str, *, framework_id: str = "", offset: int = 0, tail_lines: int = 0, **_: object
    ) -> AsyncIterator[agent_pb2.ReadFileChunk]:
        size = len(self.data)
        start = max(0, size + offset) if offset < 0 else min(offset, size)
        if tail_lines and self.data.count(b"\n") <= tail_lines:  # as the agent: the last lines begin at 0
            start = 0
        for pos in range(start, size, 64 * 1024):
            chunk = self.data[pos : pos + 64 * 1024]
            self.sent += len(chunk)
            yield agent_pb2.ReadFileChunk(data=chunk, offset=pos)


async def test_a_file_of_few_newlines_is_read_only_at_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"x" * (4 * 1024 * 1024) + b"\nlast line\n"
    agent = FakeAgent(data)
    monkeypatch.setattr(sandbox, "AgentClient", agent)
    tail = await sandbox.tail("h:1", None, "F", "T", "stdout")
    assert agent.sent <= sandbox.TAIL_BYTES  # not the 4 MiB before it
    assert tail.text.endswith("x\nlast line\n") and len(tail.text) <= sandbox.TAIL_BYTES
    assert tail.end == len(data)


def test_the_last_lines_are_kept() -> None:
    text = "".join(f"{i}\n" for i in range(1000)).encode()
    assert sandbox.last_lines(text, cut=True, lines=3) == "997\n998\n999\n"
    assert sandbox.last_lines(b"a\nb", cut=False, lines=1) == "b"
    assert sandbox.last_lines("é".encode()[1:] + b"abc", cut=True) == "abc"  # a character cut at the start
    assert sandbox.last_lines(b"", cut=False) == ""


async def test_a_followed_log_says_the_byte_offset_after_each_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page goes on from the file's byte offset, not from the length of the decoded text (an invalid byte
    becomes one replacement character of three bytes)."""
    data = b"ab\xffc\n" * 20_000
    monkeypatch.setattr(sandbox, "AgentClient", FakeAgent(data))
    got = [item async for item in sandbox.follow("h:1", None, "F", "T", "stdout", 0)]
    assert got[-1][1] == len(data) and "".join(t for t, _ in got) == data.decode(errors="replace")
    assert live.sse_text("log", "x", "5") == b"event: log\nid: 5\ndata: x\n\n"
