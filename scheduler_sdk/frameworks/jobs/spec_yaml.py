"""Reading a composed YAML node tree field by field, so that every error names the field path and its line.

The job spec parser (spec.py) is written with these: each reader takes a `Field` (a node and its path) and returns
a plain value or raises `FieldError(message, field, line)`. Scalars are read by YAML 1.1's rules (PyYAML's safe
loader): `yes` is a boolean, `0755` an int; a reader that wants text says "quote it" when YAML read something else."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from scheduler_sdk._daemon.flags import parse_duration
from scheduler_sdk.quoting import quoted

STR, BOOL, INT, FLOAT, NULL, MERGE = (
    f"tag:yaml.org,2002:{t}" for t in ("str", "bool", "int", "float", "null", "merge")
)
#: libyaml's parser where PyYAML has it (ten times faster), with the same nodes, tags and marks
LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAPPING_HINT = "a mapping of fields (name: ..., command: ...)"
_CONSTRUCTOR = SafeConstructor()  # only its scalar readers: they keep no state
_MAX_DURATION_TEXT = 64


class FieldError(ValueError):
    """What is wrong, the field path (`steps[1].depends_on[0]`, "" for the whole spec) and the line (from 1)."""

    def __init__(self, message: str, *, field: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.field, self.line = message, field, line


@dataclass(frozen=True)
class Field:
    """A node of the spec and where it is: its field path and file, for messages."""

    node: Node
    path: str

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str, *, path: str | None = None) -> FieldError:
        return FieldError(message, field=self.path if path is None else path, line=self.line)

    def key(self, name: str, node: Node) -> Field:
        return Field(node, f"{self.path}.{name}" if self.path else name)

    def item(self, index: int, node: Node) -> Field:
        return Field(node, f"{self.path}[{index}]")


def compose(text: str) -> Node:
    """The node tree of one YAML document (FieldError, one line with its line number, if it is not YAML)."""
    try:
        root = yaml.compose(text, Loader=LOADER)
    except (yaml.YAMLError, RecursionError):
        root = _compose_slowly(text)  # PyYAML's own parser says more about what is wrong (the alias' name, ...)
    if root is None:
        raise FieldError(f"empty spec: a job spec is {MAPPING_HINT}")
    return root


def _compose_slowly(text: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = ", ".join(p for p in (e.context, e.problem) if p)
        raise FieldError(f"not valid YAML: {what}", line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        raise FieldError(f"not valid YAML: character #x{e.character:04x} is not allowed", line=line) from None
    except yaml.YAMLError as e:
        raise FieldError(f"not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise FieldError("not valid YAML: nested too deeply") from None


def shown(node: Node) -> str:
    """How a value is named in a message: 'text' quoted, other scalars as written, collections by kind."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == STR:
        return quoted(node.value)
    if node.tag == NULL:
        return "null"
    return quoted(node.value)[1:-1] if len(node.value) <= 64 else quoted(node.value)


def not_what(node: Node) -> str:
    """`not X`, with a hint where YAML read a word as something else than text."""
    hint = " (quote it to make it text)" if isinstance(node, ScalarNode) and node.tag not in (STR, NULL) else ""
    return f"not {shown(node)}{hint}"


def did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def mapping_fields(f: Field, allowed: Sequence[str], *, what: str) -> dict[str, Field]:
    """The fields of a mapping, in document order, each known."""
    if not isinstance(f.node, MappingNode):
        raise f.error(
            f"must be {what}, not {shown(f.node)}" if f.path else f"a job spec is {what}, not {shown(f.node)}"
        )
    out: dict[str, Field] = {}
    for name, key_node, value_node in pairs(f):
        if name not in allowed:
            raise Field(key_node, f.path).error(f"unknown field {quoted(name)}{did_you_mean(name, allowed)}")
        out[name] = f.key(name, value_node)
    return out


def pairs(f: Field) -> list[tuple[str, Node, Node]]:
    """(name, key node, value node) of a mapping, in document order, with merge keys (`<<: *defaults`) merged in as
    YAML's loader does (a key written in the mapping wins over a merged one); a key written twice is refused.
    Nodes are never changed: an aliased mapping reads the same each time it is visited."""
    assert isinstance(f.node, MappingNode)
    out: dict[str, tuple[str, Node, Node, bool]] = {}
    for key_node, value_node, own in _entries(f, f.node, frozenset()):
        name = key_name(f, key_node)
        if own and name in out and out[name][3]:
            raise f.key(name, key_node).error("given twice")
        out.pop(name, None)  # the later one wins: merged keys come first
        out[name] = (name, key_node, value_node, own)
    ordered = sorted(out.values(), key=lambda p: (p[1].start_mark.line, p[1].start_mark.column))
    return [(name, k, v) for name, k, v, _ in ordered]


def _entries(f: Field, node: MappingNode, seen: frozenset[int]) -> list[tuple[Node, Node, bool]]:
    """The (key, value, written here) entries of `node`, merged ones first, the first mapping of a merge list last."""
    if id(node) in seen:
        raise f.error("a merge (<<) includes the mapping itself")
    own: list[tuple[Node, Node, bool]] = []
    merged: list[tuple[Node, Node, bool]] = []
    for key_node, value_node in node.value:
        if not (isinstance(key_node, ScalarNode) and key_node.tag == MERGE):
            own.append((key_node, value_node, True))
            continue
        subs = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for sub in reversed(subs):
            if not isinstance(sub, MappingNode):
                raise Field(sub, f.path).error("a merge (<<) takes a mapping or a list of mappings")
            merged += [(k, v, False) for k, v, _ in _entries(f, sub, seen | {id(node)})]
    return merged + own


