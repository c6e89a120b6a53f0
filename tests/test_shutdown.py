"""SIGTERM to `agenthub serve` (embedded: SQLite, in-process worker) while uploads and jobs are
in flight (docs/operations.md): every request the server had accepted gets its complete answer, the
process exits 0 soon after, running jobs are either completed or back in the queue without the
interrupted attempt counted, and the next start completes every job, each exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agenthub.db.engine import Database
from jobs.worker_support import (
    assert_completed_exactly_once,
    enqueue_effects,
    job_rows,
    ledger,
    ledger_database,
    statuses,
    worker_env,
)
from processes import Server, server_process
from realtime_support import sign_up
from support import Account

pytestmark = pytest.mark.slow

UPLOADS = 20
UPLOAD_BYTES = 1024 * 1024
UPLOAD_CHUNKS = 32  # sent one by one, CHUNK_PAUSE apart: each upload takes ~3 s
CHUNK_PAUSE = 0.1
EFFECT_JOBS = 3
EFFECT_MS = 3000
LLM_JOBS = 3
LLM_PROMPT = "one two three four five six seven eight nine ten eleven twelve"
LLM_DELAY_MS = 250  # 11 pauses between 12 words: ~2.75 s
GRACE_SECONDS = 1
EXIT_WAIT = 60.0
SETTLE_WAIT = 60.0


def _multipart(name: str, content: bytes, boundary: str) -> bytes:
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode()


class SlowUpload:
    """A ~1 MB text file posted to `/v1/files` a chunk at a time, so it is still arriving
    when the server is told to stop."""

    def __init__(self, index: int) -> None:
        self.name = f"upload-{index}.txt"
        line = f"line of upload {index} ".encode()
        self.content = (line * (UPLOAD_BYTES // len(line) + 1))[:UPLOAD_BYTES]
        self.sha256 = hashlib.sha256(self.content).hexdigest()
        self.request_id = f"upload-{index}-{secrets.token_hex(4)}"
        self.started = asyncio.Event()  # the headers and a first chunk went out

    async def _chunks(self, body: bytes) -> AsyncIterator[bytes]:
        size = -(-len(body) // UPLOAD_CHUNKS)
        for offset in range(0, len(body), size):
            yield body[offset : offset + size]
            self.started.set()
            await asyncio.sleep(CHUNK_PAUSE)

    async def send(self, client: httpx.AsyncClient, account: Account) -> httpx.Response:
        boundary = secrets.token_hex(12)
        body = _multipart(self.name, self.content, boundary)
        headers = {
            **account.headers,
            "X-Request-ID": self.request_id,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(body)),
        }
        return await client.post("/v1/files", content=self._chunks(body), headers=headers)


async def _enqueue_llm_jobs(client: httpx.AsyncClient, account: Account) -> list[str]:
    job = {
        "kind": "llm.complete",
        "input": {"prompt": LLM_PROMPT, "runner": "echo", "options": {"delay_ms": LLM_DELAY_MS}},
    }
    ids = []
    for _ in range(LLM_JOBS):
        response = await client.post("/v1/jobs", json=job, headers=account.headers)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


async def _until(
    database: Database, done: Callable[[dict[str, int]], bool], wait: float
) -> dict[str, int]:
    """Job counts by status (both kinds of the test), polled until `done(counts)`."""
    async with asyncio.timeout(wait):
        while True:
            counts = await statuses(database, "llm.complete")
            for status, n in (await statuses(database)).items():
                counts[status] = counts.get(status, 0) + n
            if done(counts):
                return counts
            await asyncio.sleep(0.1)


async def _terminate(server: Server) -> tuple[int, float]:
    """SIGTERM; the exit code and the seconds it took."""
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(server.proc.wait, EXIT_WAIT)
    return code, time.monotonic() - began


def _handled(log: str) -> dict[str, int]:
    """The status the server answered, by request id, of every request its app handled
    (each has its access log line, whatever became of it)."""
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return {
        line["request_id"]: line["status"]
        for line in lines
        if line.get("event") in ("request", "slow_request")
    }


@dataclass
class Stopped:
    """What a test saw of a server stopped with uploads and jobs in flight."""

    account: Account
    effects: list[str]
    llm: list[str]
    uploads: list[SlowUpload]
    answers: list[httpx.Response | BaseException]
    code: int
    seconds: float
    log: str


async def _stop_in_flight(server: Server, database: Database) -> Stopped:
    """Start the jobs and the uploads, then SIGTERM once the server has every upload."""
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as client:
        account = await sign_up(server.http)
        effects = await enqueue_effects(database, EFFECT_JOBS, sleep_ms=EFFECT_MS)
        llm = await _enqueue_llm_jobs(client, account)
        await _until(database, lambda c: c.get("running") == EFFECT_JOBS + LLM_JOBS, 10)

        uploads = [SlowUpload(n) for n in range(UPLOADS)]
        sent = [asyncio.create_task(u.send(client, account)) for u in uploads]
        await asyncio.wait_for(asyncio.gather(*(u.started.wait() for u in uploads)), 10)
        # A request on a connection opened after the uploads' ones: once it is answered, the
        # server has accepted their connections and read their headers (in the usual case;
        # the log tells for sure which requests the server had).
        async with httpx.AsyncClient(base_url=server.http) as other:
            assert (await other.get("/v1/health/live")).status_code == 200
        code, seconds = await _terminate(server)
        answers = await asyncio.gather(*sent, return_exceptions=True)
    return Stopped(account, effects, llm, uploads, answers, code, seconds, server.log.read_text())


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A SQLite database with the `job_effects` ledger of `test.effect` jobs."""
    with ledger_database("sqlite", tmp_path) as database_url:
        yield database_url


