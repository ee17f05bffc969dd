"""The fixtures every test module may ask for: settings on a fresh database, the SMTP test server, the local
Hugging Face stand-in over HTTP and Prefect's test harness. Builders live in builders.py."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

# Prefect offline and quiet in tests (set before anything imports prefect).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from digest.config import Settings

from .builders import HfScript, bare_settings
from .pg_server import PostgresServer, running_server
from .smtp_server import SmtpTestServer


# -- the database: SQLite, and PostgreSQL for the modules that opt in ----------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """In an ``all_backends`` module, a test that reaches the database runs once per backend."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_backends"):
        metafunc.parametrize("backend", [pytest.param("sqlite"),
                                         pytest.param("postgresql", marks=pytest.mark.postgresql)],
                             indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on: ``sqlite`` unless its module is ``all_backends``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server on 127.0.0.1, started on first use (see pg_server.py)."""
    with running_server() as server:
        yield server


def _emptied(url: str) -> str:
    """An external PostgreSQL database (DIGEST_TEST_DATABASE_URL) with its ``public`` schema emptied."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database per test: a new SQLite file; on PostgreSQL a new database on the session's server,
    dropped afterwards. With DIGEST_TEST_DATABASE_URL set (a PostgreSQL database made for the purpose on a
    server of your own), the PostgreSQL runs use that database instead, emptied before each test, and no
    server is started."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.db'}"
        return
    external = os.environ.get("DIGEST_TEST_DATABASE_URL")
    if external:
        yield _emptied(external)
        return
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    with server.database() as url:
        yield url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return bare_settings(
        database_url=db_url,
        outbox_dir=str(tmp_path / "outbox"),
        http_backoff_initial=0.05,
        http_backoff_max=0.2,
        http_total_timeout=20,
        embed_interests_on_write=False,  # no model load where interests are written; tests that need it say so
    )


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    """A real SMTP server on 127.0.0.1 that records what it receives (see smtp_server.py to script faults)."""
    server = SmtpTestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hf_server() -> Iterator[HfScript]:
    """A local HTTP server standing in for huggingface.co at ``.base``, answering from its script."""
    script = HfScript(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            query = parse_qs(url.query)
            script.log.append((time.monotonic(), url.path, query, self.headers.get("User-Agent", "")))
            status, headers, body = script.answer(url.path, query)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    script.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    """Prefect's temporary local server for the flows of one test module (slow to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
