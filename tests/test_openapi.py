"""Property-based run of schemathesis over every operation of the app's own OpenAPI document.

Each operation gets generated requests (schemathesis' coverage phase of boundary values, then a
few random valid and invalid ones), sent authenticated as a real user (an administrator for
`/v1/admin/*`), on SQLite and on PostgreSQL. Every response must be free of server errors and
match the document: a documented status code, the documented media type, a body valid against
the documented schema.

Hypothesis never draws a lone UTF-16 surrogate for a string (UTF-8 cannot encode one), but JSON
can spell one (`"\\ud800"`) and a server must refuse it: the `flatmap_body` hook puts one into a
string or key of about half of the JSON bodies. Query and path parameters cannot carry one (a
URL's percent-escapes decode to U+FFFD), and multipart parts are strict UTF-8 but for the JSON
in a file's `metadata` field; tests/core/test_text.py covers those.

The published document gives every operation a `default` problem response, which would make
any status code "documented"; the run checks against a copy without it, so every status code
an operation returns must be listed for that operation.

Requests go through schemathesis' in-process ASGI client, which runs the app on an event loop
of its own; the app of each backend is therefore built once per module, and its users are
created through the API by a separate, short-lived app over the same database.
"""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agenthub.app import create_app
from agenthub.auth import service
from agenthub.config import Settings
from agenthub.core.text import surrogate_path
from conftest import asgi_client, empty_tables, make_settings
from support import PASSWORD

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Generous limits: the run logs in and registers many times within a minute.
OVERRIDES: dict[str, Any] = {
    "login_limit_ip": "10000/minute",
    "login_limit_account": "10000/minute",
    "rate_limit_user": "100000/minute",
    "rate_limit_ip": "100000/minute",
}
# Deleting the account would log the test user out for every later case; tested on its own.
DELETE_ACCOUNT = ("DELETE", "/v1/user")
# Logging out with the user's bearer token would end its login for every later case: the
# operation is called without it (tests/auth covers the bearer logout).
LOGOUT = ("POST", "/v1/auth/logout")
# An SSE stream never ends, so a generated call would never return; tests/realtime covers it.
EVENT_STREAM = ("GET", "/v1/events")
METHODS = {"get", "put", "post", "patch", "delete"}
# schemathesis' ASGI client runs every app on one event loop thread, kept until the process exits
# with its loop's executor threads.
pytestmark = pytest.mark.keeps_threads("asyncio-portal-", "asyncio_")


def _document() -> dict[str, Any]:
    """The OpenAPI document as clients download it (building it needs no database)."""
    scratch = Path(tempfile.gettempdir()) / "agenthub-openapi-document"
    app = create_app(make_settings("sqlite+aiosqlite://", scratch))
    document: dict[str, Any] = app.openapi()
    return document


def _without_default(document: dict[str, Any]) -> dict[str, Any]:
    strict = copy.deepcopy(document)
    for item in strict["paths"].values():
        for method, operation in item.items():
            if method in METHODS:
                operation["responses"].pop("default", None)
    return strict


DOCUMENT = _document()
# A fixed seed keeps the run reproducible and fast; for a deeper local search, set
# OPENAPI_FUZZ_SEED to explore other inputs and OPENAPI_FUZZ_EXAMPLES for more of them.
SEED = int(os.environ.get("OPENAPI_FUZZ_SEED", "20261123"))
EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "5"))
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "with-security-parameters": False},
        "phases": {"coverage": {"enabled": True}, "stateful": {"enabled": False}},
    }
)
schema = (
    schemathesis.openapi.from_dict(_without_default(DOCUMENT), config=CONFIG)
    .exclude(method=DELETE_ACCOUNT[0], path=DELETE_ACCOUNT[1])
    .exclude(method=EVENT_STREAM[0], path=EVENT_STREAM[1])
)

LONE_SURROGATES = st.characters(categories=["Cs"])


def _strings(value: Any) -> int:
    """How many strings and keys a decoded JSON value holds."""
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        return sum(1 + _strings(child) for child in value.values())
    if isinstance(value, list):
        return sum(_strings(child) for child in value)
    return 0


