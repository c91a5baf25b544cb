"""The migrations and the table definitions describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from zeropay.adapters.sql.database import make_engine
from zeropay.adapters.sql.tables import metadata


def test_the_migrated_database_matches_the_table_definitions(database_url):
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []
