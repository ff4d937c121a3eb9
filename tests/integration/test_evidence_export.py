"""The fleet's audit chain exported as an evidence log: CLI and operator API, verified by the product verifier.

``trustroot fleet export-evidence --out FILE`` and ``GET /api/v1/audit/evidence`` (scope ``read``)
give the same bytes; ``trustroot evidence verify FILE`` accepts them with the product's evidence key
(signed checkpoints included) and refuses the file once a record is edited, removed or reordered,
naming the line, as it does for the product's own log.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from service_fixtures import InProcess, in_process

from trustroot.cli.main import main
from trustroot.fleet.disclosures import DisclosureReport, receive
from trustroot.fleet.operators import add_operator
from trustroot.fleet.store.audit import audit_log

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

REPORTS = 12


@pytest.fixture
def fleet(product_dir: Path, sqlite_store: str) -> InProcess:
    with in_process(product_dir, sqlite_store) as running:
        for n in range(REPORTS):
            receive(running.service, DisclosureReport(summary=f"report {n}", details="steps"))
            if n == REPORTS // 2:
                audit_log(running.service).checkpoint()  # signed with the product's evidence key
        yield running  # type: ignore[misc]


def get(fleet: InProcess, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=fleet.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            return await client.get("/api/v1/audit/evidence", headers=headers)

    return asyncio.run(go())


def cli(product_dir: Path, *args: str) -> int:
    return main([*args, "--context", str(product_dir)])


def test_export_verifies_and_an_edited_record_is_refused(
    fleet: InProcess, product_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = add_operator(fleet.service, "auditor", "read", actor="user:admin").token
    out = tmp_path / "fleet-evidence.jsonl"
    code = cli(product_dir, "fleet", "export-evidence", "--out", str(out), "--database", fleet.url, "--json")
    assert code == 0, capsys.readouterr()
    exported = json.loads(capsys.readouterr().out)
    lines = out.read_bytes().splitlines()
    assert exported["records"] == len(lines) > REPORTS and exported["checkpoints"] >= 1
    assert cli(product_dir, "evidence", "verify", str(out), "--json") == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["ok"] is True and verified["head_hash"] == exported["head_hash"]
    assert verified["last_signed_seq"] >= 1  # the checkpoint's signature checked with the product's key

    # the API gives the same bytes, to a token with the read scope only
    answer = get(fleet, reader)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/jsonl")
    assert answer.content == out.read_bytes()

    # an edited record: the subject of the third report changed, the JSON still valid
    record = json.loads(lines[3])
    record["subject"] = "VD-0000000000000000"
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"\n".join([*lines[:3], json.dumps(record).encode(), *lines[4:]]) + b"\n")
    assert cli(product_dir, "evidence", "verify", str(edited)) == 1
    assert "line 4" in capsys.readouterr().err
    # a removed record
    removed = tmp_path / "removed.jsonl"
    removed.write_bytes(b"\n".join([*lines[:5], *lines[6:]]) + b"\n")
    assert cli(product_dir, "evidence", "verify", str(removed)) == 1
    assert "line 6" in capsys.readouterr().err
    assert cli(product_dir, "evidence", "verify", str(tmp_path / "missing.jsonl")) == 2


def test_the_export_route_needs_the_read_scope(fleet: InProcess) -> None:
    assert get(fleet, None).status_code == 401
    other = add_operator(fleet.service, "triager", "disclosure", actor="user:admin").token
    refused = get(fleet, other)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    reader = add_operator(fleet.service, "auditor", "read", actor="user:admin").token
    body = get(fleet, reader).content
    head = audit_log(fleet.service).head()
    assert json.loads(body.splitlines()[-1])["hash"] == head.hash
