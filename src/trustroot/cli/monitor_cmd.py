"""``trustroot monitor``: the MQTT broker's configuration, the ingest worker, and the alerts.

``broker-config`` writes Mosquitto's files (trustroot.fleet.broker); ``ingest`` runs one MQTT ingest
worker until SIGTERM/SIGINT (trustroot.fleet.mqtt_ingest); ``alerts`` lists alerts from the store.
"""

from __future__ import annotations

import os
import signal
import socket
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import ContextOpt, DatabaseOpt, JsonOpt, Output, QuietOpt, command, open_product_for_cli
from trustroot.errors import UsageError
from trustroot.fleet.service import product_service

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Telemetry monitoring: MQTT broker set-up, ingest workers, alerts.")

BrokerDirOpt = Annotated[
    Path,
    typer.Option("--broker-dir", metavar="DIR", help="Where 'monitor broker-config' wrote the broker's files."),
]


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--broker {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8883")
    return host.strip("[]"), int(port)


@command(app, "broker-config")
def broker_config(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Directory to write the files into.")],
    host: Annotated[str, typer.Option("--host", help="Address the broker listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TLS port of the broker.")] = 8883,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Write the Mosquitto configuration: mutual TLS, CN = serial as user name, a per-device topic ACL.

    Writes mosquitto.conf, acl, ca.pem, crl.pem, server.pem/.key (the service's TLS certificate) and
    the ingest workers' certificate (ingest.pem/.key) into DIR; run as root, the files the broker
    reads are made readable by the mosquitto group. Start the broker with: mosquitto -c DIR/mosquitto.conf

    Example: trustroot monitor broker-config --out /etc/mosquitto/trustroot --port 8883
    """
    from trustroot.fleet.broker import write_broker_config

    output = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    files = write_broker_config(product, out, host=host, port=port)
    data = {
        "directory": str(files.directory),
        "config": str(files.config),
        "listener": f"{files.host}:{files.port}",
        "ingest_certificate": str(files.ingest_cert),
    }
    output.result(
        f"[green]wrote[/green] {files.config} (listener {files.host}:{files.port}, mutual TLS, per-device ACL)\n"
        f"  start it with: mosquitto -c {files.config}",
        data,
    )
    return 0


@command(app, "ingest")
def ingest(
    broker: Annotated[str, typer.Option("--broker", metavar="HOST:PORT", help="The MQTT broker.")] = "127.0.0.1:8883",
    broker_dir: BrokerDirOpt = Path("broker"),
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="MQTT client id (default: ingest-<host>-<pid>); keep it stable.")
    ] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", metavar="URL", help="POST alerts to this URL.")] = None,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", help="Stop after this many seconds (default: run until signalled).")
    ] = None,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Run one MQTT ingest worker: subscribe, validate, store, score, alert; stop on SIGTERM or SIGINT.

    Several workers (on one PostgreSQL store) share the stream through the shared subscription
    $share/ingest/trustroot/+/telemetry. Messages are acknowledged only after they are stored.

    Example: trustroot monitor ingest --broker 127.0.0.1:8883 --broker-dir broker --database postgresql+psycopg://fleet@db/fleet
    """
    from trustroot.fleet.alerts_webhook import AlertWebhook
    from trustroot.fleet.mqtt_ingest import MqttIngestWorker
    from trustroot.fleet.telemetry import TelemetryIngest

    output = Output.of(json_flag=json_, quiet=quiet)
    host, port = _host_port(broker)
    for name in ("ca.pem", "ingest.pem", "ingest.key"):
        if not (broker_dir / name).is_file():
            raise UsageError(f"--broker-dir {broker_dir}: no {name}; run 'trustroot monitor broker-config' first")
    product = open_product_for_cli(context)
    hook = AlertWebhook(webhook) if webhook else None
    with product_service(product, database) as service:
        worker = MqttIngestWorker(
            service,
            TelemetryIngest(service, webhook=hook),
            host=host,
            port=port,
            ca=broker_dir / "ca.pem",
            cert=broker_dir / "ingest.pem",
            key=broker_dir / "ingest.key",
            client_id=client_id or f"ingest-{socket.gethostname()}-{os.getpid()}",
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.stop())
        worker.start()
        output.info(f"ingest worker subscribed at {host}:{port}; stop with SIGTERM or Ctrl-C")
        stats = worker.run(max_seconds=max_seconds).as_dict()
    if hook is not None:
        hook.close()
    output.result(
        f"stopped: {stats['messages']} messages, {stats['accepted']} points stored, "
        f"{stats['duplicates']} duplicates, {stats['refused']} refused, {stats['alerts']} alerts",
        stats,
    )
    return 0


@command(app, "alerts")
def alerts(
    since: Annotated[
        datetime | None, typer.Option("--since", help="Only alerts raised at or after (RFC 3339, with zone).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="Only this device's (serial).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (1-1000).")] = 50,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """List monitoring alerts from the fleet store, newest first.

    Example: trustroot monitor alerts --device ACME-000042 --since 2026-11-22T00:00:00Z
    """
    from trustroot.fleet.alerts import list_alerts

    if since is not None and since.tzinfo is None:
        raise UsageError(f"--since {since.isoformat()}: name the time zone (e.g. ...Z)")
    if not 1 <= limit <= 1000:
        raise UsageError(f"--limit {limit}: expected 1 to 1000")
    output = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        found = list_alerts(service, since=since, device=device, limit=limit)
    lines = [f"{'id':>5}  {'time':<20} {'severity':<8} {'kind':<20} {'device':<16} rule"]
    for view in found:
        lines.append(
            f"{view.id:>5}  {view.time:%Y-%m-%d %H:%M:%S}  {view.severity:<8} {view.kind:<20} "
            f"{view.device or '(fleet)':<16} {view.rule or ''}"
        )
    output.result("\n".join(lines) if found else "no alerts", [view.to_json() for view in found])
    return 0
