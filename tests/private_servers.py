"""PostgreSQL and Redis servers of a test's own, on spare ports, that fault tests stop and start
again (the shared ones are never touched). Import as `from private_servers import ...`."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from processes import free_port

POSTGRES_USER = "postgres"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when `CI` is set: fault tests must run there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class PrivatePostgres:
    """A PostgreSQL cluster (`initdb` + `pg_ctl`, run as the `postgres` user) in a directory of
    its own, on 127.0.0.1 only, with trust authentication and fsync off."""

    def __init__(self, bindir: Path, directory: Path, as_postgres: list[str]) -> None:
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.logfile = directory / "postgres.log"
        self.port = free_port()
        self._as_postgres = as_postgres

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_postgres, str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"{tool} {args[0]} failed: {done.stderr}\n{self.log()}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        """`pg_ctl start`; returns once the server accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.logfile), "-o", options
        )

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m <mode>`; returns once the server is gone."""
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""


def _postgres_bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


def _as_postgres() -> list[str] | None:
    """The command prefix that runs a program as the `postgres` user, if this process can."""
    try:
        postgres = pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        return None
    if os.geteuid() == postgres.pw_uid:
        return []
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", POSTGRES_USER, "--"]
    return None


@contextmanager
def postgres_cluster() -> Iterator[PrivatePostgres]:
    """A fresh, started cluster; stopped and deleted afterwards. Skips (fails in CI) where
    PostgreSQL's server binaries or the `postgres` user are missing."""
    bindir, prefix = _postgres_bindir(), _as_postgres()
    if bindir is None or prefix is None:
        unavailable("a private PostgreSQL needs /usr/lib/postgresql/*/bin and the postgres user")
    assert bindir is not None and prefix is not None
    directory = Path(tempfile.mkdtemp(prefix="agenthub-pg-"))
    postgres = pwd.getpwnam(POSTGRES_USER)
    os.chown(directory, postgres.pw_uid, postgres.pw_gid)
    server = PrivatePostgres(bindir, directory, prefix)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


class PrivateRedis:
    """A `redis-server` on a spare port that a test may stop and start again."""

    password = "s3cret-pw"

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--requirepass", self.password),
            *("--dir", str(self.directory)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        await client.ping()
                        return
                    except (RedisError, OSError):
                        await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self.process = None


@asynccontextmanager
async def redis_server(directory: Path) -> AsyncIterator[PrivateRedis]:
    """A started `redis-server` of the test's own; stopped afterwards. Skips (fails in CI)
    where `redis-server` is not installed."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    server = PrivateRedis(directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class CuttingProxy:
    """A TCP proxy on a spare port of 127.0.0.1 (`async with CuttingProxy(host, port)`) that
    can cut the connection carrying the next request (the client has sent it and reads the
    end of the stream instead of an answer) or hang: from `hang()` until `resume()` it accepts
    connections and reads what either side sends, but forwards nothing and closes nothing, as
    a server that stopped answering; `resume()` delivers what was held."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.cuts = 0
        self._cut_next = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def cut_next(self) -> None:
        self._cut_next = True

    def hang(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self.resume()
        self._server.close()
        handlers = list(self._handlers)
        for client in self._handlers.values():
            client.close()  # its handler reads the end of the stream and returns
        await asyncio.gather(*handlers)
        await self._server.wait_closed()

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: bool
    ) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            if cut and self._cut_next:
                self._cut_next = False
                self.cuts += 1
                return
            writer.write(data)
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        directions = {
            asyncio.create_task(self._forward(reader, upstream_writer, cut=True)),
            asyncio.create_task(self._forward(upstream_reader, writer, cut=False)),
        }
        try:
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for direction in directions:
                direction.cancel()
            await asyncio.gather(*directions, return_exceptions=True)
            for end in (writer, upstream_writer):
                end.close()
                with suppress(OSError):
                    await end.wait_closed()
            del self._handlers[task]
