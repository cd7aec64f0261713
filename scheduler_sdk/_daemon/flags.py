"""Flag parsing shared by the CLI and the daemons: every flag may also come from `AIOMESOS_<FLAG>`, and a
bad command line is one readable line on stderr and exit code 2 (never a traceback)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, NoReturn

from scheduler_sdk.masters import parse_master

ENV_PREFIX = "AIOMESOS_"


class UsageError(Exception):
    """Raised by commands for bad input: printed as one line, exit code 2."""


#: What a boolean flag's variable may say (case and surrounding blanks aside).
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """A boolean from text (TRUE_WORDS / FALSE_WORDS); ValueError for anything else, `ture` and empty included."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not a boolean (1/0, true/false, yes/no, on/off)")


class HelpFormatter(argparse.HelpFormatter):
    """Each flag's help, then its default and its variable, once each: `help (default: 5050) [env AIOMESOS_PORT]`.

    No default is added where the help text already tells it (it says "default"), where the flag is required,
    or where there is nothing to show (None, False, empty); durations are shown as durations (7d, not 604800.0).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if text == argparse.SUPPRESS:
            return text
        notes = []
        shown = shown_default(action)
        if shown is not None and "default" not in text.lower():
            # argparse expands %-formats in help texts: a default such as "50%" must stay literal.
            notes.append(f"(default: {shown})".replace("%", "%%"))
        env_var = getattr(action, ENV_ATTRIBUTE, None)
        if env_var:
            notes.append(f"[env {env_var}]")
        return " ".join([text, *notes]).strip()


def shown_default(action: argparse.Action) -> str | None:
    """The default the help shows for a flag (None: it shows none)."""
    default = action.default
    if (
        not action.option_strings
        or action.required
        or default is None
        or default is False
        or default == argparse.SUPPRESS
        or default in ("", [], ())
        or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
    ):
        return None
    if action.type in (duration, non_negative_duration) and isinstance(default, (int, float)):
        return format_duration(float(default))
    if isinstance(default, float):
        return str(int(default)) if default.is_integer() else repr(default)  # 15.0 -> 15, 0.9 -> 0.9
    return str(default)


#: The attribute add_flag sets on an action: the name of its environment variable (for the help).
ENV_ATTRIBUTE = "env_var"


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose flags fall back to environment variables and whose errors are one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # Variables whose value this parser's flags cannot take: an error when this parser parses (so a bad
        # variable of one CLI command does not stop another), after --help had its say.
        self.env_errors: list[str] = []

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)

    @staticmethod
    def env_var(*names: str) -> str:
        """The variable of a flag: `--work-dir` -> AIOMESOS_WORK_DIR."""
        long = next(n for n in names if n.startswith("--"))
        return ENV_PREFIX + long[2:].upper().replace("-", "_")

    def add_flag(self, *names: str, env: bool = True, **kwargs: Any) -> argparse.Action:
        """Like add_argument; the default comes from AIOMESOS_<NAME> when that variable is set (a boolean flag's
        variable must say a boolean: TRUE_WORDS or FALSE_WORDS)."""
        var = self.env_var(*names)
        if env and var in os.environ:
            raw = os.environ[var]
            action = kwargs.get("action")
            if action in ("store_true", "store_false"):
                try:
                    truthy = parse_bool(raw)
                except ValueError as e:
                    self.env_errors.append(f"{var}: {e}")
                else:
                    kwargs["default"] = truthy if action == "store_true" else not truthy
            else:
                kwargs["default"] = raw
                kwargs.pop("required", None)
        added = self.add_argument(*names, **kwargs)
        if env:
            setattr(added, ENV_ATTRIBUTE, var)
        return added

    def env_flags(self) -> dict[str, argparse.Action]:
        """Variable name -> action, for every flag of this parser that an environment variable sets."""
        return {var: action for action in self._actions if (var := getattr(action, ENV_ATTRIBUTE, None)) is not None}

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extras = super().parse_known_args(args, namespace)
        if self.env_errors:
            self.error(self.env_errors[0])
        # Defaults taken from the environment arrive as text: convert them like the command line would.
        for action in self._actions:
            value = getattr(ns, action.dest, None)
            if not (isinstance(value, str) and value is action.default and action.option_strings):
                continue
            flag = "/".join(action.option_strings)
            if action.type is not None:
                try:
                    value = action.type(value)  # type: ignore[operator]
                except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                    self.error(f"argument {flag}: invalid value {value!r}: {e}")
                setattr(ns, action.dest, value)
            if action.choices is not None and value not in action.choices:
                choices = ", ".join(map(str, action.choices))
                self.error(f"argument {flag}: invalid choice {value!r} (choose from {choices})")
        return ns, extras


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be ≥ 0")
    return value


def address(text: str) -> str:
    """HOST:PORT, as the master's address is given."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return text.strip()


def master_spec(text: str) -> str:
    """Where the master is (`--master`): HOST:PORT, a comma-separated list of them, or etcd://HOST:PORT/PREFIX;
    checked here (scheduler_sdk.masters.parse_master) and kept as text, which every client parses alike."""
    try:
        return str(parse_master(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be ≥ 0")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be ≥ 1")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return value


def add_logging_flags(parser: FlagParser) -> None:
    parser.add_flag("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level")
    parser.add_flag(
        "--log-format",
        default="auto",
        choices=["auto", "json", "console"],
        help="log format; auto is JSON unless stderr is a terminal",
    )


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Seconds (>= 0) from `90`, `1.5s`, `500ms`, `10m`, `1h30m`, `2d` or `1w`; ValueError (one line) otherwise.
    The one parser of every duration a daemon or the CLI takes."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ValueError(f"{text!r} is not a duration (e.g. 90s, 500ms, 10m, 1h30m, 2d)") from None
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"{text!r} is not a duration >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration` for messages: 1800 -> "30m", 5400 -> "1h30m", 2.5 -> "2.5s", 0.25 -> "250ms"."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{_trim(seconds * 1000)}ms" if seconds > 0 else "0s"
    parts, rest = [], seconds
    for unit in ("d", "h", "m"):
        n = int(rest // _DURATION_UNITS[unit])
        if n:
            parts.append(f"{n}{unit}")
            rest -= n * _DURATION_UNITS[unit]
    if round(rest, 3):
        parts.append(f"{_trim(rest)}s")
    return "".join(parts) or "0s"


def _trim(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def non_negative_duration(text: str) -> float:
    """A duration flag that may be 0."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def duration(text: str) -> float:
    """A duration flag that must be > 0."""
    seconds = non_negative_duration(text)
    if seconds == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be > 0")
    return seconds
