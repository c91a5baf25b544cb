"""Alembic environment. Runs on the connection ``zeropay.adapters.sql.migrate`` hands it."""

from __future__ import annotations

from alembic import context

from zeropay.adapters.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `zeropay migrate`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
