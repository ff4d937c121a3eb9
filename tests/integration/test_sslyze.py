"""An independent TLS scan of the running service with sslyze (EN 303 645 provision 5.5-1).

sslyze lives in the tools environment and runs as a subprocess against ``trustroot serve`` on
loopback, with the product's root CA as its trust store. It must find: no SSL 2.0/3.0, TLS 1.0 or
1.1; TLS 1.2 and 1.3 with forward-secret AEAD suites of at least 128 bits only; no compression, no
client-initiated renegotiation; a server chain that validates against the product's root.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import RunningService

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

SSLYZE = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "sslyze"
TRUST_STORE = "Supplied CA file"


@pytest.fixture(scope="module")
def scan(service: RunningService, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not SSLYZE.is_file():  # fail, never skip: a missing engine must not look like a green run
        pytest.fail(f"{SSLYZE} is missing: run scripts/setup.sh --tools", pytrace=False)
    out = tmp_path_factory.mktemp("sslyze") / "scan.json"
    completed = subprocess.run(
        [
            str(SSLYZE),
            f"--json_out={out}",
            "--mozilla_config=disable",
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            "--compression",
            "--reneg",
            "--certinfo",
            f"--certinfo_ca_file={service.root_ca}",
            "--quiet",
            f"127.0.0.1:{service.port}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    document = json.loads(out.read_text())
    (server,) = document["server_scan_results"]
    assert server["connectivity_status"] == "COMPLETED", server["connectivity_error_trace"]
    assert server["scan_status"] == "COMPLETED"
    result: dict[str, Any] = server["scan_result"]
    return result


def _accepted(scan: dict[str, Any], command: str) -> list[dict[str, Any]]:
    attempt = scan[command]
    assert attempt["status"] == "COMPLETED", attempt["error_trace"]
    accepted: list[dict[str, Any]] = attempt["result"]["accepted_cipher_suites"]
    return accepted


@pytest.mark.parametrize(
    "command", ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"]
)
def test_no_legacy_protocol_is_accepted(scan: dict[str, Any], command: str) -> None:
    assert _accepted(scan, command) == []


@pytest.mark.parametrize("command", ["tls_1_2_cipher_suites", "tls_1_3_cipher_suites"])
def test_only_forward_secret_aead_suites_of_128_bits_or_more(scan: dict[str, Any], command: str) -> None:
    suites = _accepted(scan, command)
    assert suites, f"{command}: nothing accepted"
    for accepted in suites:
        suite = accepted["cipher_suite"]
        assert suite["key_size"] >= 128, suite
        assert accepted["ephemeral_key"] is not None, f"{suite['name']} has no forward secrecy"
        assert any(aead in suite["name"] for aead in ("_GCM_", "CHACHA20_POLY1305")), suite["name"]
    if command == "tls_1_2_cipher_suites":
        assert all(s["cipher_suite"]["name"].startswith("TLS_ECDHE_") for s in suites)


def test_no_compression_and_no_client_renegotiation(scan: dict[str, Any]) -> None:
    assert scan["tls_compression"]["result"]["supports_compression"] is False
    renegotiation = scan["session_renegotiation"]["result"]
    assert renegotiation["is_vulnerable_to_client_renegotiation_dos"] is False
    assert renegotiation["client_renegotiations_success_count"] == 0


def test_the_certificate_chain_validates_against_the_products_root(scan: dict[str, Any]) -> None:
    info = scan["certificate_info"]
    assert info["status"] == "COMPLETED", info["error_trace"]
    (deployment,) = info["result"]["certificate_deployments"]
    by_store = {p["trust_store"]["name"]: p for p in deployment["path_validation_results"]}
    assert by_store[TRUST_STORE]["was_validation_successful"] is True, by_store[TRUST_STORE]["validation_error"]
    assert deployment["received_chain_has_valid_order"] is True
    assert deployment["verified_chain_has_sha1_signature"] is False
    assert "127.0.0.1" in deployment["received_certificate_chain"][0]["subject_alternative_name"]["ip_addresses"]
