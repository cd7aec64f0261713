"""deploy/env/*.env.example list every flag of their daemon, each with a description and its default, and nothing
that is no flag: a flag added to a parser without its line here fails this test, by name."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesos_agent.daemon import build_parser as agent_parser
from mesos_master.daemon import build_parser as master_parser
from scheduler_sdk._daemon.flags import FlagParser, shown_default
from scheduler_sdk.frameworks.jobs.daemon import build_parser as jobs_parser

ENV_DIR = Path(__file__).resolve().parents[2] / "deploy" / "env"
DAEMONS: dict[str, Callable[[], FlagParser]] = {
    "master.env.example": master_parser,
    "agent.env.example": agent_parser,
    "jobs.env.example": jobs_parser,
}
VARIABLE = re.compile(r"^(#)?(AIOMESOS_[A-Z0-9_]+)=(.*)$")


@dataclass
class Entry:
    name: str
    commented: bool
    value: str
    description: str  # the comment lines above it in its block, joined


def parse_env_file(text: str) -> list[Entry]:
    """The variables of an env file (set or commented out), each with the comments that precede it in its block
    (a block: lines between blank lines)."""
    entries: list[Entry] = []
    comments: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            comments = []
            continue
        match = VARIABLE.match(line)
        if match:
            entries.append(Entry(match[2], bool(match[1]), match[3], " ".join(comments)))
        elif line.startswith("#"):
            comments.append(line.lstrip("#").strip())
        else:
            raise AssertionError(f"not a variable nor a comment: {raw!r}")
    return entries


def test_the_parser_of_env_files_reads_blocks() -> None:
    entries = parse_env_file("# port\n# (default: 1)\nAIOMESOS_PORT=1\n#AIOMESOS_X=2\n\nAIOMESOS_Y=3\n")
    assert [(e.name, e.commented, e.value, e.description) for e in entries] == [
        ("AIOMESOS_PORT", False, "1", "port (default: 1)"),
        ("AIOMESOS_X", True, "2", "port (default: 1)"),
        ("AIOMESOS_Y", False, "3", ""),
    ]


@pytest.mark.parametrize("env_file", sorted(DAEMONS))
def test_every_flag_is_in_its_env_file_and_nothing_else(env_file: str) -> None:
    parser = DAEMONS[env_file]()
    flags = set(parser.env_flags())
    listed = {entry.name for entry in parse_env_file((ENV_DIR / env_file).read_text())}
    missing, unknown = sorted(flags - listed), sorted(listed - flags)
    assert not missing, f"deploy/env/{env_file} lacks the flag(s) of `{parser.prog}`: {', '.join(missing)}"
    assert not unknown, f"deploy/env/{env_file} sets what is no flag of `{parser.prog}`: {', '.join(unknown)}"


@pytest.mark.parametrize("env_file", sorted(DAEMONS))
def test_every_variable_is_described_with_its_default(env_file: str) -> None:
    parser = DAEMONS[env_file]()
    actions = parser.env_flags()
    problems = []
    for entry in parse_env_file((ENV_DIR / env_file).read_text()):
        if not entry.description:
            problems.append(f"{entry.name}: no comment above it says what it is")
            continue
        action = actions.get(entry.name)
        shown = shown_default(action) if action is not None else None
        if shown is None or action is None or action.default == socket.gethostname():
            continue
        if not re.search(r"defaults?:[^)]*?(?<![\w.])" + re.escape(shown) + r"(?![\w.])", entry.description):
            problems.append(f"{entry.name}: its comment does not say its default ({shown})")
    assert not problems, f"deploy/env/{env_file}: " + "; ".join(problems)


def test_a_flag_missing_from_a_file_is_named() -> None:
    parser = FlagParser(prog="x")
    parser.add_flag("--work-dir")
    parser.add_flag("--http-port", type=int, default=5054, help="the HTTP port")
    listed = {entry.name for entry in parse_env_file("# where\nAIOMESOS_WORK_DIR=/x\n# stale\n#AIOMESOS_GONE=1\n")}
    assert sorted(set(parser.env_flags()) - listed) == ["AIOMESOS_HTTP_PORT"]
    assert sorted(listed - set(parser.env_flags())) == ["AIOMESOS_GONE"]
