"""The OpenAPI document (token_server/openapi.py, docs/openapi.json) is valid, committed as
served, names every error code the source can raise, and is true to the live endpoint's answers.

The live half runs against the session's real token endpoint and livekit-server; Schemathesis's
run against a live endpoint is tests/e2e/test_openapi_schemathesis.py.
"""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from starlette.testclient import TestClient

import token_server
from local_stack import REPO_ROOT, TokenServer
from tests.conftest import auth_headers
from token_server.app import create_app
from token_server.config import METRICS_PATH, OPENAPI_PATH, Settings
from token_server.dispatch_follow import Blocker
from token_server.errors import ApiError
from token_server.openapi import (
    REQUEST_EXAMPLES,
    documented_settings,
    name_pattern,
    openapi_document,
    render,
)
from token_server.token_request import (
    MAX_BODY_BYTES,
    MAX_PARTICIPANT_NAME,
    MAX_ROOM_NAME,
    parse_token_request,
)

COMMITTED = REPO_ROOT / "docs" / "openapi.json"
REGENERATE = "uv run python -m token_server.openapi > docs/openapi.json"
SOURCE = Path(token_server.__file__).parent
HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


# --- the document itself ----------------------------------------------------------------------


def variants() -> list[Settings]:
    default = documented_settings()
    return [
        default,
        replace(default, path="/api/v2/token", metrics=False),
        replace(default, api_keys=(), allow_no_auth=True),
    ]


@pytest.mark.parametrize("settings_", variants(), ids=["default", "path-no-metrics", "no-auth"])
def test_the_document_is_valid_openapi_3_1(settings_: Settings) -> None:
    document = openapi_document(settings_)
    validate(document)  # picks the 3.1 validator from `openapi: 3.1.0`
    assert document["openapi"] == "3.1.0"


def test_the_committed_document_is_the_one_served() -> None:
    """docs/openapi.json is byte for byte what GET /openapi.json answers with the documented
    settings (no lifespan: the route needs no LiveKit)."""
    client = TestClient(create_app(documented_settings()))
    served = client.get(OPENAPI_PATH)
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert COMMITTED.exists(), f"docs/openapi.json is missing; write it with `{REGENERATE}`"
    assert served.text == COMMITTED.read_text(encoding="utf-8"), (
        f"docs/openapi.json is not what the server serves; regenerate it with `{REGENERATE}`"
    )
    assert json.loads(served.text) == openapi_document(documented_settings())


def test_the_served_document_follows_the_settings() -> None:
    default = documented_settings()
    moved = openapi_document(replace(default, path="/api/v2/token", metrics=False))
    assert "/api/v2/token" in moved["paths"]
    assert default.path not in moved["paths"]
    assert METRICS_PATH not in moved["paths"]

    client = TestClient(create_app(replace(default, path="/api/v2/token")))
    assert "/api/v2/token" in client.get(OPENAPI_PATH).json()["paths"]

    open_server = openapi_document(replace(default, api_keys=(), allow_no_auth=True))
    token_route = open_server["paths"][default.path]["post"]
    assert token_route["security"] == []
    assert "401" not in token_route["responses"]
    assert "securitySchemes" not in open_server["components"]

    guarded = openapi_document(default)
    assert guarded["paths"][default.path]["post"]["security"] == [
        {"bearerAuth": []},
        {"apiKeyAuth": []},
    ]
    assert guarded["paths"][METRICS_PATH]["get"]["security"] == [
        {"bearerAuth": []},
        {"apiKeyAuth": []},
    ]
    for path in ("/healthz", "/readyz", OPENAPI_PATH):
        assert guarded["paths"][path]["get"]["security"] == []


def test_every_documented_route_is_served_and_the_other_way_round() -> None:
    settings_ = documented_settings()
    app = create_app(settings_)
    served = {getattr(route, "path", None) for route in app.routes}
    assert served == set(openapi_document(settings_)["paths"])


