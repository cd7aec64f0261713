"""The names of the files a framework message writes into a command task's sandbox (`Call.Message.path`): one
rule, which the master checks before it forwards a message and the agent again before it writes one.

A name is one plain file name directly in the sandbox: 1 to 255 characters of ``A-Z a-z 0-9 . _ -``, neither
``.`` nor ``..``. No directories (no ``/``), so nothing a message names can be outside the sandbox or below a
directory the task may have replaced with a link; no spaces or control characters, so a name reads the same in a
log, a shell and a task's environment."""

from __future__ import annotations

import string

__all__ = ["FILE_NAME_CHARACTERS", "MAX_FILE_NAME_LENGTH", "file_name_problem"]

#: NAME_MAX on Linux: the longest one directory entry may be.
MAX_FILE_NAME_LENGTH = 255
#: The rule, as a message quotes it.
FILE_NAME_CHARACTERS = "letters, digits, '.', '_' and '-'"
_ALLOWED = frozenset(string.ascii_letters + string.digits + "._-")


def file_name_problem(name: str) -> str | None:
    """What is wrong with `name` as the file a message writes in a sandbox (None: nothing). The caller names the
    field and quotes the value."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_FILE_NAME_LENGTH:
        return f"{len(name)} characters, at most {MAX_FILE_NAME_LENGTH}"
    if name in (".", ".."):
        return f"must not be {name!r}"
    bad = next((c for c in name if c not in _ALLOWED), None)
    if bad is not None:
        return f"{bad!r} is not allowed: a file name in the task's sandbox is {FILE_NAME_CHARACTERS}"
    return None
