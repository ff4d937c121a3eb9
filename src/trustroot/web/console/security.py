"""The console's browser security: headers on every console answer, session cookies, CSRF, bounded forms.

- Every answer under ``/console`` carries a strict Content-Security-Policy (scripts and styles from the
  service itself only, no inline script, no framing, forms post only to the service), ``nosniff``,
  ``Referrer-Policy: same-origin`` (with ``no-referrer`` browsers send ``Origin: null`` on form
  posts), HSTS and ``Cache-Control: no-store``.
- The session cookie is ``__Host-trustroot-session``: ``Secure``, ``HttpOnly``, ``SameSite=Strict``,
  ``Path=/`` and no ``Domain`` (the ``__Host-`` prefix makes browsers enforce the last three).
- Every form that changes something carries the session's CSRF token in a hidden field, compared in
  constant time; the sign-in form uses a double-submit token from a short-lived cookie. A request
  whose ``Origin`` header names another site is refused as well.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trustroot.errors import UsageError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "LOGIN_COOKIE",
    "MAX_FORM_BYTES",
    "SESSION_COOKIE",
    "ConsoleHeaders",
    "FormError",
    "check_csrf",
    "read_form",
    "same_origin",
]

SESSION_COOKIE: Final = "__Host-trustroot-session"
LOGIN_COOKIE: Final = "__Host-trustroot-login"
MAX_FORM_BYTES: Final = 16 << 10
MAX_FORM_FIELDS: Final = 32

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The stored assessment report stands alone with inline styles and no script at all.
REPORT_CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class ConsoleHeaders:
    """ASGI middleware adding the console's security headers to answers under ``/console`` (others untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/console" or path.startswith("/console/")):
            await self.app(scope, receive, send)
            return
        report = path.startswith("/console/compliance/report")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                policy = REPORT_CONTENT_SECURITY_POLICY if report else CONTENT_SECURITY_POLICY
                headers.append((b"content-security-policy", policy.encode("ascii")))
                headers.extend(_HEADERS)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class FormError(UsageError):
    """A console form is malformed, oversized or lacks its CSRF token (EN 303 645 provision 5.13-1)."""


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (at most :data:`MAX_FORM_BYTES`, one value per name)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("console form: expected application/x-www-form-urlencoded", provision="5.13-1")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(f"console form: larger than {MAX_FORM_BYTES} bytes", provision="5.13-1")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"console form: not a valid form ({exc})", provision="5.13-1") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise FormError(f"console form: field {name!r} given twice", provision="5.13-1")
        fields[name] = value
    return fields


def same_origin(request: Request) -> bool:
    """False when the request names another origin (``Origin`` or, failing that, ``Referer``)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin != "null"
    parts = urlsplit(origin)
    return parts.scheme == "https" and parts.netloc == request.headers.get("host", "")


def check_csrf(fields: Mapping[str, str], expected: str) -> bool:
    """Whether the form's ``csrf`` field equals ``expected`` (constant time)."""
    given = fields.get("csrf", "")
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