# --- schemas, for validating against the document ---------------------------------------------


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its `$ref` (into this document) points at."""
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#/").split("/")
        target: Any = document
        for part in pointer:
            target = target[part]
        node = target
    return node


def validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    """A 2020-12 validator for a schema of `document` (its `$ref`s resolve in the document)."""
    root = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def request_validator(document: dict[str, Any]) -> jsonschema.Validator:
    return validator(document, {"$ref": "#/components/schemas/TokenRequest"})


def test_the_request_examples_are_valid_and_accepted() -> None:
    document = openapi_document(documented_settings())
    check = request_validator(document)
    for name, example in REQUEST_EXAMPLES.items():
        check.validate(example["value"])
        request = parse_token_request(example["value"])
        if request.agent is not None:
            assert documented_settings().agent_allowed(request.agent.agent_name), name


def name_schema(document: dict[str, Any], component: str) -> jsonschema_rs.Validator:
    """The validator Schemathesis uses (Rust, ECMA-262 regexes: `$` is the end of the text;
    Python's `re`, which `jsonschema` uses, also lets it match before a final newline)."""
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    )


def accepted_by_the_endpoint(field: str, value: str) -> bool:
    try:
        parse_token_request({field: value})
    except ApiError as exc:
        assert exc.status == 400
        return False
    return True


NAME_FIELDS = [
    ("room_name", "RoomName", MAX_ROOM_NAME),
    ("participant_name", "ParticipantName", MAX_PARTICIPANT_NAME),
    ("participant_identity", "ParticipantIdentity", MAX_PARTICIPANT_NAME),
]


@pytest.mark.parametrize(
    "value",
    [
        "simulated_user",
        "x",
        " padded ",
        "",
        " ",
        "\u00a0\u3000",  # blank in Unicode: refused by strip()
        "\u00a0x",
        "tab\there",
        "trailing newline\n",
        "zero\u200bwidth",
        "bidi\u202eoverride",
        "line\u2028separator",
        "tag\U000e0041",
        "Zoë — 日本語 🎙",
    ],
)
@pytest.mark.parametrize(("field", "component", "limit"), NAME_FIELDS)
def test_the_name_schema_says_what_the_endpoint_accepts(
    value: str, field: str, component: str, limit: int
) -> None:
    document = openapi_document(documented_settings())
    assert name_schema(document, component).is_valid(value) == accepted_by_the_endpoint(
        field, value
    ), repr(value)


@pytest.mark.parametrize(("field", "component", "limit"), NAME_FIELDS)
def test_the_name_schema_has_the_endpoint_limit(field: str, component: str, limit: int) -> None:
    document = openapi_document(documented_settings())
    schema = name_schema(document, component)
    assert schema.is_valid("a" * limit) and accepted_by_the_endpoint(field, "a" * limit)
    assert not schema.is_valid("a" * (limit + 1))
    assert not accepted_by_the_endpoint(field, "a" * (limit + 1))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(value=st.text(st.characters(codec="utf-8"), max_size=MAX_ROOM_NAME // 4))
def test_the_name_schema_agrees_with_the_check_on_any_text(value: str) -> None:
    """For every name within the byte limit (the one rule `maxLength` cannot say exactly), the
    document's schema and the endpoint's own check agree."""
    document = openapi_document(documented_settings())
    assert name_schema(document, "RoomName").is_valid(value) == accepted_by_the_endpoint(
        "room_name", value
    ), repr(value)


def test_the_name_pattern_is_what_the_schemas_use() -> None:
    schemas = openapi_document(documented_settings())["components"]["schemas"]
    for component in ("RoomName", "ParticipantName", "ParticipantIdentity"):
        assert schemas[component]["pattern"] == name_pattern()


# --- every error code the source can raise is documented --------------------------------------


@dataclass(frozen=True)
class Raised:
    status: int
    code: str
    where: str  # module:function


def _functions(tree: ast.Module) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, node.name


def _call_name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else None


def _constants_passed(trees: dict[str, ast.Module], function: str, index: int) -> set[str]:
    """Every constant string passed as argument `index` to `function`, anywhere in the source."""
    values: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _call_name(node) == function:
                argument = node.args[index]
                assert isinstance(argument, ast.Constant), ast.unparse(node)
                assert isinstance(argument.value, str), ast.unparse(node)
                values.add(argument.value)
    return values


def _module_dict(tree: ast.Module, name: str) -> dict[Any, Any]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict), name
            return value
    raise AssertionError(f"no module-level {name}")


def _codes(
    expression: ast.expr,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    tree: ast.Module,
    trees: dict[str, ast.Module],
) -> dict[str, int | None]:
    """The codes an error-code expression can take, each with the status it implies (None: the
    call's own status argument says)."""
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return {expression.value: None}
    parameters = [a.arg for a in function.args.args]
    if isinstance(expression, ast.JoinedStr):
        # f"invalid_{field_name}" with `field_name` a parameter: every constant passed for it
        names = [
            ast.unparse(v.value) for v in expression.values if isinstance(v, ast.FormattedValue)
        ]
        assert len(names) == 1 and names[0] in parameters, (
            f"cannot resolve {ast.unparse(expression)} in {function.name}: teach this test"
        )
        passed = _constants_passed(trees, function.name, parameters.index(names[0]))
        template = ast.unparse(expression)[2:-1]  # f"..." -> ...
        return {template.replace("{" + names[0] + "}", value): None for value in passed}
    if isinstance(expression, ast.Attribute) and ast.unparse(expression) == "blocker.value":
        return {blocker.value: None for blocker in Blocker}  # strict mode's codes
    if isinstance(expression, ast.Name):
        # `code = _HTTP_CODES.get(status, f"http_{status}")`: the mapping's codes, by its statuses
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Assign)
                and ast.unparse(node.targets[0]) == expression.id
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr == "get"
                and isinstance(node.value.func.value, ast.Name)
            ):
                mapping = _module_dict(tree, node.value.func.value.id)
                # The fallback (`http_<status>`) is for HTTPExceptions Starlette raises besides
                # routing's 404 and 405: this app raises none (it never parses forms).
                return {code: status for status, code in mapping.items()}
    raise AssertionError(f"cannot resolve {ast.unparse(expression)} in {function.name}")


