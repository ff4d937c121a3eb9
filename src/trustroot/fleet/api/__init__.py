"""The fleet API's routers. Each feature module exposes ``router``; ``routers()`` lists them all.

Prefixes: ``/api/v1/device/`` (device routes: a verified device certificate is required),
``/api/v1/`` (operator routes: bearer tokens with scopes), ``/.well-known/`` and ``/tuf/`` (public).
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

__all__ = ["FEATURE_MODULES", "routers"]

#: Modules under trustroot.fleet.api that define a ``router``; a feature adds itself here.
FEATURE_MODULES: tuple[str, ...] = (
    "public",
    "device",
    "releases",
    "tuf",
    "operator_devices",
    "disclosure",
    "operator_api",
    "owner",
    "audit",
    "agent_reports",
    "telemetry",
    "alerts",
)


def routers() -> list[APIRouter]:
    """Every router of the fleet API, in a stable order."""
    found: list[APIRouter] = []
    for name in FEATURE_MODULES:
        module = importlib.import_module(f"trustroot.fleet.api.{name}")
        found.append(module.router)
    return found
