"""Alembic environment: runs revisions against the URL the caller chose.

``worker.store.migrate`` passes the URL (or an open connection) through
``config.attributes``; the alembic CLI falls back to ``NETGROW_DATABASE_URL``.
Revisions never come from ``Base.metadata.create_all``: the models are the
autogenerate target only.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from worker.store.models import Base
from worker.store.session import make_engine
from worker.store.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
