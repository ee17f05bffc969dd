"""Engine and sessions. SQLite gets WAL, foreign keys and a busy timeout on every connection."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# Alembic keeps its running context in module globals: one migration at a time per process.
_MIGRATE_LOCK = threading.Lock()
# Across processes: PostgreSQL's advisory lock on this key ("digest-m") for the migration's transaction.
_PG_MIGRATION_LOCK_KEY = int.from_bytes(b"digest-m", "big")


SQLITE_BUSY_SECONDS = 30  # how long a statement waits for another process's lock (a migration, a write)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")  # first: switching to WAL needs the lock too
    # SQLite may answer "database is locked" to the switch to WAL at once, without its busy handler, while
    # another process opens the same fresh file: wait for it as the busy timeout would.
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_db_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def _lock_for_migration(conn: Connection) -> None:
    """Take the database-wide lock that makes concurrent migrations (two commands started at once on a
    fresh database) run one after the other; the second then finds the schema current. Held until the
    transaction ends."""
    if conn.dialect.name == "sqlite":
        # pysqlite opens transactions lazily (before DML only): start a write transaction now, so the
        # version check, the DDL and the version stamp are one atomic step; a second process waits on
        # busy_timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the database to ``revision`` (Alembic), under a database-wide lock.

    SQLite changes a table by rebuilding it (batch mode), and with foreign keys enforced dropping the old
    table would cascade-delete every row that refers to it. So, as SQLite's own procedure says, foreign
    keys are off for the migration (the pragma only works outside a transaction), every foreign key is
    checked before the commit, and enforcement is back on before the connection returns to the pool."""
    cfg = alembic_config(engine)
    with _MIGRATE_LOCK, engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                _lock_for_migration(conn)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"migration left {len(broken)} broken foreign keys (first: {broken[0]})")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()