def _spliced(value: Any, slot: int, char: str) -> tuple[Any, int]:
    """`value` with `char` appended to its `slot`-th string or key (in `_strings` order), and
    what is left of `slot` past `value`."""
    if isinstance(value, str):
        return (value + char if slot == 0 else value), slot - 1
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, child in value.items():
            name = key + char if slot == 0 else key
            result[name], slot = _spliced(child, slot - 1, char)
        return result, slot
    if isinstance(value, list):
        items = []
        for child in value:
            item, slot = _spliced(child, slot, char)
            items.append(item)
        return items, slot
    return value, slot


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """A JSON body as generated, or with a lone surrogate in one of its strings or keys."""
    json_only = context.operation.get_request_payload_content_types() == ["application/json"]
    count = _strings(body) if json_only else 0
    if not count:
        return st.just(body)
    spliced = st.tuples(st.integers(0, count - 1), LONE_SURROGATES).map(
        lambda choice: _spliced(body, *choice)[0]
    )
    return st.just(body) | spliced


@dataclass
class Api:
    """The app of one backend and bearer headers of users registered through the API."""

    app: FastAPI
    user: dict[str, str]
    admin: dict[str, str]


async def _login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _users(app_settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    user_email = f"schemathesis-{secrets.token_hex(4)}@example.com"
    admin_email = f"schemathesis-admin-{secrets.token_hex(4)}@example.com"
    app = create_app(app_settings)
    async with LifespanManager(app), asgi_client(app) as client:
        created = await client.post(
            "/v1/auth/register", json={"email": user_email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        # Administrators exist only through the CLI (`agenthub user create --admin`).
        async with app.state.database.transaction() as db:
            await service.create_user(
                db, app.state.hasher, email=admin_email, password=PASSWORD, is_admin=True
            )
        return await _login(client, user_email), await _login(client, admin_email)


async def _empty(app_settings: Settings) -> None:
    app = create_app(app_settings)
    async with LifespanManager(app):
        await empty_tables(app)


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    app_settings = make_settings(database_url, tmp_path_factory.mktemp("openapi"), **OVERRIDES)
    user, admin = asyncio.run(_users(app_settings))
    try:
        yield Api(app=create_app(app_settings), user=user, admin=admin)
    finally:
        # Ends the lifespans schemathesis started, closing their engines on its own loop.
        asgi.shutdown_lifespans()
        asyncio.run(_empty(app_settings))


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_operation_conforms(case: schemathesis.Case[Any], api: Api) -> None:
    headers = api.admin if case.path.startswith("/v1/admin/") else api.user
    if (case.method.upper(), case.path) == LOGOUT:
        headers = {}
    case.call_and_validate(app=api.app, headers=headers, checks=CHECKS)


def test_run_covers_every_operation() -> None:
    documented = {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }
    assert {DELETE_ACCOUNT, EVENT_STREAM} <= documented
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    covered = {(operation.method.upper(), operation.path) for operation in operations}
    assert covered == documented - {DELETE_ACCOUNT, EVENT_STREAM}


def test_json_bodies_carry_lone_surrogates() -> None:
    operation = schema["/v1/projects"]["POST"]
    case = find(
        operation.as_strategy(),
        lambda case: surrogate_path(case.body) is not None,
        settings=settings(database=None, suppress_health_check=list(HealthCheck)),
    )
    assert isinstance(case.body, dict)


def test_every_operation_documents_problem_errors() -> None:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses = operation["responses"]
            assert "default" in responses, (method, path)
            for code, response in responses.items():
                if code == "default" or code.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (code, path)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(responses), (method, path)


async def test_delete_account_conforms(client: httpx.AsyncClient) -> None:
    email = f"leaving-{secrets.token_hex(4)}@example.com"
    created = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201
    headers = await _login(client, email)
    operation = schemathesis.openapi.from_dict(_without_default(DOCUMENT))[DELETE_ACCOUNT[1]][
        DELETE_ACCOUNT[0]
    ]
    case = operation.Case(headers=headers)

    deleted = await client.request(DELETE_ACCOUNT[0], DELETE_ACCOUNT[1], headers=headers)
    assert deleted.status_code == 204
    case.validate_response(deleted, checks=CHECKS)

    again = await client.request(DELETE_ACCOUNT[0], DELETE_ACCOUNT[1], headers=headers)
    assert again.status_code == 401
    case.validate_response(again, checks=CHECKS)
