"""The service publishes one OpenAPI document covering every route, without warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

pytest_plugins = ["service_fixtures"]


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_openapi_document_is_complete_and_clean(product_dir: Path, migrated_store_url: str) -> None:
    from service_fixtures import in_process

    with in_process(product_dir, migrated_store_url) as running:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            document = running.app.openapi()
    paths = set(document["paths"])
    for expected in (
        "/api/v1/device/check-in",
        "/api/v1/devices",
        "/api/v1/releases",
        "/api/v1/rollouts",
        "/api/v1/disclosures",
        "/.well-known/security.txt",
        "/tuf/metadata/{name}",
    ):
        assert expected in paths, sorted(paths)
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
