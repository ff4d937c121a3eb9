"""``/tuf/``: the release repository, served read-only to anyone (no client certificate needed).

What TUF clients (the device agent's ngclient) fetch::

    GET /tuf/metadata/<N>.root.json        root versions, walked one by one (404 past the newest)
    GET /tuf/metadata/timestamp.json       the one unversioned file: no-cache
    GET /tuf/metadata/<N>.snapshot.json    consistent snapshots: every version stays, immutable
    GET /tuf/metadata/<N>.targets.json
    GET /tuf/targets/<channel>/<sha256>.<name>        hash-prefixed images, immutable

Nothing else: metadata names must match the four roles exactly, a target path is at most a few
segments of ``[A-Za-z0-9._+-]`` that start with a letter or digit (so no ``..``, no dot files), the
file must resolve inside the targets directory and be a regular file. Everything else, directories
included, is 404 with no listing. Integrity does not rest on this route (the device verifies every
byte against the signed metadata); it only keeps the service from serving anything but the
repository.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from trustroot.fleet.releases.repository import METADATA_DIR, TARGETS_DIR
from trustroot.fleet.releases.service import repository_dir
from trustroot.fleet.service import FleetService, get_service

__all__ = ["router"]

_METADATA_NAME: Final = re.compile(r"(?:[1-9][0-9]{0,9}\.)?(?:root|targets|snapshot)\.json|timestamp\.json")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_MAX_SEGMENTS: Final = 4
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: {"description": "No such metadata or target."}}

router = APIRouter(prefix="/tuf", tags=["tuf"])


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="not found")


def _regular_file_inside(base: Path, parts: list[str]) -> Path:
    candidate = base.joinpath(*parts)
    try:
        resolved = candidate.resolve(strict=True)
        root = base.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _not_found() from None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise _not_found()
    return resolved


def _headers(cache: str) -> dict[str, str]:
    return {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}


@router.get("/metadata/{name}", responses=_NOT_FOUND)
@router.head("/metadata/{name}", include_in_schema=False)
def tuf_metadata(name: str, service: Annotated[FleetService, Depends(get_service)]) -> FileResponse:
    """A TUF metadata file (``N.root.json``, ``timestamp.json``, ``N.snapshot.json``, ``N.targets.json``)."""
    if _METADATA_NAME.fullmatch(name) is None:
        raise _not_found()
    path = _regular_file_inside(repository_dir(service) / METADATA_DIR, [name])
    cache = "no-cache" if name == "timestamp.json" else _IMMUTABLE
    return FileResponse(path, media_type="application/json", headers=_headers(cache))


@router.get("/targets/{target:path}", responses=_NOT_FOUND)
@router.head("/targets/{target:path}", include_in_schema=False)
def tuf_target(target: str, service: Annotated[FleetService, Depends(get_service)]) -> FileResponse:
    """A hash-prefixed target file (a release image)."""
    parts = target.split("/")
    if len(parts) > _MAX_SEGMENTS or any(_SEGMENT.fullmatch(part) is None for part in parts):
        raise _not_found()
    path = _regular_file_inside(repository_dir(service) / TARGETS_DIR, parts)
    return FileResponse(path, media_type="application/octet-stream", headers=_headers(_IMMUTABLE))
