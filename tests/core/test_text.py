"""Text is valid Unicode (issue 15): a lone UTF-16 surrogate in a request is a 422 naming the
field, wherever it hides (typed fields, free-form metadata, preferences and options, form
fields, config files), on a real server over SQLite and over PostgreSQL; a value stored before
the check (SQLite keeps whatever JSON text it is given) reads back with U+FFFD; a body nested
deeper than the parser goes is a 400, and nothing of it reaches the log as a traceback. The
realtime side is in tests/realtime/test_text.py."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenthub.core.text import may_hold_surrogate, surrogate_path, valid_text
from conftest import Deployment
from processes import Server
from realtime_support import sign_up
from support import Account, assert_problem, error_fields

pytestmark = pytest.mark.slow

LONE = "\ud800"
# What a client sends for `{"x": "\ud800"}`: JSON's escape (as `json.dumps` writes it).
LONE_ESCAPED = json.dumps({"x": LONE})
Request = Callable[[httpx.AsyncClient, Account], Awaitable[httpx.Response]]


@dataclass
class Api:
    """A client of the module's server and one signed-up user with a session and an agent."""

    client: httpx.AsyncClient
    account: Account
    session_id: str
    agent_id: str
    project_id: str

    async def send(self, method: str, path: str, body: str) -> httpx.Response:
        """`body` as it is (raw JSON text) with a JSON content type."""
        headers = {**self.account.headers, "Content-Type": "application/json"}
        return await self.client.request(method, path, content=body.encode(), headers=headers)


async def created(response: Awaitable[httpx.Response]) -> dict[str, Any]:
    done = await response
    assert done.status_code == 201, done.text
    body: dict[str, Any] = done.json()
    return body


@pytest.fixture
async def rest(server: Server, api: httpx.AsyncClient) -> AsyncIterator[Api]:
    account = await sign_up(server.http)
    headers = account.headers
    session = await created(api.post("/v1/sessions", json={"agent_type": "x"}, headers=headers))
    agent = await created(
        api.post("/v1/agents", json={"name": "A", "type": "primary"}, headers=headers)
    )
    project = await created(api.post("/v1/projects", json={"name": "P"}, headers=headers))
    yield Api(api, account, session["session"]["id"], agent["id"], project["id"])


def with_lone(template: str) -> str:
    """`template` with `LONE` spelled as JSON's escape for it."""
    return template.replace("LONE", "\\ud800")


# Each free-form JSON field, a typed field and a key: (method, path, body, the field named).
JSON_CASES = [
    ("POST", "/v1/projects", '{"name": "p", "metadata": {"x": "LONE"}}', "metadata.x"),
    ("PATCH", "/v1/projects/{project}", '{"metadata": {"a": [1, "LONE"]}}', "metadata.a.1"),
    ("POST", "/v1/sessions", '{"agent_type": "x", "metadata": {"x": "LONE"}}', "metadata.x"),
    ("PATCH", "/v1/sessions/{session}", '{"metadata": {"x": "LONE"}}', "metadata.x"),
    (
        "POST",
        "/v1/sessions/{session}/messages",
        '{"role": "user", "content": "hi", "metadata": {"xLONE": 1}}',
        "metadata.x\ufffd",
    ),
    ("POST", "/v1/sessions/{session}/messages", '{"role": "user", "content": "LONE"}', "content"),
    ("PATCH", "/v1/user/profile", '{"preferences": {"theme": "LONE"}}', "preferences.theme"),
    (
        "POST",
        "/v1/agents",
        '{"name": "a", "type": "primary", "options": {"x": {"y": "LONE"}}}',
        "options.x.y",
    ),
    ("PATCH", "/v1/agents/{agent}", '{"options": {"x": "LONE"}}', "options.x"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), JSON_CASES)
async def test_a_lone_surrogate_in_a_json_body_is_422_naming_the_field(
    rest: Api, method: str, path: str, body: str, field: str
) -> None:
    url = path.format(project=rest.project_id, session=rest.session_id, agent=rest.agent_id)
    problem = assert_problem(await rest.send(method, url, with_lone(body)), 422)
    assert error_fields(problem) == {field}
    assert "not valid Unicode" in problem["detail"]
    # The surrogate alone made it a 422: the same request without it succeeds.
    accepted = await rest.send(method, url, body.replace("LONE", "ok"))
    assert accepted.is_success, accepted.text


async def test_surrogates_in_other_spellings_are_refused_and_pairs_kept(rest: Api) -> None:
    headers = {**rest.account.headers, "Content-Type": "application/json"}
    refused = {
        # UTF-8's encoding of a surrogate, which Python's JSON decoder would let through.
        b'{"name": "p", "metadata": {"x": "\xed\xa0\x80"}}': "metadata.x",
        # JSON decoders detect UTF-16.
        '{"name": "p", "metadata": {"x": "\\ud800"}}'.encode("utf-16"): "metadata.x",
        # The body itself is the string.
        b'"\\ud800"': "body",
    }
    for raw, field in refused.items():
        response = await rest.client.post("/v1/projects", content=raw, headers=headers)
        assert error_fields(assert_problem(response, 422)) == {field}, raw
    # An escaped backslash then "ud800" is plain text, and an escaped pair a real character.
    body = '{"name": "\\\\ud800", "metadata": {"emoji": "\\ud83d\\ude00"}}'
    project = await created(rest.send("POST", "/v1/projects", body))
    assert (project["name"], project["metadata"]) == ("\\ud800", {"emoji": "\U0001f600"})


