"""``trustroot serve``: run the fleet service (mutual TLS, device check-in, security.txt, ...)."""

from __future__ import annotations

from typing import Annotated

import typer

from trustroot.cli._common import ContextOpt, JsonOpt, Output, QuietOpt

__all__ = ["serve"]


def serve(
    context: ContextOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).")] = 8443,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            metavar="URL",
            help="Fleet store: sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB "
            "(default: .trustroot/fleet.sqlite).",
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (they share the store).")] = 1,
    server_name: Annotated[
        list[str] | None,
        typer.Option("--server-name", help="Another DNS name or IP address for the server certificate (repeatable)."),
    ] = None,
    max_inflight: Annotated[
        int | None,
        typer.Option("--max-inflight", help="Requests in flight per worker before answering 503 (load shedding)."),
    ] = None,
    tls_reload_interval: Annotated[
        float,
        typer.Option("--tls-reload-interval", help="Seconds between checks for a renewed certificate or new CRL."),
    ] = 60.0,
    retention_interval: Annotated[
        float | None,
        typer.Option(
            "--retention-interval",
            help="Seconds between purges of personal data past its retention (default 3600; at most 86400).",
        ),
    ] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Serve the fleet API over TLS 1.2+ with device certificates until stopped (Ctrl+C or SIGTERM).

    Secrets come from the environment: TRUSTROOT_PASSPHRASE (the TLS server key), TRUSTROOT_PKCS11_PIN (a token),
    TRUSTROOT_FORWARDED_CERT_SECRET (accept certificates forwarded by a front proxy). See docs/service.md.

    Example: trustroot serve --port 8443 --workers 4
    """
    from trustroot.context.load import find_context
    from trustroot.fleet.server import ServeSettings
    from trustroot.fleet.server import serve as run

    out = Output.of(json_flag=json_, quiet=quiet)
    settings = ServeSettings(
        context=str(find_context(None, context).resolve()),
        app_factory="trustroot.web.app:create_app",
        host=host,
        port=port,
        database_url=database,
        workers=workers,
        server_names=tuple(server_name or ()),
        tls_reload_interval_s=tls_reload_interval,
        max_inflight_requests=max_inflight,
        retention_interval_s=retention_interval,
    )
    out.info(f"starting the fleet service on {host}:{port}")
    code = run(settings)
    out.result("stopped", {"stopped": True, "exit_code": code})
    return code
