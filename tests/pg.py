"""A real, throwaway PostgreSQL server for the tests (no mocks), started once per test session when first needed.

Fixtures (registered in tests/conftest.py through `pytest_plugins`):

- `postgres_server` (session): a `PostgresServer` running from a temp dir on a free loopback port, with a unix
  socket in the same dir, password auth (`scram-sha-256`) for its superuser. Tests may `restart()` it or
  `terminate_connections(db)` to simulate an outage; it is stopped and its folder removed at the end of the session.
- `pg_dsn` (function): the DSN (with the password in it) of a fresh database of its own for one test, dropped after.
  Pass it to other processes as it is (e.g. in the environment of a portal replica).

The server binaries are Debian's (`/usr/lib/postgresql/<version>/bin`; `.ci/pg-setup` installs them), or those in
$PORTAL_PG_BINDIR, or next to `pg_ctl` on PATH. Without them
the tests that need PostgreSQL are skipped, unless `PORTAL_REQUIRE_POSTGRES=1` (set by `.ci/run`): then they fail.
PostgreSQL refuses to run as root, so as root initdb and postgres run as the `postgres` OS user (which the Debian
package creates) and the temp dir is chowned to it. fsync is off (the data is throwaway; the OS page cache outlives
the server process), but `synchronous_commit` stays on: with it off, a `stop("immediate")` would lose commits that
were already acknowledged, and the outage tests would fail for a reason that is not the portal's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.servers import free_port

REQUIRE_ENV = "PORTAL_REQUIRE_POSTGRES"
BINDIR_ENV = "PORTAL_PG_BINDIR"
SUPERUSER = "portal_test"


def find_bindir() -> Path | None:
    """The server's bin folder: $PORTAL_PG_BINDIR, else the newest Debian one, else the folder of `pg_ctl` on PATH."""
    if BINDIR_ENV in os.environ:
        given = Path(os.environ[BINDIR_ENV])
        return given if (given / "postgres").is_file() else None
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and (Path(on_path).parent / "postgres").is_file() else None


@dataclass
class PostgresServer:
    """One running cluster: `dsn(db)` connects to database `db` as the superuser over TCP with the password."""

    bindir: Path
    root: Path
    port: int
    password: str
    run_as: str | None
    """The OS user running the server (`postgres` when the tests run as root), None for the current user."""

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def is_running(self) -> bool:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        status = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"]
        return subprocess.run([*prefix, *status], capture_output=True, timeout=30, check=False).returncode == 0

    def ensure_running(self) -> None:
        """Start the server if a test stopped it (e.g. in a `finally`)."""
        if not self.is_running():
            self.start()

    def restart(self, mode: str = "immediate") -> None:
        """Stop (by default as a crash would: connections drop, nothing flushed) and start again on the same port."""
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def terminate_connections(self, dbname: str) -> int:
        """Kill every backend connected to `dbname` (as a network cut or failover would); returns how many."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args)

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}\n{log}")


def start_server() -> PostgresServer:
    """initdb into a new temp dir and start the server; raises RuntimeError when that is not possible here."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(
            f"no PostgreSQL server binaries (/usr/lib/postgresql/*/bin, ${BINDIR_ENV} or pg_ctl on PATH); "
            "run `bash .ci/pg-setup`"
        )
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no `postgres` OS user to run the server") from None
        run_as = "postgres"
    # Not under pytest's tmp_path: its root is private to the current user, and the server may run as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    try:
        password = "pw-" + secrets.token_hex(12)
        (root / "pwfile").write_text(password + "\n")
        if run_as:
            for path in (root, root / "pwfile"):
                os.chown(path, account.pw_uid, account.pw_gid)
        server = PostgresServer(bindir, root, free_port(), password, run_as)
        server._run(
            str(bindir / "initdb"),
            "-D",
            str(server.datadir),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(root / "pwfile"),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        for attempt in range(3):  # another process may take the free port between the probe and the bind
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.port = free_port()
        return server
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; skips the test when none can be started (fails under PORTAL_REQUIRE_POSTGRES)."""
    try:
        server = start_server()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"PostgreSQL is required ({REQUIRE_ENV}=1) but could not be started: {exc}")
        pytest.skip(f"no PostgreSQL server for this test: {exc}")
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for this test only; its DSN holds the password (tests check it never leaks)."""
    name = "test_" + secrets.token_hex(6)
    dsn = postgres_server.create_database(name)
    try:
        yield dsn
    finally:
        postgres_server.drop_database(name)
