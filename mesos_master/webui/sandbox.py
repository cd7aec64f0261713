"""What the master reads from an agent for a page: a task's sandbox, and the agent's measured usage. The master
reads them with its own certificate (the agent lets `master/*` read sandboxes: acls.DEFAULT_ACLS), after it has
checked with its own ACLs that the page's principal may (`access_sandboxes`: the task's framework may read its
own, the ACLs say who else). A browser cannot show an agent a client certificate it has not got, so the master
reads for it."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiomesos.v1 import agent_pb2
from scheduler_sdk.operator import AgentClient, AgentError
from scheduler_sdk.security.config import ClientConfig

#: The files a task's page shows the tail of.
LOG_FILES = ("stdout", "stderr")
#: How much of each file the page shows at first: the last lines, at most this many bytes.
TAIL_LINES = 200
TAIL_BYTES = 256 * 1024
#: Seconds the agent has to answer a listing or a tail.
AGENT_TIMEOUT = 3.0


@dataclass(frozen=True)
class Tail:
    text: str
    end: int  # the offset just after what was read: where following starts


def _config(config: ClientConfig | None) -> ClientConfig:
    return config if config is not None else ClientConfig()  # plaintext on an insecure master, never the CLI's


async def list_files(address: str, config: ClientConfig | None, framework_id: str, task_id: str) -> list[str]:
    async with AgentClient(address, config=_config(config), timeout=AGENT_TIMEOUT) as agent:
        files = await agent.list_files(task_id, framework_id=framework_id)
    return sorted(f.path + ("/" if f.is_dir else "") for f in files)


async def tail(address: str, config: ClientConfig | None, framework_id: str, task_id: str, name: str) -> Tail:
    """The last TAIL_LINES lines of the file, out of its last TAIL_BYTES bytes at most: only those are read (a
    negative offset counts from the end), whatever the lines' length."""
    data = bytearray()
    start = end = -1
    async with AgentClient(address, config=_config(config), timeout=AGENT_TIMEOUT) as agent:
        async for chunk in agent.read_file(task_id, name, framework_id=framework_id, offset=-TAIL_BYTES):
            if start < 0:
                start = chunk.offset
            data += chunk.data[: TAIL_BYTES - len(data)]
            end = chunk.offset + len(chunk.data)
    return Tail(last_lines(bytes(data), start > 0), max(end, 0))


def last_lines(data: bytes, cut: bool, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of `data`, as text; `cut`: data begins inside the file, so a UTF-8 character cut
    at its start is skipped rather than shown as a replacement."""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)  # the newline ending the file starts no line
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            break
    if pos >= 0:
        data = data[pos + 1 :]
    elif cut:
        skip = 0
        while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
            skip += 1
        data = data[skip:]
    return data.decode("utf-8", errors="replace")


async def follow(
    address: str, config: ClientConfig | None, framework_id: str, task_id: str, name: str, offset: int
) -> AsyncIterator[tuple[str, int]]:
    """What is appended to the file from `offset` on (from the end, when negative), as text, until the task is
    over and the file drained (the agent's follow); each with the file's byte offset just after it (where a
    page goes on from, should it open the stream again)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    end = offset
    async with AgentClient(address, config=_config(config), timeout=AGENT_TIMEOUT) as agent:
        async for chunk in agent.read_file(task_id, name, framework_id=framework_id, offset=offset, follow=True):
            end = chunk.offset + len(chunk.data)
            text = decoder.decode(chunk.data)
            if text:
                yield text, end
    rest = decoder.decode(b"", final=True)
    if rest:
        yield rest, end


async def containers(address: str, config: ClientConfig | None) -> list[agent_pb2.ContainerStatus]:
    """The agent's containers and their measured usage (the agent shows the master every framework's)."""
    async with AgentClient(address, config=_config(config), timeout=AGENT_TIMEOUT) as agent:
        return list((await agent.containers()).containers)


__all__ = ["LOG_FILES", "AgentError", "Tail", "containers", "follow", "last_lines", "list_files", "tail"]
