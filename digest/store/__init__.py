"""The SQL store: tables, engine/session set-up, repository functions and Alembic migrations."""

from digest.store.db import create_db_engine, session_factory, upgrade
from digest.store.tables import Base

__all__ = ["Base", "create_db_engine", "session_factory", "upgrade"]
