"""Operators of the fleet service: bearer tokens with scopes, and the FastAPI dependency that checks them.

An operator is a name, a set of scopes and ONE token. The token is shown once, when the operator is
added (``trustroot operator add``), and never stored: the store keeps its public lookup id and its
SHA-256. Tokens are 256 random bits::

    tr_<43 characters base64url>          e.g. tr_q3Zt0c1...   (no padding)
       └─ first 12 characters: the token id (lookup key, UNIQUE in the store)

Verification (:func:`authenticate_token`) looks the operator up by the token id, compares the SHA-256
of the whole presented token with the stored one in constant time, and refuses a revoked operator.
Every failure (malformed, unknown id, wrong hash, revoked) is the one exception
:class:`InvalidOperatorToken`: the caller learns nothing about which part was wrong.

Scopes (:data:`SCOPES`)::

    read           read-only views of the fleet (devices)
    release        releases and staged rollouts
    device-admin   commands to devices, revocation
    disclosure     vulnerability reports: list, triage, acknowledge, close

Each operator route names exactly one scope; a token without it is answered 403, a missing or invalid
token 401 with ``WWW-Authenticate: Bearer``. :func:`require_operator` makes the dependency; it is an
:class:`OperatorDependency` whose ``scope`` the authorisation-matrix test reads.

Evidence (the service's audit chain): ``operator.added`` and ``operator.revoked``, naming the operator
and scopes, never the token.

Errors::

    TrustrootError
      ├── InvalidOperatorToken   a presented token is not a valid, active operator token
      ├── UsageError             a bad operator name or scope
      └── StateError             adding an existing name, revoking an unknown or revoked operator
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from trustroot.errors import InvalidOperatorToken, StateError, UsageError
from trustroot.evidence import EvidenceRecord
from trustroot.fleet.operators_models import Operator
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.store.audit import record

__all__ = [
    "SCOPES",
    "TOKEN_PREFIX",
    "AuthenticatedOperator",
    "InvalidOperatorToken",
    "NewOperator",
    "OperatorDependency",
    "OperatorView",
    "add_operator",
    "authenticate_token",
    "list_operators",
    "parse_scopes",
    "require_operator",
    "revoke_operator",
]

#: Every operator scope.
SCOPES: Final = frozenset({"read", "release", "device-admin", "disclosure"})
#: Older scope names some routers still use, and the scope they mean.
#: Every token starts with this (so secret scanners and people recognise it).
TOKEN_PREFIX: Final = "tr_"  # noqa: S105 - a prefix, not a secret
_TOKEN_ID_CHARS: Final = 12
_TOKEN_BODY = re.compile(r"[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: last_used_at is written at most this often per operator (a read is not a write per request).
_LAST_USED_RESOLUTION: Final = timedelta(seconds=60)
_WWW_AUTHENTICATE: Final = 'Bearer realm="trustroot-operator"'


@dataclass(frozen=True)
class AuthenticatedOperator:
    """The operator a valid token belongs to."""

    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """How the operator appears as an actor in evidence (``operator:NAME``)."""
        return f"operator:{self.name}"


@dataclass(frozen=True)
class OperatorView:
    """An operator as listed (no token, no hash)."""

    name: str
    scopes: tuple[str, ...]
    token_id: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewOperator:
    """An operator just added, with its token: shown once, then gone."""

    view: OperatorView
    token: str
    record: EvidenceRecord


def _canonical_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise UsageError(f"operator scope {scope!r} is unknown; use one of {', '.join(sorted(SCOPES))}")
    return scope


def parse_scopes(scopes: str | Iterable[str]) -> frozenset[str]:
    """The scopes of ``"read,release"`` (or of an iterable of names); at least one, all known."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    found = frozenset(_canonical_scope(item.strip()) for item in items if item.strip())
    if not found:
        raise UsageError(f"an operator needs at least one scope of {', '.join(sorted(SCOPES))}")
    return found


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _new_token() -> tuple[str, str]:
    body = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return TOKEN_PREFIX + body, body[:_TOKEN_ID_CHARS]