async def test_sigterm_with_uploads_and_jobs_in_flight_loses_nothing(
    url: str, tmp_path: Path
) -> None:
    env = worker_env(
        url,
        AGENTHUB_JOB_GRACE_SECONDS=str(GRACE_SECONDS),
        AGENTHUB_LOG_LEVEL="INFO",  # the access log tells which requests the server had
        AGENTHUB_WORKER_CONCURRENCY="8",
        AGENTHUB_FILES_DIR=str(tmp_path / "files"),
    )
    async with ledger(url) as database:
        with server_process(tmp_path, env) as server:
            stopped = await _stop_in_flight(server, database)
        handled = _handled(stopped.log)
        accepted = [u for u in stopped.uploads if u.request_id in handled]
        after_stop = {**await job_rows(database), **await job_rows(database, "llm.complete")}
        print(
            f"\nserve exited {stopped.code} {stopped.seconds:.2f} s after SIGTERM with "
            f"{len(accepted)} of {UPLOADS} uploads accepted and {len(after_stop)} jobs in "
            f"flight (grace {GRACE_SECONDS} s); jobs then: "
            f"{sorted(r.status for r in after_stop.values())}"
        )
        assert stopped.code == 0, stopped.log
        assert "Traceback" not in stopped.log, stopped.log
        for upload, answer in zip(stopped.uploads, stopped.answers, strict=True):
            if upload.request_id in handled:
                assert isinstance(answer, httpx.Response), (upload.request_id, answer)
                assert answer.status_code == 201, answer.text
            else:  # never reached the app: refused, not cut off half-way
                assert isinstance(answer, httpx.TransportError), answer
        assert len(accepted) >= UPLOADS // 2, f"only {len(accepted)} uploads were in flight"
        for row in after_stop.values():
            assert row == ("queued", 0, None) or row.status == "completed", row

        with server_process(tmp_path, env) as again:
            await _until(database, lambda c: set(c) == {"completed"}, SETTLE_WAIT)
            async with httpx.AsyncClient(base_url=again.http, timeout=30) as client:
                headers = stopped.account.headers
                files = await client.get("/v1/files", params={"limit": 50}, headers=headers)
                jobs = [await client.get(f"/v1/jobs/{i}", headers=headers) for i in stopped.llm]
        done = [job.json() for job in jobs]
        assert await assert_completed_exactly_once(database, stopped.effects) == 0
        assert [(j["status"], j["attempts"], j["result"]["text"]) for j in done] == [
            ("completed", 1, LLM_PROMPT)
        ] * LLM_JOBS
        stored = {(f["filename"], f["size"], f["sha256"]) for f in files.json()["data"]}
        assert stored == {(u.name, UPLOAD_BYTES, u.sha256) for u in accepted}
