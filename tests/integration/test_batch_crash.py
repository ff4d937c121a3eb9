"""A batch killed part-way (SIGKILL) leaves a consistent store, and a resumed run finishes it correctly.

The batch runs as a real ``trustroot provision batch`` process with the test-only hook
``TRUSTROOT_TEST_ONLY_CHUNK_PAUSE_S``, which sleeps inside each chunk's transaction after the bundles
are written and before the commit: the kill lands at the worst moment, with bundles on disk that no
record owns.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trustroot._fsutil import exclusive_lock
from trustroot.keys.passphrase import fixed_secrets
from trustroot.product import open_product
from trustroot.provision.batch import BUNDLE_SUFFIX, TEST_PAUSE_ENV, missing_bundles
from trustroot.provision.bundle import open_bundle
from trustroot.provision.tokens import STATION_KEY, production_store

COUNT = 24
CHUNK = 4
KILL_AFTER = 8  # committed devices


def child_env(cache: Path) -> dict[str, str]:
    """The environment of a CLI child process: this interpreter's path, and a bytecode cache.

    The suite runs with PYTHONDONTWRITEBYTECODE=1, so every child would compile every module it
    imports (seconds of CPU each); a PYTHONPYCACHEPREFIX shared by this run's tests, warmed once
    under a lock, avoids that.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONPYCACHEPREFIX": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache / ".lock"):
        if not (cache / ".warm").exists():
            modules = "trustroot.cli.app, trustroot.cli.provision_cmd, trustroot.provision.batch, rich.progress"
            subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, env=env)
            (cache / ".warm").touch()
    return env


def _cli(ctx: str, *args: str, cache: Path, pause: str | None = None) -> subprocess.Popen[str]:
    env = child_env(cache)
    if pause is not None:
        env[TEST_PAUSE_ENV] = pause
    return subprocess.Popen(
        [sys.executable, "-m", "trustroot.cli", "provision", "batch", *args, "--context", ctx, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _committed(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM devices").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return 0


def test_a_killed_batch_is_consistent_and_resumes(product_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    ctx = str(product_dir / "security-context.toml")
    db = product_dir / ".trustroot" / "production" / "production.sqlite"
    cache = tmp_path_factory.getbasetemp().parent / "provision-pycache"
    victim = _cli(ctx, "--factory", "f1", "--count", str(COUNT), "--chunk", str(CHUNK), cache=cache, pause="0.25")
    deadline = time.monotonic() + 60
    while _committed(db) < KILL_AFTER:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the batch made no progress"
        time.sleep(0.02)
    time.sleep(0.1)  # into the next chunk's pause: its bundles are written, its commit is not
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL

    product = open_product(Path(ctx), secrets=fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"]))
    with production_store(product) as store:
        (batch,) = store.batches()
        assert store.check_consistency() == []
        recorded = [d.serial for d in store.iter_devices()]
        assert KILL_AFTER <= len(recorded) < COUNT
        assert recorded == [f"ACMEPL-{i:08d}" for i in range(1, len(recorded) + 1)]  # no gap
        assert missing_bundles(store, batch.batch_id) == []  # every record has its bundle
        out_dir = Path(str(batch.out_dir))
        on_disk = sorted(p.name.removesuffix(BUNDLE_SUFFIX) for p in out_dir.iterdir())
        orphans = [s for s in on_disk if s not in recorded]  # detectable: no record owns them
        assert all(int(s.split("-")[1]) > len(recorded) for s in orphans)
    product.evidence.verify(product.evidence_public_keys())

    resumed = _cli(ctx, "--resume", batch.batch_id, "--chunk", str(CHUNK), cache=cache)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    if orphans:
        assert f"{len(orphans)} bundle files of a crashed run removed" in out

    with production_store(product) as store:
        assert store.check_consistency() == []
        devices = list(store.iter_devices())
        done = store.batch(batch.batch_id)
        assert done is not None and done.provisioned == COUNT
    assert [d.serial for d in devices] == [f"ACMEPL-{i:08d}" for i in range(1, COUNT + 1)]
    assert not any(d.evidence_pending for d in devices)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{d.serial}{BUNDLE_SUFFIX}" for d in devices)
    station = product.keys.unlock(STATION_KEY)
    for device in devices:  # every bundle is the recorded device's, not an orphan's
        material = open_bundle(station, (out_dir / str(device.bundle)).read_bytes())
        from trustroot.pki.certificates import certificate_fingerprint

        assert certificate_fingerprint(material.certificates()[0]) == device.cert_fingerprint
    product.evidence.verify(product.evidence_public_keys())
    provisioned = [r.subject for r in product.evidence.iter_records() if r.type == "device.provisioned"]
    assert sorted(provisioned) == [d.serial for d in devices]  # each exactly once