def _view(row: Operator) -> OperatorView:
    return OperatorView(
        name=row.name,
        scopes=tuple(sorted(row.scopes.split(","))),
        token_id=row.token_id,
        created_at=row.created_at,
        created_by=row.created_by,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def add_operator(service: FleetService, name: str, scopes: str | Iterable[str], *, actor: str) -> NewOperator:
    """Add operator ``name`` with ``scopes``; its token is in the result and nowhere else."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"operator name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    wanted = parse_scopes(scopes)
    token, token_id = _new_token()
    now = service.clock()
    row = Operator(
        name=name,
        scopes=",".join(sorted(wanted)),
        token_id=token_id,
        token_sha256=_sha256(token),
        created_at=now,
        created_by=actor,
    )
    try:
        with service.store.transaction() as session:
            if session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
                raise StateError(f"operator {name!r} exists already", hint="revoke it and add another name")
            session.add(row)
            session.flush()
            evidence = record(
                service, "operator.added", name, {"name": name, "scopes": sorted(wanted)}, actor, session=session
            )
    except IntegrityError as exc:  # a concurrent add of the same name
        raise StateError(f"operator {name!r} exists already") from exc
    return NewOperator(view=_view(row), token=token, record=evidence)


def list_operators(service: FleetService, *, include_revoked: bool = True) -> list[OperatorView]:
    """Every operator by name (revoked ones too unless ``include_revoked`` is false)."""
    query = select(Operator).order_by(Operator.name)
    if not include_revoked:
        query = query.where(Operator.revoked_at.is_(None))
    with service.store.transaction() as session:
        return [_view(row) for row in session.scalars(query)]


def revoke_operator(service: FleetService, name: str, *, actor: str) -> OperatorView:
    """Revoke operator ``name``: its token stops working at once."""
    with service.store.transaction() as session:
        row = session.scalar(select(Operator).where(Operator.name == name))
        if row is None:
            raise StateError(f"no operator {name!r}")
        if row.revoked_at is not None:
            raise StateError(f"operator {name!r} was revoked already ({row.revoked_at.isoformat()})")
        row.revoked_at = service.clock()
        record(service, "operator.revoked", name, {"name": name}, actor, session=session)
        return _view(row)


def authenticate_token(service: FleetService, presented: str) -> AuthenticatedOperator:
    """The operator ``presented`` belongs to; :class:`InvalidOperatorToken` for any failure."""
    body = presented[len(TOKEN_PREFIX) :] if presented.startswith(TOKEN_PREFIX) else ""
    if not _TOKEN_BODY.fullmatch(body):
        raise InvalidOperatorToken("invalid operator token")
    digest = _sha256(presented)
    now = service.clock()
    with service.store.transaction() as session:
        row = session.scalar(select(Operator).where(Operator.token_id == body[:_TOKEN_ID_CHARS]))
        # Compare even when no row matched, so that timing does not tell a known id from an unknown one.
        stored = row.token_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(stored.encode("ascii"), digest.encode("ascii")) or row is None:
            raise InvalidOperatorToken("invalid operator token")
        if row.revoked_at is not None:
            raise InvalidOperatorToken("invalid operator token")
        if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_RESOLUTION:
            row.last_used_at = now
        return AuthenticatedOperator(name=row.name, scopes=frozenset(row.scopes.split(",")))


class OperatorDependency:
    """FastAPI dependency: the operator's actor name (``operator:NAME``) if the bearer token has ``scope``.

    401 (``WWW-Authenticate: Bearer``) without a valid token, 403 with a valid token lacking the scope.
    """

    def __init__(self, scope: str) -> None:
        self.scope: Final = _canonical_scope(scope)

    def __repr__(self) -> str:
        return f"require_operator({self.scope!r})"

    def __call__(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise HTTPException(
                401, "an operator bearer token is required", headers={"WWW-Authenticate": _WWW_AUTHENTICATE}
            )
        try:
            operator = authenticate_token(get_service(request), presented.strip())
        except InvalidOperatorToken:
            raise HTTPException(
                401,
                "invalid operator token",
                headers={"WWW-Authenticate": f'{_WWW_AUTHENTICATE}, error="invalid_token"'},
            ) from None
        if self.scope not in operator.scopes:
            raise HTTPException(403, f"the operator token lacks the scope {self.scope!r}")
        return operator.actor


def require_operator(scope: str) -> OperatorDependency:
    """The FastAPI dependency for operator routes needing ``scope`` (see :class:`OperatorDependency`)."""
    return OperatorDependency(scope)
