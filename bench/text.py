"""Benchmark the valid-Unicode checks on the request path against the same work without them.

In one process, no server. First the hot write route end to end: two apps on one migrated
temp SQLite database, built alike but one without `JsonTextMiddleware`, each answering
`--appends` `POST /v1/sessions/{id}/messages` through an in-process ASGI client, interleaved;
printed: the median server-side time (`X-Process-Time`) of each and their ratio. Then the checks
alone: each case runs its checked and its unchecked variant interleaved, `--rounds` rounds of
`--number` calls, and prints the best round's time per call of each, the difference and the
ratio. Cases:

- `JsonTextMiddleware` around an ASGI app that reads the whole body and parses it (as FastAPI
  does) against that app alone, for a message append (about 100 bytes), a 46 KiB body of
  mixed-script metadata as `json.dumps` writes it (every non-ASCII character escaped, the worst
  case for the scan), and one with an escaped emoji (a surrogate pair: the one kind of real body
  decoded and walked);
- a WebSocket `publish` frame: `frames.decode` against `json.loads`;
- an event frame serialized with `broker.dumps` (lone surrogates replaced) against `json.dumps`,
  in ASCII and in mixed-script text;
- a JSON column read (`metadata` as SQLAlchemy writes it, non-ASCII escaped) with the engine's
  deserializer against `json.loads`, plain and with an emoji.

    .venv/bin/python bench/text.py [--appends 400] [--number 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
from starlette.types import Message, Receive, Scope, Send

from agenthub.app import create_app
from agenthub.config import Settings
from agenthub.core.middleware import JsonTextMiddleware
from agenthub.db import migrate
from agenthub.db.engine import _read_json
from agenthub.realtime.broker import dumps
from agenthub.realtime.frames import decode
from common import BENCH_SECRET, run_main, sqlite_database, versions_line

MIXED = "Grüße, 東京 — naïve café; Ελληνικά "  # Latin-1, CJK, Greek: a UCS-2 string


async def _reading_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the body to its end and parses it, as FastAPI does, then answers 204."""
    message = await receive()
    json.loads(message["body"])
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _asgi_call(app: Any, body: bytes, number: int) -> Callable[[], None]:
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/sessions/x/messages",
        "headers": [(b"content-type", b"application/json"), (b"host", b"bench")],
    }
    message: Message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> Message:
        return message

    async def send(_: Message) -> None:
        return None

    async def run() -> None:
        for _ in range(number):
            await app(scope, receive, send)

    def call() -> None:
        asyncio.run(run())

    return call


def _loop(function: Callable[[Any], Any], argument: Any, number: int) -> Callable[[], None]:
    def call() -> None:
        for _ in range(number):
            function(argument)

    return call


def _best(call: Callable[[], None], number: int) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) / number * 1e6


def measure(
    checked: Callable[[], None], plain: Callable[[], None], number: int, rounds: int
) -> tuple[float, float]:
    """The best round's µs per call of each variant, rounds interleaved."""
    best_checked = best_plain = float("inf")
    for _ in range(rounds):
        best_checked = min(best_checked, _best(checked, number))
        best_plain = min(best_plain, _best(plain, number))
    return best_checked, best_plain


async def append_times(appends: int, url: str, workdir: Path) -> tuple[float, float]:
    """The median server-side ms of a message append with and without the middleware."""
    settings = Settings(
        _env_file=None,
        database_url=url,
        secret_key=BENCH_SECRET,
        environment="test",
        log_level="WARNING",
        rate_limit_enabled=False,
        worker_enabled=False,
        password_time_cost=1,
        password_memory_kib=1024,
        files_dir=workdir / "files",
    )
    checked, plain = create_app(settings), create_app(settings)
    plain.user_middleware = [
        m for m in plain.user_middleware if cast(object, m.cls) is not JsonTextMiddleware
    ]
    async with (
        checked.router.lifespan_context(checked),
        plain.router.lifespan_context(plain),
        _client(checked) as first,
        _client(plain) as second,
    ):
        headers = await _signed_up(first)
        created = await first.post("/v1/sessions", json={"agent_type": "x"}, headers=headers)
        url = f"/v1/sessions/{created.json()['session']['id']}/messages"
        body = {"role": "user", "content": "And Porto? " * 6, "metadata": {"k": 1}}
        times: dict[httpx.AsyncClient, list[float]] = {first: [], second: []}
        for _ in range(appends):
            for client in (first, second):
                response = await client.post(url, json=body, headers=headers)
                times[client].append(float(response.headers["X-Process-Time"]) * 1000)
    return statistics.median(times[first]), statistics.median(times[second])


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


