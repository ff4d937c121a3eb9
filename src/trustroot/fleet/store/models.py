"""Tables of the fleet store (SQLAlchemy 2 declarative). Migrations in ``store/migrations``."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base"]


class Base(DeclarativeBase):
    """Base of every fleet table."""
