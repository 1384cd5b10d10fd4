"""Alembic environment: the URL comes from Settings (or the caller's config), the metadata from newsletter.schema."""

from __future__ import annotations

from alembic import context

from mailer.db import get_engine
from newsletter.schema import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")


def run_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        with get_engine(url).connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection: object) -> None:
    # render_as_batch lets ALTERs work on SQLite, which rebuilds tables instead.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
