"""The OpenAPI document's examples are answers its own schemas allow."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from services.api.main import create_app

DOCUMENT = create_app().openapi()


def _examples() -> list[tuple[str, dict[str, Any], Any]]:
    found = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                for media, content in answer.get("content", {}).items():
                    if media != "application/json":
                        continue
                    values = [e["value"] for e in content.get("examples", {}).values()]
                    if "example" in content:
                        values.append(content["example"])
                    found += [(f"{method} {path} {status}", content["schema"], v)
                              for v in values]
    return found


@pytest.mark.parametrize(("where", "schema", "example"), _examples(), ids=lambda v: (
    v if isinstance(v, str) else ""))
def test_each_example_fits_its_schema(where: str, schema: dict[str, Any], example: Any) -> None:
    # References point into the document's components: validate from a root that has them.
    Draft202012Validator({**schema, "components": DOCUMENT["components"]}).validate(example)


def test_every_answer_has_an_example() -> None:
    """But the generic 4XX, the 200s of the probes, /metrics and a batch job's files, which
    have no JSON to show, and the empty 204 of a deletion."""
    shown = {where for where, _, _ in _examples()}
    bare = {"get /healthz 200", "get /readyz 200", "get /metrics 200",
            "delete /v1/datasets/{dataset_id} 204", "delete /v1/models/{model}/aliases/{alias} 204",
            "get /v1/batch-jobs/{job_id}/results 200", "get /v1/batch-jobs/{job_id}/errors 200"}
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status in operation["responses"]:
                where = f"{method} {path} {status}"
                assert status == "4XX" or where in bare or where in shown, where


def test_the_wait_the_document_states_is_the_one_the_api_applies() -> None:
    from starlette.requests import Request

    from services.api.deps import wait_seconds
    from services.api.errors import InvalidParameter, error_body
    from services.common.settings import Settings

    cap = Settings.model_fields["max_wait_seconds"].default
    shown = [e for _, _, e in _examples()
             if e.get("error", {}).get("details", {}).get("parameter") == "wait"
             and e["error"]["message"].startswith("wait must")]
    assert shown
    for example in shown:
        raw = example["error"]["details"]["value"]
        request = Request({"type": "http", "query_string": f"wait={raw}".encode(),
                           "headers": []})
        with pytest.raises(InvalidParameter) as refused:
            wait_seconds(request, Settings(max_wait_seconds=cap))
        assert error_body(refused.value) == example
    waits = [p for operations in DOCUMENT["paths"].values() for o in operations.values()
             for p in o.get("parameters", []) if p["name"] == "wait"]
    assert waits and all(f"{cap:g} by default" in p["description"] for p in waits)
