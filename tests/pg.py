"""PostgreSQL for tests: one server per session (pgserver's binaries, or an existing one), a fresh database per test.

The fixtures (`pg_databases`, `pg_server`, `pg_url`) reach every test through `pytest_plugins` in
tests/conftest.py. The store engine of tests/store_engines.py takes migrated databases from
`pg_databases` (`reserve`, `provide`) and gives them back emptied, so the store tests do not pay for a new database each.

`COMFY_IMAGINE_TEST_PG_URL` names an existing server and a superuser on it (tests create databases
and roles, and log in with passwords over the URL's host, so that server must check passwords), e.g.
`postgresql://postgres:secret@127.0.0.1:5432/postgres`: every test gets its own database on it,
dropped afterwards. Without it, the first test that asks starts PostgreSQL from the `pgserver` wheel
(the test extra) in a temporary folder, once per session, and removes it at the end; nothing is
skipped for lack of a server.

The local server listens on a unix socket and on 127.0.0.1 (a free port), because drills need TCP
(`pgserver.get_server` itself starts PostgreSQL with no TCP listener, so this module runs pgserver's
`initdb` and `pg_ctl` itself). Over TCP only the superuser `postgres` is trusted; other roles log in
with a password (SCRAM), so a test can watch a wrong password being refused. Durability is off
(fsync, synchronous_commit) unless a benchmark asks for it: a test server holds nothing worth keeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import asyncpg
import pytest

from bot.store.postgres import PostgresStore

ENV_URL = "COMFY_IMAGINE_TEST_PG_URL"
# The OS user that runs PostgreSQL when the tests run as root (postgres refuses root); pgserver's own.
SYSTEM_USER = "pgserver"
PG_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""
TEST_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
log_min_messages = warning
"""
# A test server holds nothing worth keeping; benchmarks keep PostgreSQL's defaults (durable=True).
# Every object of the public schema: a recycled database must have exactly the template's.
SCHEMA_OBJECTS = """
SELECT 'relation ' || relname || ' ' || relkind::text FROM pg_class
    WHERE relnamespace = 'public'::regnamespace
UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger
    WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
ORDER BY 1
"""
NOT_DURABLE = """
fsync = off
synchronous_commit = off
full_page_writes = off
"""


