"""Console logins: passwords with a memory-hard hash plus TOTP, brute-force lockout, server-side sessions.

A console user is an operator (:mod:`trustroot.fleet.operators`: name and scopes) with a console login.
``trustroot operator console-user NAME`` makes one and shows the TOTP secret once.

Sign-in (:func:`sign_in`) needs the name, the password and a current TOTP code. Every failure is the
one error :class:`ConsoleLoginRefused` (nothing tells a wrong name from a wrong password or code);
after :data:`MAX_FAILED_ATTEMPTS` failures in a row the login is locked for :data:`LOCKOUT`
(EN 303 645 provision 5.1-5: brute force over a network interface made impracticable), and an
unknown name costs the same hash as a known one. A TOTP code is accepted once.

Sessions are random 256-bit cookies; the store keeps their SHA-256 only, with the CSRF token of the
session's forms. A session ends after :data:`IDLE_TIMEOUT` without use, :data:`ABSOLUTE_TIMEOUT` after
sign-in, at sign-out, or when the operator is revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select

from trustroot.context.common_passwords import is_common_password
from trustroot.errors import PolicyRefusal, StateError, UsageError
from trustroot.fleet import totp
from trustroot.fleet.console_models import ConsoleLogin, ConsoleSession
from trustroot.fleet.operators import add_operator, parse_scopes
from trustroot.fleet.operators_models import Operator
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import record
from trustroot.limits import INSECURE_TEST_SCRYPT, PRODUCTION_SCRYPT, ScryptCost, scrypt_cost

__all__ = [
    "ABSOLUTE_TIMEOUT",
    "IDLE_TIMEOUT",
    "LOCKOUT",
    "MAX_FAILED_ATTEMPTS",
    "ConsoleLoginRefused",
    "ConsoleSessionView",
    "NewConsoleUser",
    "SignedIn",
    "check_password_policy",
    "create_console_user",
    "hash_password",
    "session_for",
    "sign_in",
    "sign_out",
    "verify_password",
]

_log = logging.getLogger(__name__)

MAX_FAILED_ATTEMPTS: Final = 5
LOCKOUT: Final = timedelta(minutes=15)
IDLE_TIMEOUT: Final = timedelta(minutes=30)
ABSOLUTE_TIMEOUT: Final = timedelta(hours=12)
MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 256
_GENERATED_PASSWORD_BYTES: Final = 15
_SALT_BYTES: Final = 16
_HASH_BYTES: Final = 32
_SESSION_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_HASH_FORMAT = re.compile(r"^scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9+/=]{1,64})\$([A-Za-z0-9+/=]{1,128})$")


class ConsoleLoginRefused(PolicyRefusal):
    """A console sign-in was refused (one message for every reason)."""


def _console_cost() -> ScryptCost:
    """scrypt cost of console password hashes: 2^15 (32 MiB) in production, the test cost under the test KDF."""
    if scrypt_cost() == INSECURE_TEST_SCRYPT:
        return INSECURE_TEST_SCRYPT
    return ScryptCost(n=2**15, r=PRODUCTION_SCRYPT.r, p=PRODUCTION_SCRYPT.p)


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        maxmem=2 * cost.memory_bytes + (1 << 20),
        dklen=_HASH_BYTES,
    )


def hash_password(password: str) -> str:
    """The stored form of ``password`` (scrypt with a random salt)."""
    cost = _console_cost()
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, cost)
    log_n = cost.n.bit_length() - 1
    return (
        f"scrypt${log_n}${cost.r}${cost.p}$"
        f"{base64.b64encode(salt).decode('ascii')}${base64.b64encode(digest).decode('ascii')}"
    )


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison)."""
    match = _HASH_FORMAT.match(stored)
    if match is None:
        return False
    log_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not 10 <= log_n <= 20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        return False
    salt = base64.b64decode(match.group(4))
    expected = base64.b64decode(match.group(5))
    digest = _scrypt(password, salt, ScryptCost(n=2**log_n, r=r, p=p))
    return hmac.compare_digest(digest, expected)


#: A hash computed for unknown names, so that they cost as much as known ones.
_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


