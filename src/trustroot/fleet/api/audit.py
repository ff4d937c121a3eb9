"""Operator route exporting the fleet's audit chain as an evidence log (scope ``read``).

::

    GET /api/v1/audit/evidence       200 application/jsonl: one canonical evidence record per line

The body is exactly what ``trustroot fleet export-evidence --out FILE`` writes: the store's
hash-chained audit records in the product evidence format (:mod:`trustroot.evidence`), streamed in
sequence order from one consistent read, so that ``trustroot evidence verify FILE`` and the
assessment read it as they read the product's own log. Nothing in it is personal data (the
records carry ids and digests only). The records are parsed and hash-checked as they are streamed;
the chain is verified by whoever reads the file, with the product's evidence keys.

Errors: 401/403 no or insufficient operator token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from trustroot.fleet.operators import require_operator
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.store.audit import audit_log

__all__ = ["EVIDENCE_MEDIA_TYPE", "SCOPE", "JsonLinesResponse", "router"]

#: The operator scope of the export.
SCOPE: Final = "read"
#: JSON Lines, one record per line.
EVIDENCE_MEDIA_TYPE: Final = "application/jsonl"

Operator = Annotated[str, Depends(require_operator(SCOPE))]
Service = Annotated[FleetService, Depends(get_service)]


class JsonLinesResponse(StreamingResponse):
    """A streamed JSON Lines body."""

    media_type = EVIDENCE_MEDIA_TYPE


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "No valid operator token."},
    403: {"description": f"The token lacks the {SCOPE!r} scope."},
}

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=_ERRORS)


def _lines(service: FleetService) -> Iterator[bytes]:
    with contextlib.closing(audit_log(service).iter_records()) as records:
        for record in records:
            yield record.encode() + b"\n"


@router.get(
    "/evidence",
    response_class=JsonLinesResponse,
    responses={200: {"description": "The audit chain as an evidence log (JSON Lines)."}},
)
def get_evidence(service: Service, operator: Operator) -> JsonLinesResponse:
    """The fleet's audit chain in the product evidence format, one record per line (verify it offline)."""
    del operator
    return JsonLinesResponse(
        _lines(service),
        headers={"Content-Disposition": 'attachment; filename="fleet-evidence.jsonl"', "Cache-Control": "no-store"},
    )
