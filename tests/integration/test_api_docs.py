"""The API's documentation: /docs works without internet, and the OpenAPI document says
what each route answers."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from services.api.routes.docs import ASSETS_DIR

pytestmark = pytest.mark.usefixtures("api")

OPERATIONS = [
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/v1/models"),
    ("get", "/v1/models/{model}"), ("post", "/v1/models/{model}/predict"),
    ("get", "/v1/tasks/{task_id}"), ("delete", "/v1/tasks/{task_id}"), ("get", "/v1/pools"),
    ("get", "/v1/models/{model}/versions"), ("put", "/v1/models/{model}/aliases/{alias}"),
    ("delete", "/v1/models/{model}/aliases/{alias}"),
]


@pytest.fixture(scope="module")
def document(api_url: str) -> dict[str, Any]:
    response = httpx.get(f"{api_url}/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_docs_loads_every_asset_from_the_api(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Nothing outside the API: a cluster without internet access gets the whole page.
    assert "http://" not in page.text and "https://" not in page.text and "//" not in re.sub(
        r"<!--.*?-->", "", page.text)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    kinds = {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "text/css",
             "favicon-32x32.png": "image/png"}
    assert sorted(a.rsplit("/", 1)[-1] for a in assets) == sorted(kinds)
    for url in assets:
        name = url.rsplit("/", 1)[-1]
        response = client.get(url)
        assert response.status_code == 200, url
        assert kinds[name] in response.headers["content-type"]
        assert response.content == (ASSETS_DIR / name).read_bytes()
    assert "url: '/openapi.json'" in page.text and '"validatorUrl": null' in page.text
    assert client.get("/docs/oauth2-redirect").status_code == 200
    # FastAPI's other page, which loads from a CDN, is not served.
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/assets/nothing.js").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation_has_a_summary_and_description(
    document: dict[str, Any], method: str, path: str
) -> None:
    operation = document["paths"][path][method]
    assert operation["summary"] and operation["description"]


@pytest.mark.parametrize(("path", "schema"), [
    ("/v1/models", "ModelList"), ("/v1/models/{model}", "ModelDescription"),
    ("/v1/models/{model}/versions", "ModelVersions"), ("/v1/pools", "PoolList"),
])
def test_plain_routes_have_typed_answers(
    document: dict[str, Any], path: str, schema: str
) -> None:
    content = document["paths"][path]["get"]["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
    assert document["components"]["schemas"][schema]["properties"]


def test_each_route_names_its_error_codes(document: dict[str, Any]) -> None:
    predict = document["paths"]["/v1/models/{model}/predict"]["post"]["responses"]
    codes = {status: {e["value"]["error"]["code"]
                      for e in answer["content"]["application/json"]["examples"].values()}
             for status, answer in predict.items() if status[0] in "45" and status != "4XX"}
    assert codes == {
        "400": {"malformed_body", "invalid_parameter"},
        "404": {"model_not_found", "version_not_found", "alias_not_found"},
        "413": {"too_many_rows", "payload_too_large"},
        "422": {"invalid_rows"}, "503": {"redis_unavailable", "redis_full"},
        "401": {"missing_credentials", "invalid_api_key"}, "403": {"insufficient_scope"},
        "429": {"rate_limited"},
    }
    assert "Retry-After" in predict["429"]["headers"]
    assert "`redis_full`" in predict["503"]["description"]
    cancel = document["paths"]["/v1/tasks/{task_id}"]["delete"]["responses"]
    assert set(cancel["409"]["content"]["application/json"]["examples"]) == {
        "task_not_cancellable"}
    alias = document["paths"]["/v1/models/{model}/aliases/{alias}"]
    assert {s: set(a["content"]["application/json"]["examples"])
            for s, a in alias["put"]["responses"].items() if s in ("404", "422")} == {
        "404": {"model_not_found", "version_not_found"},
        "422": {"invalid_alias", "invalid_alias_1"}}
    assert set(alias["delete"]["responses"]["404"]["content"]["application/json"]["examples"]) \
        == {"model_not_found", "alias_not_found"}
    ready = document["paths"]["/readyz"]["get"]["responses"]
    assert set(ready["503"]["content"]["application/json"]["examples"]) == {
        "redis_unavailable"}


def test_examples_show_what_each_status_answers(document: dict[str, Any]) -> None:
    predict = document["paths"]["/v1/models/{model}/predict"]["post"]
    finished = predict["responses"]["200"]["content"]["application/json"]["examples"]
    assert {e["value"]["status"] for e in finished.values()} == {"succeeded", "failed"}
    queued = predict["responses"]["202"]["content"]["application/json"]["examples"]
    assert [e["value"]["status"] for e in queued.values()] == ["queued"]
    assert {p["name"] for p in predict["parameters"]} >= {"wait", "version", "alias"}


def test_metrics_are_documented_as_text(document: dict[str, Any], client: httpx.Client) -> None:
    content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/plain", "application/openmetrics-text"}
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