def check_password_policy(password: str) -> None:
    """Refuse a console password that is short, overlong or a well-known one (EN 303 645 5.1-1)."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise UsageError(
            f"console password: use {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
            provision="5.1-1",
        )
    if is_common_password(password):
        raise UsageError("console password: it is on the list of common passwords; choose another", provision="5.1-1")


@dataclass(frozen=True)
class NewConsoleUser:
    """A console login just made. ``password`` is set when trustroot generated it; both secrets are shown once."""

    name: str
    scopes: tuple[str, ...]
    totp_secret: str
    otpauth_uri: str
    password: str | None
    api_token: str | None


def create_console_user(
    service: FleetService,
    name: str,
    scopes: str | None,
    *,
    actor: str,
    password: str | None = None,
    issuer: str = "trustroot",
) -> NewConsoleUser:
    """Give operator ``name`` a console login, adding the operator with ``scopes`` first if it does not exist.

    With ``password=None`` a random password is generated and returned.
    """
    generated = password is None
    chosen = password if password is not None else secrets.token_urlsafe(_GENERATED_PASSWORD_BYTES)
    check_password_policy(chosen)
    api_token: str | None = None
    with service.store.transaction() as session:
        operator = session.scalar(select(Operator).where(Operator.name == name))
    if operator is None:
        if scopes is None:
            raise UsageError(f"operator {name!r} does not exist: give --scope to add it")
        api_token = add_operator(service, name, scopes, actor=actor).token
    elif scopes is not None and parse_scopes(scopes) != frozenset(operator.scopes.split(",")):
        raise UsageError(
            f"operator {name!r} exists with scopes {operator.scopes}; omit --scope (scopes are the operator's)"
        )
    secret = totp.new_secret()
    now = service.clock()
    with service.store.transaction() as session:
        operator = session.scalar(select(Operator).where(Operator.name == name))
        if operator is None or operator.revoked_at is not None:
            raise StateError(f"operator {name!r} is revoked; a console login needs an active operator")
        if session.get(ConsoleLogin, operator.id) is not None:
            raise StateError(f"operator {name!r} has a console login already")
        session.add(
            ConsoleLogin(
                operator_id=operator.id,
                password_hash=hash_password(chosen),
                totp_secret=secret,
                totp_last_step=None,
                failed_attempts=0,
                locked_until=None,
                created_at=now,
            )
        )
        record(
            service, "operator.console_enrolled", name, {"name": name, "second_factor": "totp"}, actor, session=session
        )
        found_scopes = tuple(sorted(operator.scopes.split(",")))
    return NewConsoleUser(
        name=name,
        scopes=found_scopes,
        totp_secret=secret,
        otpauth_uri=totp.otpauth_uri(secret, name, issuer),
        password=chosen if generated else None,
        api_token=api_token,
    )


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie value (the browser's only copy) and the CSRF token of its forms."""

    token: str
    csrf_token: str
    name: str
    scopes: frozenset[str]
    expires_at: datetime


@dataclass(frozen=True)
class ConsoleSessionView:
    """The operator behind a valid session cookie."""

    name: str
    scopes: frozenset[str]
    csrf_token: str

    @property
    def actor(self) -> str:
        return f"operator:{self.name}"


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def sign_in(service: FleetService, name: str, password: str, code: str, *, client: str = "?") -> SignedIn:
    """Check name, password and TOTP code; open a session. :class:`ConsoleLoginRefused` for any failure."""
    refused = ConsoleLoginRefused(
        "console sign-in refused: wrong name, password or code, or the login is locked", provision="5.1-5"
    )
    if len(name) > 64 or len(password) > MAX_PASSWORD_CHARS or len(code) > 16:
        raise refused
    now = service.clock()
    with service.store.transaction() as session:
        operator = session.scalar(select(Operator).where(Operator.name == name))
        login = session.get(ConsoleLogin, operator.id) if operator is not None else None
        if operator is None or login is None or operator.revoked_at is not None:
            verify_password(password, _dummy_hash())
            _log.warning("console sign-in refused for unknown or revoked name from %s", client)
            raise refused
        if login.locked_until is not None and login.locked_until > now:
            _log.warning("console sign-in refused for %s from %s: locked until %s", name, client, login.locked_until)
            raise refused
        step = totp.verify(login.totp_secret, code.strip(), now, login.totp_last_step)
        password_ok = verify_password(password, login.password_hash)
        if not password_ok or step is None:
            login.failed_attempts += 1
            if login.failed_attempts >= MAX_FAILED_ATTEMPTS:
                login.locked_until = now + LOCKOUT
                login.failed_attempts = 0
                _log.warning("console login %s locked until %s after repeated failures", name, login.locked_until)
            _log.warning("console sign-in refused for %s from %s", name, client)
            failed = True
        else:
            failed = False
            login.failed_attempts = 0
            login.locked_until = None
            login.totp_last_step = step
            token = secrets.token_urlsafe(32)
            csrf = secrets.token_urlsafe(32)
            session.add(
                ConsoleSession(
                    id=_session_id(token),
                    operator_id=operator.id,
                    csrf_token=csrf,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + ABSOLUTE_TIMEOUT,
                )
            )
            scopes = frozenset(operator.scopes.split(","))
    if failed:
        raise refused
    _log.info("console sign-in of %s from %s", name, client)
    return SignedIn(token=token, csrf_token=csrf, name=name, scopes=scopes, expires_at=now + ABSOLUTE_TIMEOUT)


def session_for(service: FleetService, token: str) -> ConsoleSessionView | None:
    """The session of cookie ``token`` if it is valid now (its idle time is refreshed), else ``None``."""
    if not _SESSION_TOKEN.match(token):
        return None
    now = service.clock()
    with service.store.transaction() as session:
        row = session.get(ConsoleSession, _session_id(token))
        if row is None:
            return None
        operator = session.get(Operator, row.operator_id)
        if operator is None or operator.revoked_at is not None or now >= row.expires_at:
            session.delete(row)
            return None
        if now - row.last_seen_at >= IDLE_TIMEOUT:
            session.delete(row)
            return None
        if now - row.last_seen_at >= timedelta(seconds=30):
            row.last_seen_at = now
        return ConsoleSessionView(
            name=operator.name, scopes=frozenset(operator.scopes.split(",")), csrf_token=row.csrf_token
        )


def sign_out(service: FleetService, token: str) -> None:
    """End the session of cookie ``token`` (nothing happens for an unknown one)."""
    if not _SESSION_TOKEN.match(token):
        return
    with service.store.transaction() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.id == _session_id(token)))
