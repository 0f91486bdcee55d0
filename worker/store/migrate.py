"""Apply the Alembic revisions from code: ``netgrow migrate``, the compose ``migrate`` step and tests.

The Alembic config is built here rather than read from ``alembic.ini``, with
``script_location`` pointing at the installed ``migrations`` package, so a
wheel install migrates without the repository checkout. The URL travels in
``config.attributes`` (not the ini options, whose ``%`` interpolation would
mangle passwords).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

import migrations

from .session import make_engine, normalize_url


def alembic_config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["database_url"] = normalize_url(url).render_as_string(hide_password=False)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` (creating every table on an empty database)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str = "base") -> None:
    """Revert the database at ``url`` to ``revision`` (``base``: drop every table the revisions created)."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "the migrations package has no revisions"
    return head


def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at; None for a database never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def is_up_to_date(url: str | URL) -> bool:
    """True when the database is at the head revision (the API refuses to serve a stale schema)."""
    return current_revision(url) == head_revision()
