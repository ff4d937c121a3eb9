"""Assemble the one ASGI application served by ``trustroot serve``.

The fleet API comes from ``trustroot.fleet.api``; the operators' web console
(``trustroot.web.console``) is mounted beside it under ``/console``. One OpenAPI document covers
every API route (the console's pages are not part of it); every error answer of the API has the one
documented body (:mod:`trustroot.fleet.api.error_body`).
"""

from __future__ import annotations

from fastapi import FastAPI

from trustroot import __version__
from trustroot.fleet.api import routers
from trustroot.fleet.api.error_body import document_errors, install_error_handlers
from trustroot.fleet.service import FleetService
from trustroot.web.console import install_console

__all__ = ["create_app"]


def create_app(service: FleetService) -> FastAPI:
    """The application serving ``service``."""
    app = FastAPI(
        title="trustroot fleet service",
        version=__version__,
        description="Devices, signed updates over TUF, rollouts, ownership and personal data, disclosure intake.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        # FastAPI's native OpenTelemetry looks up the global providers at every request (~8 % of a
        # check-in's CPU, docs/benchmarks.md); the service configures no OpenTelemetry
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.fleet = service
    for router in routers():
        app.include_router(router)
    install_error_handlers(app)
    document_errors(app)
    install_console(app)
    return app
