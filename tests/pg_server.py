"""The tests' PostgreSQL: a real server from Debian's ``postgresql`` package, started by pytest-postgresql
on 127.0.0.1 in a temporary directory for one test session, and a fresh database per test.

pytest-postgresql drives ``pg_ctl`` (initdb, start, status, stop) and makes and drops the databases
(:class:`DatabaseJanitor`). What is ours is where it runs:

- PostgreSQL refuses to run as root (``initdb``/``postgres``: "cannot be run as root"), and CI and this
  machine run as root. Then ``pg_ctl`` is called through a two-line wrapper that runs the real one as the
  ``postgres`` system user (``runuser``), in a temporary directory that user owns (data, socket, log). The
  plugin's own process fixture cannot be used as root: it puts the data directory under pytest's temporary
  directory, which is private to root (mode 0700), so the ``postgres`` user could not enter it.
- A watchdog (a shell loop, no Python) stops the server and removes the directory when the pytest process
  is gone, however it ended: a normal end, a failure, Ctrl-C, SIGTERM or SIGKILL. On a normal end the
  fixture stops the server itself and then ends the watchdog.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from digest.mailsink import free_port

SERVER_USER = "postgres"  # the system user Debian's package creates; it runs the server when we are root
# A throw-away server: durability off (a crash loses a test database, nothing else), room for the
# connections that the tests' engines and sender threads hold at once.
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
WRAPPER = """#!/bin/sh
# pg_ctl for the tests: PostgreSQL refuses to run as root, so run the real pg_ctl as {user}.
exec runuser -u {user} -- {pg_ctl} "$@"
"""
# Stops the server and removes its directory once the pytest process ($1) is gone, however it ended.
WATCHDOG = 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" stop -D "$3" -m immediate; rm -rf "$4"'


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries here (``make test`` installs Debian's ``postgresql`` package)."""


def find_pg_ctl() -> str:
    """Debian's newest ``/usr/lib/postgresql/<version>/bin/pg_ctl`` (not on PATH there), else PATH's."""

    def version(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/", path)
        return int(found.group(1)) if found else 0

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    found = debian[-1] if debian else shutil.which("pg_ctl")
    if not found:
        raise PostgresMissing("no pg_ctl: install PostgreSQL (`make test` does: apt-get install postgresql)")
    return found


@dataclass
class PostgresServer:
    """A running server: ``database()`` makes a fresh, empty database and drops it afterwards."""

    executor: PostgreSQLExecutor
    user: str = "postgres"  # the database superuser made by initdb (trusted on 127.0.0.1)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def host(self) -> str:
        return self.executor.host

    @property
    def port(self) -> int:
        return int(self.executor.port)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def _janitor(self, dbname: str, **kwargs: object) -> DatabaseJanitor:
        return DatabaseJanitor(user=self.user, host=self.host, port=self.port, dbname=dbname,
                               maintenance_dbname="postgres", **kwargs)  # type: ignore[arg-type]

    @contextmanager
    def database(self) -> Iterator[str]:
        """The URL of a new database copied from the empty template; dropped on exit (its connections
        are ended first, so an engine a test forgot to dispose cannot keep it)."""
        name = f"digest_test_{next(self._numbers)}"
        with self._janitor(name, template_dbname=self.executor.template_dbname):
            yield self.url(name)


def _server_user() -> pwd.struct_passwd | None:
    """The system user the server runs as: ``postgres`` when we are root; ``None``: as we are."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresMissing(f"as root, the server runs as the {SERVER_USER!r} system user, which is missing "
                              f"(Debian's postgresql package makes it)") from None


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server on 127.0.0.1 on a free port; stop it and remove every file on exit.

    Files: ``<root>/pg_ctl`` (the wrapper, as root) and ``<root>/server/`` (data, socket and log), which the
    server's user owns; ``<root>`` stays ours, so that user cannot change what root runs."""
    pg_ctl = find_pg_ctl()
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="digest-test-pg-"))
    root.chmod(0o755)
    home = root / "server"
    home.mkdir(mode=0o700)
    executable = pg_ctl
    if user is not None:
        os.chown(home, user.pw_uid, user.pw_gid)
        wrapper = root / "pg_ctl"
        wrapper.write_text(WRAPPER.format(user=SERVER_USER, pg_ctl=pg_ctl))
        wrapper.chmod(0o755)
        executable = str(wrapper)
    datadir = home / "data"
    watchdog = subprocess.Popen(
        ["sh", "-c", WATCHDOG, "digest-test-pg-watchdog", str(os.getpid()), executable, str(datadir), str(root)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    executor = PostgreSQLExecutor(
        executable=executable, host="127.0.0.1", port=free_port(), datadir=str(datadir),
        unixsocketdir=str(home), logfile=str(home / "postgresql.log"), startparams="-w",
        dbname="digest_test", user="postgres", postgres_options=SERVER_OPTIONS,
    )
    try:
        try:
            executor.start()
        except Exception as e:
            log = home / "postgresql.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise RuntimeError(f"the test PostgreSQL server did not start ({e}); its log ends:\n{tail}") from e
        server = PostgresServer(executor)
        template = server._janitor(executor.template_dbname, as_template=True)
        template.init()
        yield server
    finally:
        try:
            if executor.running():
                executor.stop()
        finally:
            watchdog.kill()
            watchdog.wait()
            shutil.rmtree(root, ignore_errors=True)
