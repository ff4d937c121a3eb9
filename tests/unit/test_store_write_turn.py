"""Hot writers on one SQLite file take turns on one flock (Store.write_turn), not in SQLite's busy handler."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from trustroot.fleet.config import sqlite_url
from trustroot.fleet.store.db import WRITE_LOCK_SUFFIX, Store, make_engine

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


def test_another_process_waits_while_a_writer_has_its_turn(tmp_path: Path) -> None:
    database = tmp_path / "fleet.sqlite"
    store = Store(make_engine(sqlite_url(database)))
    lock = Path(str(database) + WRITE_LOCK_SUFFIX)
    with store.write_turn():
        assert lock.is_file() and lock.stat().st_mode & 0o777 == 0o600
        assert _probe(lock) == "busy"
    assert _probe(lock) == "free"
    store.dispose()


def test_threads_of_one_process_take_turns_too(tmp_path: Path) -> None:
    store = Store(make_engine(sqlite_url(tmp_path / "fleet.sqlite")))
    inside: list[int] = []
    overlaps: list[int] = []

    def writer(n: int) -> None:
        for _ in range(20):
            with store.write_turn():
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.0005)
                inside.remove(n)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    store.dispose()


def test_an_in_memory_store_needs_no_lock_file(tmp_path: Path) -> None:
    store = Store(make_engine("sqlite://"))
    with store.write_turn():
        pass
    assert not list(tmp_path.iterdir())
    store.dispose()
