"""The master's web UI, served on its HTTP port beside /metrics (docs/webui.md): server-rendered pages of the
cluster (totals and allocation by role, agents, frameworks, tasks with filters, a task's status history and
sandbox logs, the jobs service's jobs), kept current by a little JavaScript from the master's event hub.

    install(server.app, MasterView(term=..., authorizer=..., secure=..., client_config=..., check_token=...))

Every route but the login page and the static files needs a principal (the HTTP server's authentication: a
client certificate, a bearer token or the login cookie) of an operator or a framework; what a page shows is
what the Operator API would show that principal."""

from __future__ import annotations

from aiohttp import web

from mesos_master.webui.handlers import LOGIN, WebUI
from mesos_master.webui.view import MasterView, Term, master_view
from scheduler_sdk._daemon.http import SERVER

__all__ = ["MasterView", "Term", "WebUI", "install", "master_view"]


def install(app: web.Application, view: MasterView) -> WebUI:
    """Add the UI's routes to `app` (before it starts); its long responses end when the app shuts down. On an
    HttpServer's app, browsers without a principal are sent to the UI's login page."""
    ui = WebUI(view)
    app.add_routes(ui.routes())
    app.on_shutdown.append(ui.on_shutdown)
    if SERVER in app:
        app[SERVER].login_path = LOGIN
    return ui
