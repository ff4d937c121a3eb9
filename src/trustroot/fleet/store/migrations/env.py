"""Alembic environment of the fleet store.

Run through :mod:`trustroot.fleet.store.migrate`, which builds the Alembic ``Config`` in code and
passes an open connection (``config.attributes["connection"]``) whose transaction it owns and has
already locked; no ``alembic.ini`` is needed. Given only ``sqlalchemy.url`` (or ``-x url=...``),
this script opens its own connection; with ``--sql`` it renders the SQL offline for that URL.

Revisions are rendered in batch mode (``render_as_batch``) so that the same revision alters tables
on SQLite (copy and move) and on PostgreSQL (plain ``ALTER TABLE``).
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from trustroot.fleet.store.db import make_engine
from trustroot.fleet.store.models import UTCDateTime, load_models

config = context.config
target_metadata = load_models()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=sqlite:///PATH or set sqlalchemy.url")
    return url


def _render_item(kind: str, obj: Any, _autogen: AutogenContext) -> str | Literal[False]:
    """Revisions spell column types in plain SQLAlchemy, never with trustroot's classes."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():  # a no-op inside the caller's transaction
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as own:
            _configure(own)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
