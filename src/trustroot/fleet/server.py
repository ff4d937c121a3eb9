"""``trustroot serve``: the fleet service on uvicorn, with the product's TLS, in one or N processes.

Start-up, in the parent process::

    open the product       context found upward or named; secrets from the environment
                           (TRUSTROOT_PASSPHRASE for the TLS server key, the PKCS#11 PIN on a token)
    server certificate     issued or renewed from the root of trust (trustroot.fleet.server_cert)
    fleet store            migrated to the newest revision (trustroot.fleet.store.migrate.upgrade)
    socket                 bound once on host:port; every worker accepts on it

Then each serving process (the parent itself with one worker, else N spawned workers) builds its
:class:`Runtime`: the :class:`~trustroot.fleet.tls.ServerTLS` (reloaded every
``tls_reload_interval_s``, renewing the certificate when due), the :class:`FleetService` and the
application (:func:`build_app` around the factory the settings name: ``fleet`` never imports
``web``, the CLI names ``trustroot.web.app:create_app``), and runs uvicorn with
:class:`~trustroot.fleet.uvicorn_tls.TlsHttpToolsProtocol` (httptools parser, uvloop event loop).
Each serving process also runs the upkeep threads: the release maintenance (TUF timestamp, due
rollout stages; :mod:`trustroot.fleet.releases.service`) and the personal-data retention purge
(:mod:`trustroot.fleet.retention`); both are safe to run in every worker at once.
Workers share nothing but the store (SQLite in WAL mode, or PostgreSQL) and the product's files: the
service keeps no state of its own between requests.

uvicorn starts workers from an import string, so a worker finds its settings in the environment
variable ``TRUSTROOT_SERVE_SETTINGS`` (JSON of :class:`ServeSettings`, no secrets) and is made by
:func:`app_from_env` (the application factory) and :func:`ssl_context_from_env` (uvicorn's
``ssl_context_factory``), both module-level so that they pickle.

Forwarded-certificate mode (a front proxy terminating mutual TLS) is switched on by the environment
variable ``TRUSTROOT_FORWARDED_CERT_SECRET`` (at least 16 characters): a secret never travels on a
command line.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import logging.config
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

from trustroot.errors import UsageError
from trustroot.fleet.config import FleetConfig, FleetLimits, sqlite_url
from trustroot.fleet.releases.service import ReleaseMaintenance
from trustroot.fleet.retention import RETENTION_PART, RetentionMaintenance
from trustroot.fleet.server_cert import ProductTlsSource, ensure_server_certificate, server_names
from trustroot.fleet.service import FleetService
from trustroot.fleet.tls import ServerTLS
from trustroot.product import Product, open_product

__all__ = [
    "FORWARDED_SECRET_ENV",
    "MAX_RETENTION_INTERVAL_S",
    "MIN_FORWARDED_SECRET_CHARS",
    "SETTINGS_ENV",
    "AppFactory",
    "Runtime",
    "ServeSettings",
    "app_from_env",
    "build_app",
    "build_runtime",
    "fleet_config",
    "load_app_factory",
    "prepare",
    "serve",
    "ssl_context_from_env",
]

_log = logging.getLogger(__name__)

#: Makes the application served for a :class:`FleetService` (``trustroot.web.app.create_app``).
AppFactory = Callable[[FleetService], Any]

#: The settings of a serving process (JSON of :class:`ServeSettings`).
SETTINGS_ENV: Final = "TRUSTROOT_SERVE_SETTINGS"
#: The shared secret of the front proxy; setting it switches forwarded-certificate mode on.
FORWARDED_SECRET_ENV: Final = "TRUSTROOT_FORWARDED_CERT_SECRET"  # noqa: S105 - a variable name
MIN_FORWARDED_SECRET_CHARS: Final = 16
#: The longest gap between two retention purges ``--retention-interval`` accepts (personal data is kept
#: at most this long past its retention).
MAX_RETENTION_INTERVAL_S: Final = 86400.0


@dataclass(frozen=True)
class ServeSettings:
    """What ``trustroot serve`` was asked for (no secrets: they stay in the environment).

    ``app_factory`` names the function that makes the application from the :class:`FleetService`
    (``module:function``); the CLI passes ``trustroot.web.app:create_app``.
    """

    context: str
    app_factory: str
    host: str = "127.0.0.1"
    port: int = 8443
    database_url: str | None = None
    workers: int = 1
    server_names: tuple[str, ...] = ()
    tls_reload_interval_s: float = 60.0
    max_inflight_requests: int | None = None
    retention_interval_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port {self.port}: use 0 to 65535")
        if not 1 <= self.workers <= 64:
            raise UsageError(f"--workers {self.workers}: use 1 to 64")
        if self.tls_reload_interval_s <= 0:
            raise UsageError(f"--tls-reload-interval {self.tls_reload_interval_s}: must be positive")
        if self.max_inflight_requests is not None and self.max_inflight_requests < 1:
            raise UsageError(f"--max-inflight {self.max_inflight_requests}: must be at least 1")
        if self.retention_interval_s is not None and not 0 < self.retention_interval_s <= MAX_RETENTION_INTERVAL_S:
            raise UsageError(
                f"--retention-interval {self.retention_interval_s}: use more than 0 and at most "
                f"{MAX_RETENTION_INTERVAL_S:g} seconds (a day)"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        data = json.loads(text)
        data["server_names"] = tuple(data.get("server_names") or ())
        return cls(**data)


def _forwarded_secret() -> str | None:
    secret = os.environ.get(FORWARDED_SECRET_ENV)
    if secret is None:
        return None
    if len(secret) < MIN_FORWARDED_SECRET_CHARS:
        raise UsageError(
            f"{FORWARDED_SECRET_ENV} is shorter than {MIN_FORWARDED_SECRET_CHARS} characters",
            hint="use a long random secret shared with the front proxy only, or unset it",
        )
    return secret


def fleet_config(settings: ServeSettings, product: Product) -> FleetConfig:
    """The :class:`FleetConfig` of ``settings`` for ``product``."""
    limits = FleetLimits()
    if settings.max_inflight_requests is not None:
        limits = dataclasses.replace(limits, max_inflight_requests=settings.max_inflight_requests)
    if settings.retention_interval_s is not None:
        limits = dataclasses.replace(limits, retention_interval_s=settings.retention_interval_s)
    return FleetConfig(
        database_url=settings.database_url or sqlite_url(product.state_dir / "fleet.sqlite"),
        state_dir=product.state_dir,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        limits=limits,
        forwarded_cert_secret=_forwarded_secret(),
    )


def _names(settings: ServeSettings, product: Product) -> tuple[str, ...]:
    return server_names(product.context.model.communication.service_url, settings.server_names)


def _open(settings: ServeSettings) -> Product:
    return open_product(Path(settings.context))


def prepare(settings: ServeSettings, product: Product | None = None) -> tuple[Product, FleetConfig]:
    """The parent's start-up: open the product, make the server certificate current, migrate the store."""
    from trustroot.fleet.store.migrate import open_store

    product = product or _open(settings)
    config = fleet_config(settings, product)
    if config.forwarded_cert_secret is not None:
        _log.warning(
            "forwarded-certificate mode is ON: requests carrying %s are authenticated by the certificate in "
            "X-Trustroot-Client-Cert; the front proxy must strip these headers from its clients",
            FORWARDED_SECRET_ENV,
        )
    if not product.context.model.communication.mutual_tls:
        _log.warning("[communication].mutual_tls is false, but device routes always require the device certificate")
    issued = ensure_server_certificate(product, _names(settings, product))
    _log.info("server certificate %s valid until %s", issued.key.name, issued.not_after.isoformat())
    store = open_store(config.database_url)
    store.dispose()
    return product, config


