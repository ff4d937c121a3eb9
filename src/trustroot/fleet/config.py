"""Configuration and limits of the fleet service (every limit in one object, safe defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FleetConfig", "FleetLimits", "sqlite_url"]


@dataclass(frozen=True)
class FleetLimits:
    """Bounds at the service's boundaries."""

    max_request_bytes: int = 256 << 10
    max_disclosure_bytes: int = 64 << 10
    max_telemetry_batch_points: int = 5000
    #: Requests admitted at once before the service answers 503 with Retry-After (load shedding).
    max_inflight_requests: int = 512
    retry_after_seconds: int = 5
    disclosure_per_ip_per_hour: int = 10
    #: Seconds between two purges of personal data past its retention (trustroot.fleet.retention).
    retention_interval_s: float = 3600.0
    operator_token_bytes: int = 32


@dataclass(frozen=True)
class FleetConfig:
    """Where the service keeps its state and how it listens.

    ``forwarded_cert_secret`` turns on the forwarded-certificate mode for a front proxy that
    terminates mutual TLS (off by default; a forwarding header is never trusted otherwise).
    """

    database_url: str
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 1
    limits: FleetLimits = field(default_factory=FleetLimits)
    forwarded_cert_secret: str | None = None


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of the embedded store at ``path``."""
    return f"sqlite:///{path.resolve()}"
