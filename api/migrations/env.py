"""Alembic environment: run by api.db.upgrade with the engine in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from api.models import Base

# Any constant: PostgreSQL serialises concurrent upgrades (several server processes starting at once).
_PG_MIGRATION_LOCK = 0x_ADF_5E7


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        raise RuntimeError("run migrations through api.db.upgrade(url), which passes the engine")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run api.db.upgrade(url)")
run_migrations_online()