def load_app_factory(path: str) -> AppFactory:
    """The application factory named ``module:function`` (the CLI names ``trustroot.web.app:create_app``)."""
    module_name, _, attribute = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"application factory {path!r} cannot be imported: {exc}") from exc
    if not callable(factory):
        raise UsageError(f"application factory {path!r} is not callable")
    return cast(AppFactory, factory)


def build_app(service: FleetService, create_app: AppFactory) -> Any:
    """The application ``create_app(service)`` makes, inside the service middleware.

    Outermost first: the sampled access log, load shedding (before any work), the request body
    bound, device authentication of ``/api/v1/device/``, the check-in fast lane
    (:mod:`trustroot.fleet.checkin_route`), then the application. ``fleet`` never imports ``web``:
    the caller hands over the factory (``trustroot.web.app.create_app``).
    """
    from trustroot.fleet.accesslog import AccessLogMiddleware
    from trustroot.fleet.auth import DeviceAuthMiddleware
    from trustroot.fleet.checkin_route import CheckinFastLane
    from trustroot.fleet.loadshed import BodyLimitMiddleware, LoadShedMiddleware

    limits = service.config.limits
    app = create_app(service)
    app.add_middleware(CheckinFastLane)  # well-formed check-ins, behind the authentication (measured)
    app.add_middleware(DeviceAuthMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_request_bytes)
    app.add_middleware(
        LoadShedMiddleware, max_inflight=limits.max_inflight_requests, retry_after_s=limits.retry_after_seconds
    )
    app.add_middleware(AccessLogMiddleware)  # refusals always, successes sampled (uvicorn's log is off)
    return app


@dataclass
class Runtime:
    """Everything one serving process holds."""

    settings: ServeSettings
    product: Product
    tls: ServerTLS
    service: FleetService
    app: Any = field(repr=False)