def raised_in_source() -> set[Raised]:
    trees = {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCE.glob("*.py")}
    raised: set[Raised] = set()
    for module, tree in trees.items():
        if module == "errors":
            continue  # the shape itself (ApiError, bad_request): its callers name the codes
        for function, name in _functions(tree):
            for node in ast.walk(function):
                if not isinstance(node, ast.Call):
                    continue
                called = _call_name(node)
                status_node: ast.expr | None
                if called == "ApiError":
                    status_node, code_node = node.args[0], node.args[1]
                elif called == "bad_request":
                    status_node, code_node = ast.Constant(400), node.args[0]
                elif (
                    called == "JSONResponse"
                    and isinstance(node.args[0], ast.Dict)
                    and any(
                        isinstance(k, ast.Constant) and k.value == "error"
                        for k in node.args[0].keys
                    )
                ):
                    body = node.args[0]
                    code_node = next(
                        v
                        for k, v in zip(body.keys, body.values, strict=True)
                        if isinstance(k, ast.Constant) and k.value == "error"
                    )
                    status_node = next(k.value for k in node.keywords if k.arg == "status_code")
                else:
                    continue
                for code, implied in _codes(code_node, function, tree, trees).items():
                    if implied is not None:
                        status = implied
                    else:
                        assert isinstance(status_node, ast.Constant), ast.unparse(node)
                        assert isinstance(status_node.value, int), ast.unparse(node)
                        status = status_node.value
                    raised.add(Raised(status, code, f"{module}:{name}"))
    return raised


def documented_codes(document: dict[str, Any], path: str, method: str) -> set[tuple[int, str]]:
    operation = document["paths"][path][method]
    pairs = set()
    for status, response in operation["responses"].items():
        content = resolve(document, response).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        for code in (
            resolve(document, schema).get("properties", {}).get("error", {}).get("enum", [])
        ):
            pairs.add((int(status), code))
    return pairs


