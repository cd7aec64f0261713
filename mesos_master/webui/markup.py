"""HTML for the web UI's pages: the page frame, tables, and how values read (resources, times, states). Every
value from the cluster is escaped here (`esc`, `attr`); nothing else writes markup from data.

Rows that the page's script updates live carry `data-task="FRAMEWORK/TASK"` (or `data-agent`, `data-framework`)
and cells `data-field="state"`; a table the script adds rows to has a `<template>` of its row made by the same
function, so a row added live reads as one rendered here."""

from __future__ import annotations

import datetime
import functools
import html
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode

from scheduler_sdk.resources import Resources

#: The page's navigation: (path, title).
NAV = (("/", "Overview"), ("/agents", "Agents"), ("/frameworks", "Frameworks"), ("/tasks", "Tasks"), ("/jobs", "Jobs"))
MIB = "MiB"


def esc(value: object) -> str:
    return html.escape(str(value), quote=False)


def attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def path(*parts: str, query: Mapping[str, str] | None = None) -> str:
    """A URL path of escaped segments (ids may hold any visible character but `/`), with an optional query."""
    out = "/" + "/".join(quote(p, safe="") for p in parts)
    if query:
        kept = {k: v for k, v in query.items() if v}
        if kept:
            out += "?" + urlencode(kept)
    return out


def link(href: str, text: object) -> str:
    return f'<a href="{attr(href)}">{esc(text)}</a>'


def when(timestamp: float) -> str:
    """A time as UTC text in a <time> element (empty for 0: never)."""
    if not timestamp:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return f'<time datetime="{moment.isoformat()}">{moment.strftime("%Y-%m-%d %H:%M:%S")}</time>'


def amount(name: str, value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return f"{text} {MIB}" if name in ("mem", "disk") else text


@functools.lru_cache(maxsize=1024)  # a page of 1,000 tasks has few distinct amounts
def resources_text(res: Resources) -> str:
    """`cpus 2 · mem 1024 MiB · ports 1000`: scalars, then how many of each range resource."""
    parts = [f"{name} {amount(name, value)}" for name, value in sorted(res.scalars().items()) if value]
    for name in sorted(res.names() - set(res.scalars())):
        count = res.range_count(name)
        if count:
            parts.append(f"{name} {count}")
    return " · ".join(parts) or "—"


def usage_cell(name: str, used: float, total: float) -> str:
    """`0.5 / 2` with a meter."""
    if not total and not used:
        return "<td class=num>—</td>"
    meter = f'<meter min="0" max="{total:g}" value="{min(used, total):g}"></meter>' if total else ""
    return f"<td class=num>{esc(amount(name, used))} / {esc(amount(name, total))} {meter}</td>"


def state_badge(state: str, field: str = "state") -> str:
    """A state (TASK_RUNNING, active, DRAINING...) as a badge the script can update in place."""
    css = state.lower().removeprefix("task_")
    return f'<span class="badge {attr(css)}" data-field="{attr(field)}">{esc(state)}</span>'


def table(
    headers: Sequence[str], rows: Iterable[str], *, table_id: str = "", data: Mapping[str, str] | None = None
) -> str:
    ident = f' id="{attr(table_id)}"' if table_id else ""
    extra = "".join(f' data-{attr(k)}="{attr(v)}"' for k, v in (data or {}).items())
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join(rows)
    empty = "" if body else f'<tr class=empty><td colspan="{len(headers)}">none</td></tr>'
    return f"<table{ident}{extra}><thead><tr>{head}</tr></thead><tbody>{body}{empty}</tbody></table>"


def definitions(items: Iterable[tuple[str, str]]) -> str:
    """A <dl> of (term, markup) pairs (the values are markup: escape them first)."""
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def page(title: str, body: str, *, principal: str = "", active: str = "", jobs: bool = True) -> str:
    """The whole page: the navigation, who is logged in, the live indicator, the body."""
    nav = "".join(
        f'<a href="{href}"{" class=active" if href == active else ""}>{esc(name)}</a>'
        for href, name in NAV
        if jobs or href != "/jobs"
    )
    who = (
        f'<span class=who>{esc(principal)}</span><form method=post action="/logout" class=inline>'
        "<button type=submit>log out</button></form>"
        if principal
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · aiomesos</title><link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script></head>
<body><header><span class=brand>aiomesos</span><nav>{nav}</nav>
<span id=live class=offline title="live updates from the master's event stream">offline</span>{who}</header>
<main><h1>{esc(title)}</h1>
{body}
</main></body></html>
"""


def message_page(title: str, message: str, *, principal: str = "") -> str:
    return page(title, f"<p class=message>{esc(message)}</p>", principal=principal)
