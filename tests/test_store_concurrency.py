"""Two commands at once on a fresh database: real processes released at the same instant. The migration
takes a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock) and storing the same papers twice at
the same moment is not an error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from digest import pipeline
from digest.config import Settings
from digest.sources.huggingface import load_listing_file
from digest.store import session_factory
from digest.store.papers import upsert_papers
from digest.store.tables import PaperRow, UpvoteRow

from .builders import API_2025_06_05

ROUNDS = 3

COMMAND = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from digest.cli import app  # every import done before the start line
    ready, go = Path(sys.argv[1] + ".ready"), Path(sys.argv[1])
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    app(sys.argv[2:])
""")


def fresh_database(db_url: str, tmp_path: Path, i: int) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / f'round{i}.db'}"
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return db_url


def at_once(url: str, script: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run each command in its own process; all are released at the same instant once all are ready."""
    env = {**os.environ, "DIGEST_DATABASE_URL": url}
    go = [script.with_name(f"go-{time.monotonic_ns()}-{i}") for i in range(len(commands))]
    procs = [subprocess.Popen([sys.executable, str(script), str(g), *cmd], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for g, cmd in zip(go, commands)]
    deadline = time.monotonic() + 120
    while not all(g.with_name(g.name + ".ready").exists() for g in go):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a command did not start"
        time.sleep(0.01)
    for g in go:
        g.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


@pytest.mark.slow
def test_two_commands_at_once_on_a_fresh_database(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "command.py"
    script.write_text(COMMAND)
    fetch = ["fetch", "--from-file", str(API_2025_06_05)]
    for i in range(ROUNDS):
        url = fresh_database(db_url, tmp_path, i)
        results = at_once(url, script, fetch, fetch)
        for r in results:
            assert r.returncode == 0, f"round {i}: {r.stderr[-2000:]}"
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(PaperRow)).scalar() == 30
        engine.dispose()


def test_a_paper_inserted_by_another_writer_meanwhile_is_updated_not_an_error(settings: Settings) -> None:
    """Deterministic form of the race: another connection stores (and commits) one of the papers between
    this upsert's look-up and its insert."""
    from sqlalchemy import event

    engine = pipeline.open_store(settings)
    listing = load_listing_file(API_2025_06_05)
    first, *rest = listing.papers
    other = create_engine(settings.database_url)
    fired: list[str] = []

    def meanwhile(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO PAPERS") and not fired:
            fired.append(statement)
            with session_factory(other).begin() as s:
                upsert_papers(s, [first])

    event.listen(engine, "before_cursor_execute", meanwhile)
    try:
        with session_factory(engine).begin() as session:
            report = upsert_papers(session, listing.papers)
    finally:
        event.remove(engine, "before_cursor_execute", meanwhile)
        other.dispose()
    assert fired, "the other writer ran"
    assert report.new == len(rest) and first.arxiv_id not in report.new_ids
    assert report.updated + report.unchanged == 1
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(PaperRow)) == 30
        assert s.scalar(select(func.count()).select_from(UpvoteRow)) == 30
