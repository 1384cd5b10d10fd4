"""The schema: migrations run up and down on both databases and match the models."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect

from mailer import db as db_module
from newsletter.migrate import alembic_config, downgrade, upgrade
from newsletter.schema import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, settings_env, pg_database: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{settings_env / 'migrate.db'}"
    downgrade(pg_database)  # the session database is migrated; start this test from empty
    return pg_database


def test_migrations_up_down_up_match_models(empty_url: str, pg_database: str) -> None:
    upgrade(empty_url)
    tables = set(inspect(db_module.get_engine(empty_url)).get_table_names())
    assert set(metadata.tables) <= tables
    command.check(alembic_config(empty_url))  # raises if the models and migrations disagree
    downgrade(empty_url)
    assert set(inspect(db_module.get_engine(empty_url)).get_table_names()) <= {"alembic_version"}
    upgrade(empty_url)
    db_module.dispose_engines()
    if empty_url != pg_database:
        return
    # leave the session database migrated for the other tests
    assert "deliveries" in inspect(db_module.get_engine(pg_database)).get_table_names()
