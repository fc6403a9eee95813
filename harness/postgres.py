"""A real PostgreSQL server (Debian's packages) for tests: initialised in a temporary directory,
listening on loopback only, run as the `postgres` user (it refuses to run as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from harness.controlplane import free_port
from harness.procs import HarnessError, Proc, run

PG_BIN = Path(os.environ.get("CAIRN_PG_BIN", "/usr/lib/postgresql/15/bin"))

# Tests trade durability for speed: without fsync an OS crash may lose data, and without
# synchronous_commit a crash of the server forgets its last commits (the scenario that kills it turns
# it back on: Postgres.durable).
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
}


@dataclass
class Postgres:
    root: Path | None = None
    settings: dict[str, str] = field(default_factory=lambda: dict(TEST_SETTINGS))
    proc: Proc | None = None

    def __post_init__(self) -> None:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="cairn-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.user = self._run_as()

    @staticmethod
    def _run_as() -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError as e:
            raise HarnessError("running as root needs the `postgres` user: install postgresql-15") from e
        return "postgres"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> Postgres:
        assert self.root is not None
        if not (PG_BIN / "initdb").exists():
            raise HarnessError(f"{PG_BIN}/initdb is missing: install postgresql-15 (run hack/setup.sh)")
        if self.user:
            shutil.chown(self.root, self.user, self.user)
        self.root.chmod(0o700)
        if not self.data.exists():
            run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
                cwd=self.root,
            )
        self._spawn()
        return self

    def _spawn(self) -> None:
        argv = [
            str(PG_BIN / "postgres"),
            "-D",
            str(self.data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.root}",
        ]
        for k, v in self.settings.items():
            argv += ["-c", f"{k}={v}"]
        self.proc = Proc("postgres", argv, self.log, user=self.user, cwd=self.root).start()
        self.proc.wait_ready(self._accepts, 60, "accepting connections")

    def _accepts(self) -> bool:
        with psycopg.connect(self.dsn, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True

    def restart(self, *, crash: bool = True) -> None:
        """Kill (SIGKILL, a crash) or stop postgres and start it again on the same port and data."""
        assert self.proc is not None
        if crash:
            self.proc.kill()
        else:
            self.proc.stop()
        self._spawn()

    @contextmanager
    def durable(self) -> Iterator[None]:
        """Commits that survive a crash of the server while inside: synchronous_commit on (the harness
        runs with it off, for speed, and a killed server then forgets its last commits, which no
        store could survive). For the scenarios that crash the server; it is restarted to apply it."""
        before = dict(self.settings)
        self.settings["synchronous_commit"] = "on"
        self.stop_only(crash=False)
        self.start_again()
        try:
            yield
        finally:
            self.settings = before
            self.stop_only(crash=False)
            self.start_again()

    def stop_only(self, *, crash: bool = True) -> None:
        assert self.proc is not None
        self.proc.kill() if crash else self.proc.stop()

    def start_again(self) -> None:
        self._spawn()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=20)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------------------
    def create_database(self, name: str, template: str | None = None) -> str:
        return create_database(self.dsn, name, template)


def create_database(admin_dsn: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE (from a template, which is fast) and return its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for attempt in range(50):
            try:
                stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template:
                    stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
                conn.execute(stmt)
                break
            except psycopg.errors.ObjectInUse:
                # The template is briefly in use by another session; CREATE DATABASE needs it idle.
                time.sleep(0.05 * (attempt + 1))
        else:
            raise HarnessError(f"could not create database {name} from template {template}")
    return swap_dbname(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def swap_dbname(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **info)
