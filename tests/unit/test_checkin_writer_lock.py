"""The SQLite check-in writers of several processes queue on one flock (the tail latency fix)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trustroot.fleet.checkin_writer import _SqliteWriterLock

_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy")
else:
    print("free")
"""


def _probe(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_another_process_waits_while_a_batch_holds_the_lock(tmp_path: Path) -> None:
    database = tmp_path / "fleet.sqlite"
    lock = _SqliteWriterLock(str(database))
    path = Path(str(database) + _SqliteWriterLock.SUFFIX)
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o600
    with lock.held():
        assert _probe(path) == "busy"
    assert _probe(path) == "free"


def test_only_a_file_backed_sqlite_store_has_one() -> None:
    assert _SqliteWriterLock.for_engine("fleet.sqlite", "postgresql") is None
    assert _SqliteWriterLock.for_engine(":memory:", "sqlite") is None
    assert _SqliteWriterLock.for_engine(None, "sqlite") is None
