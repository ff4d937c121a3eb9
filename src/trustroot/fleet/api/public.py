"""Public routes, served without a client certificate.

``GET /.well-known/security.txt``: the product's vulnerability disclosure contact (RFC 9116,
EN 303 645 provision 5.2-1), made from the Security Context at each request so that ``Expires``
stays ahead. 404 when the context declares no ``[product.disclosure]``.

The disclosure intake (``POST /api/v1/disclosures``) joins this module in a later capability.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import PlainTextResponse

from trustroot.context.security_txt import security_txt
from trustroot.errors import PolicyRefusal
from trustroot.fleet.service import FleetService, get_service

__all__ = ["SECURITY_TXT_PATH", "router"]

SECURITY_TXT_PATH = "/.well-known/security.txt"

router = APIRouter(tags=["public"])


@router.get(
    SECURITY_TXT_PATH,
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, 404: {"description": "No disclosure contact declared."}},
)
def get_security_txt(service: Annotated[FleetService, Depends(get_service)]) -> PlainTextResponse:
    """The security.txt of the product (RFC 9116)."""
    try:
        text = security_txt(service.context, now=service.clock())
    except PolicyRefusal as exc:
        raise HTTPException(status_code=404, detail={"message": exc.message, "provision": exc.provision}) from exc
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8", headers={"cache-control": "max-age=3600"})
