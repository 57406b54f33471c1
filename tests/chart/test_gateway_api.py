"""The API behind a Gateway API HTTPRoute: its shape against the HTTPRoute v1 schema.

The Gateway API CRDs are not among the CRDs the suite validates against, and the whole
HTTPRoute CRD is too large to keep here: HTTPROUTE_V1 holds the part of its v1 schema
(gateway-api v1.4, config/crd/standard/gateway.networking.k8s.io_httproutes.yaml) that
covers every field the chart writes, closed, with the CRD's patterns and limits and the
two CEL rules that bear on it. When the CRD file is in the CRD folder, the route is
checked against it too.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from chart.manifests import (
    RELEASE,
    component_name,
    crd_validators,
    crds_dir,
    objects,
    of_kind,
    render,
    scenario_objects,
    scenario_values,
)

API = component_name("api")
GATEWAY_GROUP = "gateway.networking.k8s.io"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_NAME = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_KIND = {"type": "string", "minLength": 1, "maxLength": 63,
         "pattern": r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"}
_GROUP = {"type": "string", "maxLength": 253, "pattern": rf"^$|^{_DNS_NAME}$"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_NAMESPACE = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": rf"^{_DNS_LABEL}$"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}


def _closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": required or []}


HTTPROUTE_V1: dict[str, Any] = _closed({
    "apiVersion": {"const": f"{GATEWAY_GROUP}/v1"},
    "kind": {"const": "HTTPRoute"},
    "metadata": {"type": "object"},
    "spec": _closed({
        "parentRefs": {"type": "array", "maxItems": 32, "items": _closed({
            "group": _GROUP, "kind": _KIND, "name": _NAME, "namespace": _NAMESPACE,
            "sectionName": {"type": "string", "minLength": 1, "maxLength": 253,
                            "pattern": rf"^{_DNS_NAME}$"},
            "port": _PORT,
        }, ["name"])},
        "hostnames": {"type": "array", "maxItems": 16, "items": {
            "type": "string", "minLength": 1, "maxLength": 253,
            "pattern": rf"^(\*\.)?{_DNS_NAME}$"}},
        "rules": {"type": "array", "maxItems": 16, "items": _closed({
            "matches": {"type": "array", "maxItems": 64, "items": _closed({
                "path": _closed({
                    "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                    # CEL: an Exact or PathPrefix value is an absolute path.
                    "value": {"type": "string", "maxLength": 1024, "pattern": "^/"},
                }),
            })},
            "backendRefs": {"type": "array", "maxItems": 16, "items": _closed({
                "group": _GROUP, "kind": _KIND, "name": _NAME, "namespace": _NAMESPACE,
                "port": _PORT,
                # CEL: a reference to a Service (the default kind) must name its port.
            }, ["name", "port"])},
        })},
    }),
}, ["apiVersion", "kind", "metadata", "spec"])

ROUTED = {"api": {"httpRoute": {
    "enabled": True,
    "parentRefs": [{"name": "traefik-gateway", "namespace": "traefik", "sectionName": "web"}],
    "hostnames": ["inferq.example.com", "*.inferq.example.com"],
}}}


def _crd_validator() -> jsonschema.Draft7Validator | None:
    """The HTTPRoute v1 CRD's own schema, when the CRD folder holds it."""
    directory = crds_dir()
    if not directory.is_dir():
        return None
    return crd_validators(directory).get((GATEWAY_GROUP, "v1", "HTTPRoute"))


def _problems(route: dict[str, Any]) -> list[str]:
    validators = [jsonschema.Draft7Validator(HTTPROUTE_V1)]
    if (crd := _crd_validator()) is not None:
        validators.append(crd)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for validator in validators for e in validator.iter_errors(route)]


def test_no_httproute_unless_asked() -> None:
    assert of_kind(scenario_objects("default"), "HTTPRoute") == []


@pytest.mark.parametrize("scenario", ["gateway-api"])
def test_the_route_fits_the_httproute_v1_schema(scenario: str) -> None:
    (route,) = of_kind(scenario_objects(scenario), "HTTPRoute")
    assert _problems(route) == []
    values = scenario_values(scenario)["api"]["httpRoute"]
    assert route["spec"]["parentRefs"] == values["parentRefs"]


def test_the_route_sends_every_path_to_the_api_service() -> None:
    manifests = objects(render(ROUTED))
    (route,) = of_kind(manifests, "HTTPRoute")
    assert _problems(route) == []
    assert route["metadata"]["name"] == API
    assert route["spec"]["hostnames"] == ["inferq.example.com", "*.inferq.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    service = next(s for s in of_kind(manifests, "Service") if s["metadata"]["name"] == API)
    assert rule["backendRefs"] == [{"name": API, "port": service["spec"]["ports"][0]["port"]}]


def test_the_schema_subset_refuses_what_the_crd_refuses() -> None:
    (route,) = of_kind(objects(render(ROUTED)), "HTTPRoute")
    bad_host = {**route, "spec": {**route["spec"], "hostnames": ["Bad_Host"]}}
    no_port = {**route, "spec": {**route["spec"], "rules": [
        {"backendRefs": [{"name": API}]}]}}
    unknown = {**route, "spec": {**route["spec"], "gateway": "x"}}
    for bad in (bad_host, no_port, unknown):
        assert not jsonschema.Draft7Validator(HTTPROUTE_V1).is_valid(bad)


def test_values_refuse_a_route_with_no_gateway_or_a_bad_hostname() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match=re.escape("api.httpRoute.parentRefs")):
        render({"api": {"httpRoute": {"enabled": True}}})
    with pytest.raises(helm_python.HelmValuesError, match="hostnames"):
        render({"api": {"httpRoute": {**ROUTED["api"]["httpRoute"], "hostnames": ["A_B"]}}})


def test_release_name_is_the_routes_prefix() -> None:
    (route,) = of_kind(objects(render(ROUTED)), "HTTPRoute")
    assert route["metadata"]["name"].startswith(RELEASE)
