"""A real, throwaway PostgreSQL server for the test suite.

:func:`start_server` runs ``initdb`` and ``pg_ctl`` from the Debian packages (``/usr/lib/postgresql/
<version>/bin``, the newest installed) in a temporary directory of its own, listening on 127.0.0.1
only, on a free port, with its unix socket inside that directory and durability switched off for
speed (``fsync``, ``synchronous_commit``, ``full_page_writes``: tests only, never a real server).
``initdb`` refuses to run as root, so under root the directory is handed to the ``postgres`` user
and the server programs run through ``runuser -u postgres --``.

The server trusts every local connection (``--auth=trust``): it listens on loopback only and lives
for one test session. :meth:`PostgresServer.stop` stops it with ``pg_ctl stop -m fast`` and removes
the directory; it is safe to call twice and is also registered with :mod:`atexit`.

A missing installation raises :class:`PostgresUnavailable`, whose message names
``scripts/setup.sh``; the fixtures turn it into a failure, never a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = [
    "DEFAULT_DATABASE",
    "PostgresServer",
    "PostgresUnavailable",
    "find_bin_dir",
    "start_server",
]

#: The database every server gets at start (``postgres_url`` points at it).
DEFAULT_DATABASE = "trustroot"
_SUPERUSER = "postgres"
_SEARCH = Path("/usr/lib/postgresql")
_SETUP_HINT = "run scripts/setup.sh (it installs the Debian package 'postgresql' listed in scripts/debian-packages.txt)"
_START_TIMEOUT_S = 30
_PORT_ATTEMPTS = 5
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # tests only: a crash loses the throwaway cluster, nothing else
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "dynamic_shared_memory_type": "posix",
    "log_min_messages": "warning",
    "timezone": "UTC",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed, or the throwaway server could not be started."""


def find_bin_dir(search: Path = _SEARCH) -> Path:
    """The ``bin`` directory of the newest installed PostgreSQL server (it must hold ``initdb``)."""
    found: list[tuple[int, Path]] = []
    if search.is_dir():
        for child in search.iterdir():
            if child.name.isdigit() and (child / "bin" / "initdb").is_file():
                found.append((int(child.name), child / "bin"))
    if not found:
        raise PostgresUnavailable(f"PostgreSQL server programs not found under {search}: {_SETUP_HINT}")
    return max(found)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One running throwaway server. ``url(db)`` is the SQLAlchemy URL of database ``db``."""

    bin_dir: Path
    base_dir: Path
    port: int
    _runner: list[str]
    _stopped: bool = False
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _doomed: list[str] = field(default_factory=list)
    _dropper: threading.Thread | None = None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        return f"postgresql+psycopg://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={_SUPERUSER} dbname={database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.conninfo(), autocommit=True)

    def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """Create a database (a fresh name unless given) as a copy of ``template``; return its name."""
        if name is None:
            with self._lock:
                self._counter += 1
                name = f"t{os.getpid()}_{self._counter}"
        with self._admin() as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever still uses it."""
        with self._admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def drop_database_later(self, name: str) -> None:
        """Drop ``name`` in the background: a drop waits for a checkpoint, a test need not.

        Databases still queued when the server stops go with its directory.
        """
        with self._lock:
            self._doomed.append(name)
            if self._dropper is None or not self._dropper.is_alive():
                self._dropper = threading.Thread(target=self._drop_queued, name="postgres-dropper", daemon=True)
                self._dropper.start()

    def _drop_queued(self) -> None:
        while not self._stopped:
            with self._lock:
                if not self._doomed:
                    self._dropper = None
                    return
                name = self._doomed.pop(0)
            with contextlib.suppress(psycopg.Error):  # the server stopping meanwhile: nothing to clean
                self.drop_database(name)

    def mark_template(self, name: str) -> None:
        """Let ``name`` serve as a template (no one may stay connected to it)."""
        with self._admin() as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))

    def log_tail(self, lines: int = 30) -> str:
        log = self.base_dir / "server.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``, then ``immediate``) and remove its directory."""
        if self._stopped:
            return
        self._stopped = True
        dropper = self._dropper
        if dropper is not None:
            dropper.join(timeout=30)  # let a drop under way finish before the server goes
        try:
            for mode in ("fast", "immediate"):
                done = subprocess.run(
                    [*self._runner, str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if done.returncode == 0 or not (self.data_dir / "postmaster.pid").exists():
                    break
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _runner_for_current_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs the server programs, and the uid/gid to own its directory."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam(_SUPERUSER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no '{_SUPERUSER}' user to run the server as: {_SETUP_HINT}"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and 'runuser' (util-linux) is missing to drop privileges")
    return [runuser, "-u", _SUPERUSER, "--"], entry.pw_uid, entry.pw_gid


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise PostgresUnavailable(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(server.conninfo(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _init_cluster(bin_dir: Path, base: Path, runner: list[str]) -> None:
    _run(
        [
            *runner,
            str(bin_dir / "initdb"),
            "-D",
            str(base / "data"),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ],
        "initdb",
    )
    _run([*runner, "mkdir", "-m", "0700", str(base / "socket")], "mkdir of the socket directory")


def _start_on_free_port(bin_dir: Path, base: Path, runner: list[str]) -> PostgresServer:
    problem = ""
    for _attempt in range(_PORT_ATTEMPTS):  # another process may take the port between probe and bind
        server = PostgresServer(bin_dir=bin_dir, base_dir=base, port=_free_port(), _runner=runner)
        options = " ".join(f"-c {key}={value}" for key, value in _SERVER_SETTINGS.items())
        options += f" -c port={server.port} -c unix_socket_directories={server.socket_dir}"
        command = [*runner, str(bin_dir / "pg_ctl"), "start", "-D", str(server.data_dir)]
        command += ["-l", str(base / "server.log"), "-w", "-t", str(_START_TIMEOUT_S), "-o", options]
        done = subprocess.run(command, capture_output=True, text=True, timeout=_START_TIMEOUT_S + 30, check=False)
        if done.returncode == 0:
            return server
        problem = server.log_tail(5)
        if not re.search(r"could not (bind|create listen socket)|Address already in use", problem):
            break
    raise PostgresUnavailable(f"pg_ctl start failed: {problem}")


def start_server() -> PostgresServer:
    """Initialise and start a throwaway server with database :data:`DEFAULT_DATABASE`; the caller stops it."""
    bin_dir = find_bin_dir()
    runner, uid, gid = _runner_for_current_user()
    base = Path(tempfile.mkdtemp(prefix="trustroot-pg-"))
    try:
        if uid is not None and gid is not None:
            os.chown(base, uid, gid)
        base.chmod(0o700)
        _init_cluster(bin_dir, base, runner)
        server = _start_on_free_port(bin_dir, base, runner)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    atexit.register(server.stop)
    try:
        _wait_ready(server)
        with server._admin() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEFAULT_DATABASE)))
    except BaseException:
        with contextlib.suppress(Exception):
            server.stop()
        raise
    return server