class PostgresServer(Protocol):
    """What the fixtures need from a server, local or given by the environment."""

    can_restart: bool

    def url(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        """A URL for `database` (as the superuser, unless `user`/`password` say otherwise)."""
        ...

    def tcp_url(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        """Like `url`, always over TCP (drills and login tests)."""
        ...

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended)."""
        ...

    def start(self) -> None:
        """Start the server again on the same port and socket."""
        ...


def _with_database(url: str, database: str, user: str | None, password: str | None) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rpartition("@")[2]
        auth = urllib.parse.quote(user, safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        netloc = f"{auth}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path="/" + database))


class ExternalPostgres:
    """A server named by `COMFY_IMAGINE_TEST_PG_URL`; the tests cannot stop it."""

    can_restart = False

    def __init__(self, url: str) -> None:
        """Use the server at `url` (its database part is replaced per test)."""
        self._url = url

    def url(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        """A URL for `database` on the given server."""
        return _with_database(self._url, database, user, password)

    tcp_url = url

    def stop(self) -> None:
        """Refused: the server is not ours."""
        raise RuntimeError(f"{ENV_URL} names a server the tests do not control")

    start = stop


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """A throwaway PostgreSQL (pgserver's binaries) in a temporary folder, on a socket and loopback TCP."""

    can_restart = True

    def __init__(self, folder: Path, *, durable: bool = False) -> None:
        """Create the cluster in `folder` (initdb) and start it; `durable` keeps fsync and synchronous commits."""
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH

        self._bin = POSTGRES_BIN_PATH
        self.folder = folder
        self.data = folder / "data"
        self.socket_dir = folder / "run"
        self.log = folder / "postgres.log"
        self.port = _free_port()
        self._user = self._system_user()
        self.data.mkdir()
        self.socket_dir.mkdir()
        if self._user is not None:
            for path in (self.data, self.socket_dir, folder):
                shutil.chown(path, self._user, self._user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8")
        (self.data / "pg_hba.conf").write_text(PG_HBA, encoding="utf-8")
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(TEST_SETTINGS.format(port=self.port, socket_dir=self.socket_dir))
            if not durable:
                conf.write(NOT_DURABLE)
        self.start()

    def _system_user(self) -> str | None:
        """As root, the OS user to run postgres as (created like pgserver does), with the paths it needs."""
        if os.geteuid() != 0:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )
        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.folder)
        self.folder.chmod(0o755)
        ensure_prefix_permissions(self._bin)
        ensure_folder_permissions(self._bin, 0o055)
        ensure_folder_permissions(self._bin.parent / "lib", 0o044)
        return SYSTEM_USER

    def _run(self, program: str, *args: str) -> None:
        """Run one of PostgreSQL's programs (as the system user when we are root); raise with its output."""
        done = subprocess.run(
            [str(self._bin / program), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            user=self._user,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            log = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log}")

    def url(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        """A unix-socket URL for `database` (the superuser's unless `user` is given)."""
        auth = urllib.parse.quote(user or "postgres", safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        host = urllib.parse.quote(str(self.socket_dir), safe="")
        return f"postgresql://{auth}@/{database}?host={host}&port={self.port}"

    def tcp_url(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        """A 127.0.0.1 URL for `database`; roles other than postgres must give their password."""
        auth = urllib.parse.quote(user or "postgres", safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start (or start again) and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, the next connection attempt is refused."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def close(self) -> None:
        """Stop the server (if it runs) and delete its folder."""
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Databases:
    """Makes uniquely named databases on a server, empty or migrated, and drops (or recycles) them again.

    A migrated database is a copy of a template migrated once per session (`CREATE DATABASE ...
    TEMPLATE`), or one a test gave back, emptied: deleting its rows and restarting its sequences takes
    about 10 ms where a new copy takes about 60.
    """

    def __init__(self, server: PostgresServer) -> None:
        """Hand out databases on `server`."""
        self.server = server
        self._numbers = itertools.count(1)
        self._template: str | None = None
        self._spare: list[str] = []  # migrated, emptied, ready to hand out again
        self._schema: list[str] = []  # the template's SCHEMA_OBJECTS
        self._made: set[str] = set()  # reserved databases that exist

    def _new_name(self) -> str:
        return f"test_{os.getpid()}_{next(self._numbers)}"

    async def _admin(self, sql: str) -> None:
        admin = await asyncpg.connect(self.server.url("postgres"))
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    async def create(self) -> tuple[str, str]:
        """Create an empty database; return (its name, a superuser URL for it)."""
        name = self._new_name()
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name, self.server.url(name)

    def reserve(self) -> str:
        """The name of a migrated database without rows, for one test: a spare one, or a new name that
        `provide` creates on first use (so a test can name its database before it awaits anything)."""
        return self._spare.pop() if self._spare else self._new_name()

    async def provide(self, name: str) -> str:
        """Make sure the reserved database `name` exists (a copy of the migrated template); return its URL.

        Not for two calls at once with one name (a test opens its stores one after the other).
        """
        if name not in self._made:
            if self._template is None:
                template, url = await self.create()
                await (await PostgresStore.open(url, min_size=1, max_size=1)).close()
                conn = await asyncpg.connect(url)
                try:
                    self._schema = [r[0] for r in await conn.fetch(SCHEMA_OBJECTS)]
                finally:
                    await conn.close()
                self._template = template
            await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
            self._made.add(name)
        return self.server.url(name)

    async def give_back(self, name: str) -> None:
        """Done with a database from `reserve`: emptied for the next test, or dropped if it cannot be."""
        if name not in self._made:  # reserved, never used: the name is simply not taken
            return
        if await self.empty(name):
            self._spare.append(name)
        else:
            await self.drop(name)

    async def empty(self, name: str) -> bool:
        """Delete every row of a database from `provide` and restart its sequences, as if it were new.

        False (nothing done) if the database is gone or its schema is no longer the template's (a
        test added a table, a trigger, a migration...).
        """
        try:
            conn = await asyncpg.connect(self.server.url(name))
        except (OSError, asyncpg.PostgresError):
            return False
        try:
            if [r[0] for r in await conn.fetch(SCHEMA_OBJECTS)] != self._schema:
                return False
            tables = await conn.fetch(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'schema_migrations'"
            )
            sequences = await conn.fetch(
                "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'"
            )
            # DELETE, not TRUNCATE: on a handful of rows it is several times faster. Triggers (and
            # with them foreign keys) are off for this session: everything goes anyway.
            await conn.execute(
                "SET session_replication_role = replica;"
                + "".join(f"DELETE FROM {row[0]};" for row in tables)
                + "".join(f"ALTER SEQUENCE {row[0]} RESTART;" for row in sequences)
            )
        except asyncpg.PostgresError:
            return False
        finally:
            await conn.close()
        return True

    async def drop(self, name: str) -> None:
        """Drop the database, ending any session still on it (and starting our server if a test left it stopped)."""
        try:
            admin = await asyncpg.connect(self.server.url("postgres"))
        except OSError:
            if not self.server.can_restart:
                raise
            self.server.start()
            admin = await asyncpg.connect(self.server.url("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        self._made.discard(name)

    async def drop_all(self) -> None:
        """Drop the spare databases and the template (a server of our own is deleted whole instead)."""
        names = [*self._spare, *([self._template] if self._template else [])]
        self._made.difference_update(names)
        self._spare, self._template = [], None
        for name in names:
            await self.drop(name)


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """The server of `COMFY_IMAGINE_TEST_PG_URL`, or a local one started here and removed afterwards."""
    if url := os.environ.get(ENV_URL):
        yield ExternalPostgres(url)
        return
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="comfy-imagine-pg-")), durable=durable)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[Databases]:
    """The session's PostgreSQL server, wrapped to hand out databases (started on first use)."""
    with postgres_server() as server:
        databases = Databases(server)
        yield databases
        if not server.can_restart:  # an existing server keeps nothing of ours
            asyncio.run(databases.drop_all())


@pytest.fixture
def pg_server(pg_databases: Databases) -> PostgresServer:
    """The session's PostgreSQL server (to stop and start it, or build URLs)."""
    return pg_databases.server


@pytest.fixture
async def pg_url(pg_databases: Databases) -> AsyncIterator[str]:
    """A superuser URL of a new, empty database of this test's own; dropped after the test."""
    name, url = await pg_databases.create()
    try:
        yield url
    finally:
        await pg_databases.drop(name)