async def _signed_up(client: httpx.AsyncClient) -> dict[str, str]:
    email, password = f"bench-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(18)
    await client.post("/v1/auth/register", json={"email": email, "password": password})
    login = await client.post("/v1/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=400)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    number, rounds = args.number, args.rounds
    print(versions_line("valid-Unicode checks"))
    with sqlite_database() as (url, workdir):
        migrate.upgrade(url)
        with_check, without = asyncio.run(append_times(args.appends, url, workdir))
    print(
        f"message append, median server ms: {with_check:.3f} checked, {without:.3f} without "
        f"the middleware ({with_check / without:.3f}x)"
    )

    append = json.dumps({"role": "user", "content": "And Porto? " * 6, "metadata": {"k": 1}})
    metadata = json.dumps({"name": "p", "metadata": {f"k{i}": MIXED for i in range(400)}})
    emoji = json.dumps({"role": "user", "content": "Nice \U0001f600 " * 6})  # escaped pair
    publish = json.dumps({"type": "publish", "channel": "room:a", "data": {"text": MIXED * 3}})
    event: dict[str, Any] = {
        "type": "event",
        "channel": "room:a",
        "offset": 41,
        "epoch": "9f2c0a1b",
        "event": "room.message",
        "data": {"connection_id": "con_x", "user_id": "usr_x", "data": {"text": "hi " * 30}},
        "ts": "2026-12-07T12:00:00.000000Z",
    }
    mixed_event = {**event, "data": {**event["data"], "data": {"text": MIXED * 3}}}
    column = json.dumps({"tags": ["a", "b"], "note": MIXED})
    column_emoji = json.dumps({"note": "\U0001f600" + MIXED})
    middleware = JsonTextMiddleware(_reading_app)

    def raw_dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    cases: list[tuple[str, Callable[[], None], Callable[[], None], int]] = []
    for name, body in (
        (f"middleware, append ({len(append)} B)", append),
        (f"middleware, metadata ({len(metadata.encode()) // 1024} KiB)", metadata),
        (f"middleware, escaped emoji ({len(emoji)} B)", emoji),
    ):
        count = number // 10
        data = body.encode()
        cases.append(
            (
                name,
                _asgi_call(middleware, data, count),
                _asgi_call(_reading_app, data, count),
                count,
            )
        )
    cases += [
        (
            f"ws frame decode ({len(publish)} B)",
            _loop(decode, publish, number),
            _loop(json.loads, publish, number),
            number,
        ),
        (
            "event dumps, ASCII",
            _loop(dumps, event, number),
            _loop(raw_dumps, event, number),
            number,
        ),
        (
            "event dumps, mixed script",
            _loop(dumps, mixed_event, number),
            _loop(raw_dumps, mixed_event, number),
            number,
        ),
        (
            "json column read",
            _loop(_read_json, column, number),
            _loop(json.loads, column, number),
            number,
        ),
        (
            "json column read, emoji",
            _loop(_read_json, column_emoji, number),
            _loop(json.loads, column_emoji, number),
            number,
        ),
    ]

    print(f"{'case':<36} {'checked µs':>11} {'plain µs':>9} {'+µs':>6} {'ratio':>6}")
    for name, checked, plain, count in cases:
        with_check, without = measure(checked, plain, count, rounds)
        print(
            f"{name:<36} {with_check:>11.2f} {without:>9.2f} "
            f"{with_check - without:>6.2f} {with_check / without:>5.2f}x"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