async def test_form_metadata_and_config_files_are_checked_too(rest: Api) -> None:
    headers = rest.account.headers
    upload = await rest.client.post(
        "/v1/files",
        files=[("files", ("a.txt", b"hello", "text/plain"))],
        data={"metadata": LONE_ESCAPED},
        headers=headers,
    )
    assert error_fields(assert_problem(upload, 422)) == {"metadata.x"}
    for name, content in (
        ("agent.json", with_lone('{"runner": "echo", "options": {"x": "LONE"}}').encode()),
        ("agent.yaml", b'runner: echo\noptions:\n  x: "\\U0000D800"\n'),
    ):
        response = await rest.client.post(
            f"/v1/agents/{rest.agent_id}/config",
            files={"file": (name, content, "application/octet-stream")},
            headers=headers,
        )
        assert error_fields(assert_problem(response, 422)) == {"file.options.x"}, name


async def test_query_and_path_cannot_carry_a_surrogate(rest: Api) -> None:
    """Percent-encoded surrogate bytes in a URL decode to U+FFFD: never a server error."""
    headers = rest.account.headers
    listed = await rest.client.get("/v1/files?q=%ED%A0%80", headers=headers)
    assert listed.status_code == 200, listed.text
    missing = await rest.client.get("/v1/projects/prj_%ED%A0%80", headers=headers)
    assert_problem(missing, 404)


async def test_a_body_nested_too_deep_is_400_without_a_traceback(server: Server, rest: Api) -> None:
    logged = server.log.stat().st_size
    deep = '{"name": "p", "metadata": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    problem = assert_problem(await rest.send("POST", "/v1/projects", deep), 400)
    assert problem["type"].endswith("/malformed-json"), problem
    assert "nested too deeply" in problem["detail"]
    assert (await rest.client.get("/v1/user/profile", headers=rest.account.headers)).is_success
    assert "Traceback" not in server.log.read_text()[logged:]


async def test_a_surrogate_already_stored_reads_back_replaced(
    deployment: Deployment, rest: Api
) -> None:
    """A value stored before bodies were checked (SQLite and PostgreSQL's `json` columns keep
    the text they are given) is read back with U+FFFD, by the row's own route and by a write
    that returns it."""
    stored = json.dumps({"x": LONE, "ok": "\U0001f600"})  # {"x": "\ud800", ...}: escaped
    database = deployment.env["AGENTHUB_DATABASE_URL"]
    if deployment.backend == "memory":
        with closing(sqlite3.connect(database.removeprefix("sqlite+aiosqlite:///"))) as db:
            db.execute("UPDATE projects SET metadata = ? WHERE id = ?", (stored, rest.project_id))
            db.commit()
    else:
        db = await asyncpg.connect(database.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await db.execute(
                "UPDATE projects SET metadata = $1::json WHERE id = $2", stored, rest.project_id
            )
        finally:
            await db.close()
    url = f"/v1/projects/{rest.project_id}"
    headers = rest.account.headers
    for response in (
        await rest.client.get(url, headers=headers),
        await rest.client.patch(url, json={"name": "renamed"}, headers=headers),
        await rest.client.get("/v1/projects", headers=headers),
    ):
        assert response.status_code == 200, response.text
        body = response.json()
        project = body["data"][0] if "data" in body else body
        assert project["metadata"] == {"x": "\ufffd", "ok": "\U0001f600"}


# -- the quick scan in front of the full check -------------------------------------------------

TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=8)  # with surrogates
VALUES = st.recursive(
    st.none() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(VALUES, st.booleans(), st.sampled_from(["utf-8", "utf-16", "utf-32"]))
def test_the_quick_scan_never_misses_a_surrogate(value: Any, ascii_only: bool, codec: str) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    body = text.encode(codec, "surrogatepass")
    if surrogate_path(json.loads(body)) is not None:
        assert may_hold_surrogate(body)
        # Text decoded from UTF-8 cannot hold a surrogate itself: only JSON's escape counts.
        assert may_hold_surrogate(text) or not ascii_only
    repaired = valid_text(text)
    repaired.encode()  # valid Unicode: it encodes
    assert (repaired == text) is (ascii_only or surrogate_path(value) is None)


def test_the_quick_scan_passes_plain_bodies_and_the_check_goes_deep() -> None:
    # é as UTF-8 and escaped, a newline escape, U+D7FF (the last code point before surrogates)
    for body in (b'{"name": "caf\xc3\xa9", "x": "\\u00e9\\n"}', b'{"k": "\xed\x9f\xbf"}'):
        assert not may_hold_surrogate(body)
    assert surrogate_path({"a": [{"b": "ok"}, {"c": "x" + LONE}]}) == ("a", 1, "c")
    deep: Any = "x" + LONE
    for _ in range(5000):
        deep = [deep]
    assert surrogate_path(deep) == (0,) * 5000
    assert valid_text("a" + LONE + "b") == "a\ufffdb"