def key_name(f: Field, key_node: Node) -> str:
    if not isinstance(key_node, ScalarNode) or key_node.tag == NULL:
        raise Field(key_node, f.path).error(f"a field name must be text, not {shown(key_node)}")
    return str(key_node.value)  # as written: `on:` or `yes:` are names here, not booleans


def required(where: Field, fields: Mapping[str, Field], name: str) -> Field:
    if name not in fields:
        raise where.error("is required", path=where.key(name, where.node).path)
    return fields[name]


def list_items(f: Field, what: str) -> list[Field]:
    if not isinstance(f.node, SequenceNode):
        raise f.error(f"must be a list of {what}, {not_what(f.node)}")
    return [f.item(i, node) for i, node in enumerate(f.node.value)]


def string(f: Field, what: str = "text") -> str:
    if isinstance(f.node, ScalarNode) and f.node.tag == STR:
        return str(f.node.value)
    raise f.error(f"must be {what}, {not_what(f.node)}")


def text_or_number(f: Field) -> str:
    """A string, or a number kept as the text it was written as."""
    if isinstance(f.node, ScalarNode) and f.node.tag in (STR, INT, FLOAT):
        return str(f.node.value)
    raise f.error(f"must be text or a number, {not_what(f.node)}")


def boolean(f: Field) -> bool:
    if isinstance(f.node, ScalarNode) and f.node.tag == BOOL:
        return bool(_CONSTRUCTOR.construct_yaml_bool(f.node))
    raise f.error(f"must be true or false, {not_what(f.node)}")


def number(f: Field, what: str, ok: Callable[[float], bool], *, whole: bool = False) -> float:
    """A number (a boolean is not one; with `whole`, an int) for which `ok` holds; `what` says which, for messages."""
    value: float | None = None
    if isinstance(f.node, ScalarNode) and f.node.tag == INT:
        value = int(_CONSTRUCTOR.construct_yaml_int(f.node))
    elif isinstance(f.node, ScalarNode) and f.node.tag == FLOAT and not whole:
        value = float(_CONSTRUCTOR.construct_yaml_float(f.node))
    if value is None or not math.isfinite(value) or not ok(value):
        raise f.error(f"must be {what}, not {shown(f.node)}")
    return value


def duration(f: Field, *, positive: bool) -> float:
    """ "5s", "10m", "1h30m", "250ms" or a number of seconds."""
    what = "a duration > 0" if positive else "a duration"
    if isinstance(f.node, ScalarNode) and f.node.tag in (INT, FLOAT):
        seconds = number(f, f"{what} (e.g. 5s, 10m, 1h30m)", lambda v: v >= 0)
    elif isinstance(f.node, ScalarNode) and f.node.tag == STR and len(f.node.value) <= _MAX_DURATION_TEXT:
        try:
            seconds = parse_duration(f.node.value)
        except ValueError as e:
            raise f.error(str(e)) from None
    else:
        raise f.error(f"must be {what} (e.g. 5s, 10m, 1h30m), {not_what(f.node)}")
    if positive and seconds <= 0:
        raise f.error(f"must be {what}, not {shown(f.node)}")
    return float(seconds)


def choice(f: Field, choices: Sequence[str]) -> str:
    value = string(f, f"one of {', '.join(choices)}")
    if value not in choices:
        raise f.error(f"must be one of {', '.join(choices)}, not {quoted(value)}{did_you_mean(value, choices)}")
    return value


def text_map(f: Field, check_key: Callable[[str], str | None]) -> tuple[tuple[str, str], ...]:
    """A mapping of text to text-or-number, sorted; `check_key` says what is wrong with a key, if anything."""
    if not isinstance(f.node, MappingNode):
        raise f.error(f"must be a mapping of names to values, {not_what(f.node)}")
    out: dict[str, str] = {}
    for name, key_node, value_node in pairs(f):
        problem = check_key(name)
        if problem is not None:
            raise Field(key_node, f.path).error(problem)
        out[name] = text_or_number(f.key(name, value_node))
    return tuple(sorted(out.items()))


def find(node: Node, path: Sequence[str | int]) -> Node | None:
    """Where the field at `path` (keys and list indices) under `node` is written (a key's node, a list item), or
    None if there is no such field."""
    at: Node | None = node
    written = node
    for part in path:
        if isinstance(part, int) and isinstance(at, SequenceNode) and part < len(at.value):
            at = written = at.value[part]
        elif isinstance(part, str) and isinstance(at, MappingNode):
            try:
                entry = next(((k, v) for name, k, v in pairs(Field(at, "")) if name == part), None)
            except FieldError:
                return None
            if entry is None:
                return None
            written, at = entry
        else:
            return None
    return written


def user_fields(f: Field, what: str) -> list[tuple[str, Field]]:
    """A mapping whose keys are the user's names (attributes), not our fields."""
    if not isinstance(f.node, MappingNode):
        raise f.error(f"must be {what}, {not_what(f.node)}")
    return [(name, f.key(name, v)) for name, _, v in pairs(f)]


def values_of(f: Field) -> tuple[str, ...]:
    """One value (text or a number), or a non-empty list of them."""
    if isinstance(f.node, SequenceNode):
        items = list_items(f, "values")
        if not items:
            raise f.error("must list at least one value")
        return tuple(text_or_number(i) for i in items)
    return (text_or_number(f),)
