"""Tables of the web console's logins and sessions.

::

    console_logins     one row per operator allowed into the console: a memory-hard password hash
                       (scrypt), the TOTP secret, the last TOTP step accepted (no replay), and the
                       brute-force counters (failed attempts, locked until)
    console_sessions   one row per signed-in browser: the SHA-256 of the session cookie (never the
                       cookie), the CSRF token of its forms, idle and absolute expiry

The schema is made by Alembic revision ``0007``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from trustroot.fleet.store.models import Base

__all__ = ["ConsoleLogin", "ConsoleSession"]


class ConsoleLogin(Base):
    """An operator's console credentials (password + TOTP)."""

    __tablename__ = "console_logins"

    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True)
    #: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``.
    password_hash: Mapped[str] = mapped_column(String(256))
    #: Base32 TOTP secret (RFC 6238).
    totp_secret: Mapped[str] = mapped_column(String(64))
    #: Last TOTP step accepted: a code for this step or an earlier one is refused.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]


class ConsoleSession(Base):
    """A signed-in console session."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index(None, "operator_id"),)

    #: SHA-256 (hex) of the session cookie's value.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
