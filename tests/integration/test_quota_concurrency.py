"""Eight provisioning processes race one token on one store: no over-issuance, no duplicate, no gap.

The token allows 80 devices and each process asks for 20 (chunks of 4 devices per transaction, so the
four that get a batch interleave their transactions); the other four must be refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trustroot._fsutil import exclusive_lock
from trustroot.cli.main import main
from trustroot.keys.passphrase import fixed_secrets
from trustroot.pki.certificates import certificate_fingerprint
from trustroot.product import open_product
from trustroot.provision.bundle import open_bundle
from trustroot.provision.tokens import STATION_KEY, production_store

PROCESSES = 8
TOKEN_COUNT = 80
ASK = 20


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


def test_eight_processes_never_exceed_one_token(
    product_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = child_env(tmp_path_factory.getbasetemp().parent / "provision-pycache")
    ctx = str(product_dir / "security-context.toml")
    token = tmp_path / "token.json"
    expires = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    args = ["--factory", "f1", "--count", str(TOKEN_COUNT), "--expires", expires, "--out", str(token)]
    assert main(["provision", "authorize", *args, "--context", ctx, "--quiet"]) == 0

    command = [sys.executable, "-m", "trustroot.cli", "provision", "batch", "--token", str(token)]
    command += ["--count", str(ASK), "--chunk", "4", "--context", ctx, "--json"]
    racers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(PROCESSES)
    ]
    results = [
        (p.wait(timeout=120), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "") for p in racers
    ]
    for p in racers:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()

    winners = [json.loads(out) for code, out, _ in results if code == 0]
    losers = [err for code, _, err in results if code != 0]
    assert len(winners) == TOKEN_COUNT // ASK, [err for _, _, err in results]
    assert all(w["made"] == ASK for w in winners)
    assert len(losers) == PROCESSES - TOKEN_COUNT // ASK
    for err in losers:
        assert f"has 0 of {TOKEN_COUNT} devices left; {ASK} asked for" in err, err
        assert "Traceback" not in err

    product = open_product(Path(ctx), secrets=fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"]))
    with production_store(product) as store:
        assert store.check_consistency() == []
        devices = list(store.iter_devices())
        (record,) = store.tokens()
        assert (record.count, record.reserved, record.spent) == (TOKEN_COUNT, TOKEN_COUNT, TOKEN_COUNT)
    serials = [d.serial for d in devices]
    assert serials == [f"ACMEPL-{i:08d}" for i in range(1, TOKEN_COUNT + 1)]  # contiguous, no duplicate
    assert len({d.cert_fingerprint for d in devices}) == TOKEN_COUNT
    assert all(d.status == "active" and not d.evidence_pending for d in devices)
    for winner in winners:  # each batch holds what it made, and every bundle is on disk
        mine = [d for d in devices if d.batch_id == winner["batch"]]
        assert len(mine) == ASK
        assert all((Path(winner["out_dir"]) / str(d.bundle)).is_file() for d in mine)

    report = product.evidence.verify(product.evidence_public_keys())
    provisioned = [r.subject for r in product.evidence.iter_records() if r.type == "device.provisioned"]
    assert sorted(provisioned) == serials
    assert report.records >= TOKEN_COUNT


def test_two_worker_processes_make_one_batch(product_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """``--workers 2``: each worker unlocks its own keys (secrets from the environment); one store, one order."""
    env = child_env(tmp_path_factory.getbasetemp().parent / "provision-pycache")
    ctx = str(product_dir / "security-context.toml")
    command = [sys.executable, "-m", "trustroot.cli", "provision", "batch", "--factory", "f1", "--count", "10"]
    command += ["--chunk", "4", "--workers", "2", "--context", ctx, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["made"], result["first_serial"], result["last_serial"]) == (10, "ACMEPL-00000001", "ACMEPL-00000010")

    product = open_product(Path(ctx), secrets=fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"]))
    with production_store(product) as store:
        assert store.check_consistency() == []
        devices = list(store.iter_devices())
    assert [d.serial for d in devices] == [f"ACMEPL-{i:08d}" for i in range(1, 11)]
    station = product.keys.unlock(STATION_KEY)
    for device in devices:
        material = open_bundle(station, (Path(result["out_dir"]) / str(device.bundle)).read_bytes())
        assert material.serial == device.serial
        assert certificate_fingerprint(material.certificates()[0]) == device.cert_fingerprint
    provisioned = [r.subject for r in product.evidence.iter_records() if r.type == "device.provisioned"]
    assert provisioned == [d.serial for d in devices]

    (product_dir / ".trustroot" / "keys" / "factory-secret-1.key.pem").unlink()
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert again.returncode == 1
    assert "the factory-secret key cannot be used, so device passwords cannot be derived" in again.stderr
    assert "Traceback" not in again.stderr