def test_every_error_code_the_source_raises_is_documented_and_nothing_else() -> None:
    raised = raised_in_source()
    # the scan finds the codes of every layer (a broken scan would find next to nothing)
    assert {r.where.split(":")[0] for r in raised} >= {
        "app",
        "auth",
        "dispatch",
        "room_lock",
        "token_request",
    }
    document = openapi_document(documented_settings())
    token_route = documented_codes(document, documented_settings().path, "post")
    readyz = documented_codes(document, "/readyz", "get")
    from_readyz = {(r.status, r.code) for r in raised if r.where == "app:readyz"}
    from_route = {(r.status, r.code) for r in raised if r.where != "app:readyz"}
    missing = sorted(from_route - token_route) + sorted(from_readyz - readyz)
    assert not missing, f"raised but not documented (status, code): {missing}; add to openapi.py"
    assert token_route <= from_route, (
        f"documented, never raised: {sorted(token_route - from_route)}"
    )
    routing = {(r.status, r.code) for r in raised if r.where == "app:_http_error"}  # any path
    assert readyz <= from_readyz | routing, f"documented, never raised: {sorted(readyz)}"


# --- live answers against the document --------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str  # "" is the token route
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth: bool = True
    status: int = 200
    code: str | None = None


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def probes() -> list[Probe]:
    room = f"openapi-{uuid.uuid4()}"
    big = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'
    agent = {"agents": [{"agent_name": "test-agent", "metadata": {"role": "assistant"}}]}
    return [
        Probe(
            "platform",
            "POST",
            "",
            _json({"room_name": room, "participant_name": "simulated_user", "language": "en"}),
        ),
        Probe(
            "livekit",
            "POST",
            "",
            _json(
                {
                    "room_name": room,
                    "participant_identity": "caller-1",
                    "participant_name": "Ann",
                    "participant_metadata": "{}",
                    "participant_attributes": {"tier": "gold"},
                    "room_config": agent,
                }
            ),
        ),
        Probe("camelCase", "POST", "", _json({"roomName": room, "roomConfig": agent})),
        Probe("empty body", "POST", "", b""),
        Probe("invalid_json", "POST", "", b"{not json", status=400, code="invalid_json"),
        Probe("invalid_body", "POST", "", b"[1, 2]", status=400, code="invalid_body"),
        Probe(
            "invalid_field", "POST", "", _json({"room_name": 5}), status=400, code="invalid_field"
        ),
        Probe(
            "conflicting_fields",
            "POST",
            "",
            _json({"room_name": "a", "roomName": "b"}),
            status=400,
            code="conflicting_fields",
        ),
        Probe(
            "invalid_room_name",
            "POST",
            "",
            _json({"room_name": "r" * (MAX_ROOM_NAME + 1)}),
            status=400,
            code="invalid_room_name",
        ),
        Probe(
            "invalid_participant_name",
            "POST",
            "",
            _json({"participant_name": "  "}),
            status=400,
            code="invalid_participant_name",
        ),
        Probe(
            "invalid_participant_identity",
            "POST",
            "",
            _json({"participant_identity": "a\u200bb"}),
            status=400,
            code="invalid_participant_identity",
        ),
        Probe(
            "invalid_agent_name",
            "POST",
            "",
            _json({"room_config": {"agents": [{"agent_name": ""}]}}),
            status=400,
            code="invalid_agent_name",
        ),
        Probe("no key", "POST", "", b"{}", auth=False, status=401, code="unauthorized"),
        Probe(
            "wrong key",
            "POST",
            "",
            b"{}",
            headers=(("X-API-Key", "not-a-key"),),
            auth=False,
            status=401,
            code="unauthorized",
        ),
        Probe(
            "agent_not_allowed",
            "POST",
            "",
            _json({"room_config": {"agents": [{"agent_name": "someone-else"}]}}),
            status=403,
            code="agent_not_allowed",
        ),
        Probe("not_found", "POST", "/livekit/tokens", b"{}", status=404, code="not_found"),
        Probe("method_not_allowed", "GET", "", status=405, code="method_not_allowed"),
        Probe("body_too_large", "POST", "", big, status=413, code="body_too_large"),
        Probe("healthz", "GET", "/healthz", auth=False),
        Probe("readyz", "GET", "/readyz", auth=False),
        Probe("openapi", "GET", OPENAPI_PATH, auth=False),
        Probe("metrics", "GET", METRICS_PATH),
        Probe("metrics without key", "GET", METRICS_PATH, auth=False, status=401),
        Probe(
            "healthz POST", "POST", "/healthz", auth=False, status=405, code="method_not_allowed"
        ),
    ]


