"""Quoting a client's value in a message, safely. An error message that echoes what a client sent (an id, a role,
a name) must stay short whatever was sent: a gRPC status message travels in the reply's trailers, and one over the
client's metadata limit turns a clear INVALID_ARGUMENT into RESOURCE_EXHAUSTED. Every message that quotes client
input quotes it through `quoted`; `cut` bounds a whole message.
"""

from __future__ import annotations

#: The most characters of a client's value a message quotes; the rest is counted, not shown.
QUOTED_CHARACTERS = 64
#: The longest message (an error, a status) the master writes about a call.
MESSAGE_CHARACTERS = 2048


def quoted(value: str | bytes) -> str:
    """`repr(value)`, cut to its first QUOTED_CHARACTERS characters plus how long it was:
    ``quoted("t1") == "'t1'"``, ``quoted("x" * 10_000) == "'xxx…x'…(10000 characters)"``. Control characters are
    escaped, as repr escapes them, so a quoted value cannot break a log line or a terminal."""
    if len(value) <= QUOTED_CHARACTERS:
        return repr(value)
    unit = "bytes" if isinstance(value, bytes) else "characters"
    return f"{value[:QUOTED_CHARACTERS]!r}…({len(value)} {unit})"


def cut(message: str, limit: int = MESSAGE_CHARACTERS) -> str:
    """`message` if it has at most `limit` characters, else its start and how long it was."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}…({len(message)} characters)"
