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


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_every_error_answer_is_documented_with_the_one_error_body(product_dir: Path, migrated_store_url: str) -> None:
    from service_fixtures import in_process

    with in_process(product_dir, migrated_store_url) as running:
        document = running.app.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    problems = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            label = f"{method.upper()} {path}"
            for status in ("408", "413", "503"):  # the middleware answers these on any route
                if status not in responses:
                    problems.append(f"{label}: {status} not documented")
            if (operation.get("parameters") or operation.get("requestBody")) and "422" not in responses:
                problems.append(f"{label}: has input but 422 is not documented")
            names_one = any(p.get("in") == "path" for p in operation.get("parameters", ()))
            if names_one and path.startswith("/api/v1/") and "404" not in responses:
                problems.append(f"{label}: names a resource but 404 is not documented")
            security = path.startswith("/api/v1/") and path not in {"/api/v1/owners", "/api/v1/ownership/key"}
            if security and not (path == "/api/v1/disclosures" and method == "post") and "401" not in responses:
                problems.append(f"{label}: needs credentials but 401 is not documented")
            for status, response in responses.items():
                if (
                    int(status) >= 400
                    and response.get("content", {}).get("application/json", {}).get("schema") != error_ref
                ):
                    problems.append(f"{label}: {status} is not ErrorBody: {response}")
    assert not problems, "\n".join(problems)
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert error_body["additionalProperties"] is False and set(error_body["required"]) == {"error", "message"}


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_error_answers_have_the_error_body(product_dir: Path, migrated_store_url: str) -> None:
    import asyncio

    import httpx
    from service_fixtures import in_process

    async def calls(app: object) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            return [
                await client.get("/api/v1/disclosures"),  # no token: 401
                await client.post(
                    "/api/v1/owners", content=b'{"public_key": "\xc3"}', headers={"content-type": "application/json"}
                ),
                await client.post("/api/v1/owners", json={"public_key": "zz"}),  # 422 from validation
                await client.post("/api/v1/disclosures", json={"summary": "x"}),  # 422 from the intake's own check
                await client.get("/no/such/route"),
            ]

    with in_process(product_dir, migrated_store_url) as running:
        answers = asyncio.run(calls(running.app))
    assert [a.status_code for a in answers] == [401, 422, 422, 422, 404]
    for answer in answers:
        body = answer.json()
        assert set(body) == {"error", "message", "provision", "retry_after_s", "problems"}, body
        assert "Traceback" not in answer.text
    assert answers[0].json()["error"] == "unauthorized" and answers[0].headers["www-authenticate"].startswith("Bearer")
    assert answers[1].json()["message"].startswith("the request body cannot be decoded")
    assert answers[2].json()["problems"][0]["loc"] == ["body", "public_key"]
    assert answers[3].json()["problems"] and answers[3].json()["error"] == "invalid_request"