def documented_operation(
    document: dict[str, Any], token_path: str, probe: Probe
) -> tuple[str, dict[str, Any]]:
    """The operation whose answers document this probe's (the token route's for a wrong path or
    method on it)."""
    path = probe.path or token_path
    if path in document["paths"] and probe.method.lower() in document["paths"][path]:
        return path, document["paths"][path][probe.method.lower()]
    if path not in document["paths"]:
        return token_path, document["paths"][token_path]["post"]
    (method,) = [m for m in document["paths"][path] if m in HTTP_METHODS]
    return path, document["paths"][path][method]


def check_header(
    document: dict[str, Any], name: str, spec: dict[str, Any], value: str | None
) -> None:
    spec = resolve(document, spec)
    if value is None:
        assert not spec.get("required"), f"required header {name} missing"
        return
    schema = spec["schema"]
    typed: Any = int(value) if schema.get("type") == "integer" else value
    validator(document, schema).validate(typed)


@pytest.mark.integration
def test_live_answers_match_the_document(token_server: TokenServer) -> None:
    served = httpx.get(token_server.base_url + OPENAPI_PATH, timeout=10)
    assert served.status_code == 200
    document = served.json()
    token_path = token_server.endpoint.removeprefix(token_server.base_url)
    problems = []
    seen_codes = set()
    for probe in probes():
        headers = {**dict(probe.headers), **(auth_headers(token_server) if probe.auth else {})}
        url = token_server.base_url + (probe.path or token_path)
        answer = httpx.request(probe.method, url, content=probe.body, headers=headers, timeout=30)
        where, operation = documented_operation(document, token_path, probe)
        label = f"{probe.name}: {probe.method} {probe.path or token_path} -> {answer.status_code}"
        if answer.status_code != probe.status:
            problems.append(f"{label}, expected {probe.status}: {answer.text[:200]}")
            continue
        documented = operation["responses"].get(str(answer.status_code))
        if documented is None:
            problems.append(f"{label}: status not documented for {where}")
            continue
        response = resolve(document, documented)
        for name, spec in response.get("headers", {}).items():
            try:
                check_header(document, name, spec, answer.headers.get(name))
            except (AssertionError, jsonschema.ValidationError, ValueError) as exc:
                problems.append(f"{label}: header {name}: {exc}")
        media_type = answer.headers.get("content-type", "").split(";")[0].strip()
        content = response.get("content", {})
        if media_type not in content:
            problems.append(f"{label}: content type {media_type!r} not in {sorted(content)}")
            continue
        if media_type == "application/json":
            body = answer.json()
            errors = sorted(
                validator(document, content[media_type]["schema"]).iter_errors(body),
                key=str,
            )
            problems += [f"{label}: {error.message} at {list(error.path)}" for error in errors]
            if probe.code is not None:
                seen_codes.add(body.get("error"))
                if body.get("error") != probe.code:
                    problems.append(f"{label}: error {body.get('error')!r}, not {probe.code!r}")
            if probe.code == "method_not_allowed" and answer.headers["allow"] not in body["detail"]:
                problems.append(f"{label}: detail {body['detail']!r} does not say what is allowed")
    assert not problems, "\n".join(problems)
    assert len(seen_codes) >= 12


def test_probes_cover_every_client_error_the_route_documents() -> None:
    """The live probes above reach each 4xx code of the token route a request can cause (499,
    the caller hanging up, is nobody's answer)."""
    document = openapi_document(documented_settings())
    documented = {
        code
        for status, code in documented_codes(document, documented_settings().path, "post")
        if 400 <= status < 499
    }
    probed = {probe.code for probe in probes() if probe.code}
    assert documented <= probed, sorted(documented - probed)


def test_every_status_code_key_is_a_three_digit_number() -> None:
    document = openapi_document(documented_settings())
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status in operation["responses"]:
                assert status.isdigit() and len(status) == 3, (path, method, status)


def test_render_is_stable_and_ascii() -> None:
    document = openapi_document(documented_settings())
    text = render(document)
    assert text.isascii()
    assert render(json.loads(text)) == text
    assert list(json.loads(text)) == sorted(document)  # keys are sorted
