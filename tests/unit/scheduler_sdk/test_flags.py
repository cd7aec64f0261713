"""The shared FlagParser: a boolean variable that says no boolean is an error naming it (never silently false),
and `--help` shows each flag's default and variable once, for the daemons and the CLI alike."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from mesos_agent.daemon import build_parser as agent_parser
from mesos_master.daemon import build_parser as master_parser
from scheduler_sdk._daemon.flags import FlagParser, duration, parse_bool, shown_default
from scheduler_sdk.cli.main import build_parser as cli_parser
from scheduler_sdk.frameworks.jobs.daemon import build_parser as jobs_parser


def parser_with_switch() -> FlagParser:
    p = FlagParser(prog="prog")
    p.add_flag("--insecure", action="store_true", help="no TLS")
    return p


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False), ("off", False)]
)
def test_a_boolean_variable_sets_its_flag(monkeypatch: pytest.MonkeyPatch, raw: str, value: bool) -> None:
    monkeypatch.setenv("AIOMESOS_INSECURE", raw)
    assert parser_with_switch().parse_args([]).insecure is value


@pytest.mark.parametrize("raw", ["ture", "", "2", "enabled"])
def test_a_boolean_variable_that_is_no_boolean_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raw: str
) -> None:
    monkeypatch.setenv("AIOMESOS_INSECURE", raw)
    with pytest.raises(SystemExit) as exit_:
        parser_with_switch().parse_args([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"prog: error: AIOMESOS_INSECURE: {raw!r} is not a boolean")


def test_a_bad_boolean_of_one_command_does_not_stop_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOMESOS_ENFORCE", "ture")
    p = FlagParser(prog="prog")
    sub = p.add_subparsers(dest="command", parser_class=FlagParser)
    sub.add_parser("a").add_flag("--enforce", action="store_true")
    sub.add_parser("b").add_flag("--other", default="x")
    assert p.parse_args(["b"]).other == "x"
    with pytest.raises(SystemExit):
        p.parse_args(["a"])


def test_help_still_shows_with_a_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIOMESOS_INSECURE", "ture")
    with pytest.raises(SystemExit) as exit_:
        parser_with_switch().parse_args(["--help"])
    assert exit_.value.code == 0 and "--insecure" in capsys.readouterr().out


def test_parse_bool() -> None:
    assert parse_bool("TRUE") is True and parse_bool(" no") is False
    with pytest.raises(ValueError, match="'ture' is not a boolean"):
        parse_bool("ture")


def test_help_shows_the_default_and_the_variable_once() -> None:
    p = FlagParser(prog="prog")
    p.add_flag("--port", type=int, default=5050, help="port to listen on")
    p.add_flag("--offer-timeout", type=float, default=None, help="rescind offers after this (default: never)")
    p.add_flag("--ttl", type=duration, default=7 * 86400.0, help="how long")
    p.add_flag("--interval", type=float, default=15.0, help="seconds between")
    p.add_flag("--work-dir", required=True, help="where")
    p.add_flag("--insecure", action="store_true", help="no TLS")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_flag("--share", default="50%", help="a share")
    text = " ".join(p.format_help().split())
    assert "port to listen on (default: 5050) [env AIOMESOS_PORT]" in text
    assert "rescind offers after this (default: never) [env AIOMESOS_OFFER_TIMEOUT]" in text
    assert "how long (default: 7d) [env AIOMESOS_TTL]" in text
    assert "seconds between (default: 15) [env AIOMESOS_INTERVAL]" in text
    assert "where [env AIOMESOS_WORK_DIR]" in text
    assert "no TLS [env AIOMESOS_INSECURE]" in text
    assert "print JSON (default" not in text and "print JSON [env" not in text
    assert "a share (default: 50%) [env AIOMESOS_SHARE]" in text
    assert text.count("(default:") == 5


def every_parser() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    def walk(p: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        yield p.prog, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):
                    yield from walk(sub)

    for build in (cli_parser, master_parser, agent_parser, jobs_parser):
        yield from walk(build())


def test_no_help_of_the_cli_or_a_daemon_tells_a_default_or_a_variable_twice() -> None:
    twice = []
    for prog, p in every_parser():
        p.format_help()  # every help text formats (no stray %)
        formatter = p._get_formatter()
        for action in p._actions:
            text = formatter._get_help_string(action) or ""
            told = re.sub(r"\[env \w+\]", "", text).lower()
            if told.count("default") > 1 or text.count("[env ") > 1:
                twice.append(f"{prog} {'/'.join(action.option_strings)}: {text}")
    assert not twice, "\n".join(twice)


def test_daemon_defaults_are_shown_as_the_flags_take_them() -> None:
    actions = {a.dest: a for a in jobs_parser()._actions}
    assert shown_default(actions["failover_timeout"]) == "7d"
    assert shown_default(actions["work_dir"]) is None  # required
    actions = {a.dest: a for a in master_parser()._actions}
    assert shown_default(actions["revocation"]) is None
    assert shown_default(actions["agent_unreachable_timeout"]) == "75"
