"""Welcome, health, readiness, request ids, security headers, CORS and offline docs."""

import importlib
import logging
import os
import re
import tomllib
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from api import main
from api.core.middleware import request_id_var
from api.main import create_app
from tests.conftest import app_with, create_item, make_account, make_settings

ROOT = Path(__file__).resolve().parents[2]


async def test_welcome_and_health(client: httpx2.AsyncClient) -> None:
    welcome = await client.get("/")
    assert welcome.status_code == 200
    assert welcome.json()["docs"] == "/docs"
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).json() == {"status": "ready"}


async def test_request_id_is_echoed_or_generated(client: httpx2.AsyncClient) -> None:
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    hostile = await client.get("/health", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


def assert_security_headers(response: httpx2.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_security_headers_on_every_response(client: httpx2.AsyncClient) -> None:
    for path in ("/health", "/api/v1/nowhere", "/api/v1/auth/me"):
        assert_security_headers(await client.get(path))


class RequestIds(logging.Handler):
    """The request id in force when each record of the `docstore` logger was emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), request_id_var.get()))


async def test_a_500_and_a_413_look_like_every_other_response(
    mongodb_url: str, tmp_path: Path
) -> None:
    """Errors of last resort carry the request id, security headers and CORS headers;
    the 500's log line names its request."""
    settings = make_settings(
        mongodb_url, tmp_path, cors_origins="https://app.example", max_body_bytes=1024
    )
    app = create_app(settings)

    @app.get("/test-only/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("a bug")

    logs = RequestIds()
    logging.getLogger("docstore").addHandler(logs)
    origin = {"Origin": "https://app.example"}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                failed = await client.get("/test-only/boom", headers=origin)
                too_large = await client.post("/api/v1/items", content=b"x" * 2048, headers=origin)
    finally:
        logging.getLogger("docstore").removeHandler(logs)
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"
    assert too_large.status_code == 413
    for response in (failed, too_large):
        assert_security_headers(response)
        assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert ("unhandled error", failed.headers["x-request-id"]) in logs.seen


async def test_docs_work_offline(client: httpx2.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page.text))
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        fetched = await client.get(asset)
        assert fetched.status_code == 200, asset
        assert len(fetched.content) > 1000
    assert "script-src 'self'" in page.headers["content-security-policy"]
    redoc = await client.get("/redoc")
    assert redoc.status_code == 200
    script = re.search(r'<script src="(/[^"]+)"', redoc.text)
    assert script is not None
    assert (await client.get(script.group(1))).status_code == 200


async def test_openapi_documents_auth_and_errors(client: httpx2.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/login"
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if "101" in operation["responses"]:
                continue  # the WebSocket route: its errors are close codes (tests/test_live.py)
            errors = {code for code in operation["responses"] if code.startswith(("4", "5"))}
            assert {"422", "503"} <= errors, (method, path)
            problem = operation["responses"]["422"]["content"]
            assert "application/problem+json" in problem, (method, path)
    item = spec["components"]["schemas"]["Item"]["properties"]
    assert "id" in item
    assert "_id" not in item
    assert "hashed_password" not in spec["components"]["schemas"]["UserPublic"]["properties"]


async def test_cors_from_settings(mongodb_url: str, tmp_path: Path) -> None:
    settings = make_settings(mongodb_url, tmp_path, cors_origins="https://app.example")
    assert settings.cors_origins == ["https://app.example"]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            allowed = await client.options(
                "/api/v1/items",
                headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
            )
            assert allowed.headers["access-control-allow-origin"] == "https://app.example"
            other = await client.get("/health", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers


async def test_metrics_count_requests_by_route_and_status(mongodb_url: str, tmp_path: Path) -> None:
    async with app_with(make_settings(mongodb_url, tmp_path)) as (app, client):  # fresh counts
        alice = await make_account(app, "alice")
        created = await create_item(client, alice)
        await client.get(f"/api/v1/items/{created['id']}", headers=alice.headers)
        await client.get(f"/api/v1/items/{'0' * 24}", headers=alice.headers)
        await client.get("/no/such/path/12345")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    by_id = 'method="GET",route="/api/v1/items/{item_id}"'
    assert f'docstore_http_requests_total{{{by_id},status="200"}} 1.0' in text
    assert f'docstore_http_requests_total{{{by_id},status="404"}} 1.0' in text
    assert 'route="unmatched",status="404"} 1.0' in text  # raw paths never become labels
    assert "12345" not in text
    assert 'docstore_outbox_messages{status="pending"}' in text
    assert "docstore_live_subscribers 0.0" in text
    assert "process_resident_memory_bytes" in text


def test_the_fastapi_cli_entrypoint_names_the_app() -> None:
    """`fastapi dev` / `fastapi run` import what `[tool.fastapi] entrypoint` names."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        entrypoint = tomllib.load(file)["tool"]["fastapi"]["entrypoint"]
    module, _, attribute = entrypoint.partition(":")
    assert isinstance(getattr(importlib.import_module(module), attribute), FastAPI)


async def test_metrics_label_each_route_by_its_own_template(
    mongodb_url: str, tmp_path: Path
) -> None:
    """A path that matches several templates (`/items/batch` is also `/items/{item_id}`)
    is labelled by the route that answered it, and does not relabel that route."""
    async with app_with(make_settings(mongodb_url, tmp_path)) as (app, client):
        alice = await make_account(app, "alice")
        created = await create_item(client, alice)
        odd = await client.get("/api/v1/items/batch", headers=alice.headers)
        read = await client.get(f"/api/v1/items/{created['id']}", headers=alice.headers)
        text = (await client.get("/metrics")).text
    assert read.status_code == 200
    by_id = 'method="GET",route="/api/v1/items/{item_id}"'
    assert f'docstore_http_requests_total{{{by_id},status="{odd.status_code}"}} 1.0' in text
    assert f'docstore_http_requests_total{{{by_id},status="200"}} 1.0' in text
    assert 'method="GET",route="/api/v1/items/batch"' not in text


def test_fastapi_telemetry_is_on_only_where_opentelemetry_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith(("OTEL_", "FASTAPI_OTEL_"))]:
        monkeypatch.delenv(name)
    off = {"tracing": False, "metrics": False, "logs": False}
    assert main._telemetry() == off
    # A meter provider set up in code, before the app is built (a stand-in: OpenTelemetry
    # lets a process set its global provider once).
    monkeypatch.setattr(main.otel_metrics, "get_meter_provider", lambda: object())
    assert main._telemetry() == {}  # FastAPI's defaults: all on
    monkeypatch.undo()
    assert main._telemetry() == off
    monkeypatch.setenv("OTEL_SERVICE_NAME", "docstore")
    assert main._telemetry() == {}