def build_runtime(
    settings: ServeSettings, product: Product | None = None, config: FleetConfig | None = None
) -> Runtime:
    """The TLS, service and application of one serving process (the store is migrated already)."""
    from trustroot.fleet.store.db import Store, make_engine

    product = product or _open(settings)
    config = config or fleet_config(settings, product)
    source = ProductTlsSource(product, _names(settings, product))
    tls = ServerTLS(source, maintain=source.renew, interval_s=settings.tls_reload_interval_s, clock=product.clock)
    service = FleetService(
        store=Store(make_engine(config.database_url)),
        config=config,
        context=product.context.model,
        pki_dir=product.pki_dir,
        keys=product.keys,
        clock=product.clock,
    )
    service.parts["tls"] = tls
    # refreshes the short-lived TUF timestamp and advances due rollout stages, in a daemon thread
    service.parts["release_maintenance"] = ReleaseMaintenance(service)
    # deletes personal data past its retention, in a daemon thread (one purge at a time across workers)
    service.parts[RETENTION_PART] = RetentionMaintenance(service)
    app = build_app(service, load_app_factory(settings.app_factory))
    return Runtime(settings=settings, product=product, tls=tls, service=service, app=app)


_RUNTIME: list[Runtime] = []


def _runtime_from_env() -> Runtime:
    if not _RUNTIME:
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise UsageError(f"{SETTINGS_ENV} is not set: start the service with 'trustroot serve'")
        runtime = build_runtime(ServeSettings.from_json(text))
        runtime.tls.start()
        runtime.service.parts["release_maintenance"].start()
        runtime.service.parts[RETENTION_PART].start()
        _RUNTIME.append(runtime)
    return _RUNTIME[0]


def app_from_env() -> Any:
    """Application factory of a worker process (``trustroot.fleet.server:app_from_env``)."""
    return _runtime_from_env().app


def ssl_context_from_env(_config: object, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn ``ssl_context_factory`` of a worker process: the listener context of its :class:`ServerTLS`."""
    return _runtime_from_env().tls.listener


def _log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = json.loads(json.dumps(LOGGING_CONFIG))
    config["loggers"]["trustroot"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def _check_worker_secrets(product: Product) -> None:
    from trustroot.keys.passphrase import ENV_VARS

    needed = [ENV_VARS["store"]]
    if product.context.model.root_of_trust.backend == "pkcs11":
        needed.append(ENV_VARS["pin"])
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        raise UsageError(
            f"--workers > 1 needs {', '.join(missing)} in the environment (worker processes cannot prompt)",
            hint="export the variable(s), or run with --workers 1",
        )


def serve(settings: ServeSettings) -> int:
    """Run the service until it is stopped (SIGINT / SIGTERM); returns the exit code."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from trustroot.fleet.uvicorn_tls import TlsHttpToolsProtocol

    common: dict[str, Any] = {
        "http": TlsHttpToolsProtocol,
        "loop": "auto",  # uvloop where installed
        "access_log": False,  # trustroot.fleet.accesslog logs refusals always, successes sampled
        "ws": "none",
        "lifespan": "off",
        "proxy_headers": False,
        "server_header": False,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 5,
        # a worker imports the whole service before it answers its first health check
        "timeout_worker_healthcheck": 30,
        "log_config": _log_config(),
    }
    logging.config.dictConfig(common["log_config"])  # before uvicorn.Config does it: prepare() logs
    product = _open(settings)
    if settings.workers > 1:
        _check_worker_secrets(product)  # before anything asks for a secret
    product, config = prepare(settings, product)
    if settings.workers > 1:
        os.environ[SETTINGS_ENV] = settings.to_json()
        uv_config = uvicorn.Config(
            "trustroot.fleet.server:app_from_env",
            factory=True,
            workers=settings.workers,
            ssl_context_factory=ssl_context_from_env,
            **common,
        )
        sock = _bind(settings.host, settings.port)
        _log_listening(sock, settings.workers)
        Multiprocess(uv_config, sockets=[sock]).run()
        return 0
    runtime = build_runtime(settings, product, config)
    listener = runtime.tls.listener
    uv_config = uvicorn.Config(runtime.app, ssl_context_factory=lambda _c, _d: listener, **common)
    sock = _bind(settings.host, settings.port)
    _log_listening(sock, 1)
    runtime.tls.start()
    maintenance = runtime.service.parts["release_maintenance"]
    retention = runtime.service.parts[RETENTION_PART]
    maintenance.start()
    retention.start()
    try:
        uvicorn.Server(uv_config).run(sockets=[sock])
    finally:
        retention.stop()
        maintenance.stop()
        runtime.tls.stop()
        runtime.service.store.dispose()
        sock.close()
    return 0


def _log_listening(sock: socket.socket, workers: int) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    _log.info(
        "trustroot fleet service listening on https://%s:%d (%d worker%s)",
        shown,
        port,
        workers,
        "" if workers == 1 else "s",
    )
