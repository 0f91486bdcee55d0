"""Alembic revisions for the netgrow schema (a package, so they ship in the wheel)."""
