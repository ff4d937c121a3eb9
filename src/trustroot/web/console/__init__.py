"""The web console: server-rendered pages for operators, mounted beside the fleet API.

Operators sign in with a password and a TOTP code (``trustroot operator console-user``); see
:mod:`trustroot.web.console.security` for the browser-side protections and
:mod:`trustroot.fleet.console_users` for credentials and sessions.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from trustroot.web.console.pages import router
from trustroot.web.console.security import ConsoleHeaders

__all__ = ["install_console"]


def install_console(app: FastAPI) -> None:
    """Mount the console's pages, its static files and its security headers on ``app``."""
    app.include_router(router)
    static = resources.files("trustroot.web").joinpath("static")
    app.mount("/console/static", StaticFiles(directory=str(static)), name="console-static")

    @app.get("/console", include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=308)

    app.add_middleware(ConsoleHeaders)
