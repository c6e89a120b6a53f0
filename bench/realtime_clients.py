"""The client processes of `bench/realtime.py`.

The parent drives each client process over a pipe: one command, one reply. A process (uvloop)
holds many connections, each driven by the `websockets` Sans-I/O protocol straight from its
transport's callbacks (`Subscriber`: no task per connection, so the clients take as little of
the shared CPUs as possible); it subscribes them, checks that every event of a run arrives once
and in order, and reports the publish-to-receive latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import signal
import sys
import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from typing import Any, cast

import uvloop
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from realtime_common import Compression, dumps, process_cpu_seconds, raise_nofile_limit

HEARTBEAT_FRAME = '{"type":"heartbeat"}'
OPEN_CONCURRENCY = 25  # handshakes in flight per client process
IDLE_TIMEOUT_S = 15.0  # a run ends when every event arrived or nothing arrived for this long


@dataclass(frozen=True)
class Open:
    """Open `count` connections; each waits for `connected`, subscribes, waits for `subscribed`."""

    url: str
    count: int
    channel: str


@dataclass(frozen=True)
class Opened:
    opened: int
    failed: int
    first_error: str


@dataclass(frozen=True)
class Arm:
    """Expect `publications` events of run `run` on every open connection."""

    run: int
    publications: int


@dataclass(frozen=True)
class Collect:
    """Wait until run `run` is complete (or stalls), then report it."""

    run: int


@dataclass(frozen=True)
class Collected:
    received: int
    expected: int
    disordered: int  # duplicates and out-of-order events
    latencies: bytes  # array("d") of seconds, one per delivery
    first: float  # time.time() of the first and last delivery
    last: float
    closed: dict[int, int]  # close codes of connections the server closed, and how many
    errors: list[str]  # the first few failures of reader tasks


@dataclass(frozen=True)
class CloseAll:
    pass


@dataclass(frozen=True)
class Stop:
    pass


Command = Open | Arm | Collect | CloseAll | Stop
Reply = Opened | Collected | None


@dataclass
class RunStats:
    expected: int
    next_seq: list[int]
    latencies: array[float] = field(default_factory=lambda: array("d"))
    received: int = 0
    disordered: int = 0
    first: float = math.nan
    last: float = math.nan
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Subscriber(asyncio.Protocol):
    """One client connection, driven by the websockets Sans-I/O protocol straight from the
    transport's callbacks: no reader task and no message queue, so a client process costs
    as little as possible per frame (the clients share the CPUs with the server)."""

    def __init__(self, worker: ClientWorker, url: str, channel: str, compression: Compression):
        extensions = enable_client_permessage_deflate(None) if compression else None
        self.worker = worker
        self.index = -1  # set once subscribed
        self.protocol = ClientProtocol(parse_uri(url), extensions=extensions, max_size=2**20)
        self.subscribe = dumps({"type": "subscribe", "id": "1", "channel": channel})
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.protocol.send_request(self.protocol.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    try:
                        self.text(event.data)
                    except Exception as exc:  # reported; the connection's run cannot complete
                        self.worker.errors.append(f"{type(exc).__name__}: {exc}")
                        self.fail(exc)
                        return
            elif self.protocol.handshake_exc is not None:
                self.fail(self.protocol.handshake_exc)
        self.flush()
        if self.protocol.close_expected() and self.transport is not None:
            self.transport.close()

    def text(self, data: bytes | bytearray | memoryview) -> None:
        frame = json.loads(data.tobytes() if isinstance(data, memoryview) else data)
        kind = frame.get("type")
        if kind == "event":
            if frame.get("event") == "room.message" and self.index >= 0:
                self.worker.delivered(self.index, frame["data"]["data"])
        elif kind == "heartbeat":
            self.send(HEARTBEAT_FRAME)
        elif kind == "connected":
            self.send(self.subscribe)
        elif kind == "subscribed":
            if not self.opened.done():
                self.opened.set_result(None)
        elif kind == "error" and not self.opened.done():
            self.fail(RuntimeError(f"refused: {frame}"))

    def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self.flush()

    def flush(self) -> None:
        if self.transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        if not self.opened.done():
            close = self.protocol.close_rcvd
            why = (
                f"close frame {close.code} {close.reason!r}" if close else f"no close frame ({exc})"
            )
            self.opened.set_exception(ConnectionError(f"closed before `subscribed`: {why}"))
        if not self.lost.done():
            self.lost.set_result(None)
        self.worker.lost(self)

    async def close(self) -> None:
        if self.transport is None or self.lost.done():
            return
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self.flush()
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), 5)
        except TimeoutError:
            self.transport.abort()


class ClientWorker:
    """One client process: many `Subscriber` connections, driven over a pipe by the parent."""

    def __init__(self, pipe: Pipe[Reply, Command], compression: Compression) -> None:
        self.pipe = pipe
        self.compression: Compression = compression
        self.connections: list[Subscriber] = []
        self.runs: dict[int, RunStats] = {}
        self.closed: dict[int, int] = {}
        self.errors: list[str] = []
        self.closing = False

    async def run(self) -> None:
        while True:
            command = await asyncio.to_thread(self.pipe.recv)
            match command:
                case Open():
                    self.pipe.send(await self.open(command))
                case Arm(run=run, publications=count):
                    n = len(self.connections)
                    self.runs[run] = RunStats(expected=count * n, next_seq=[0] * n)
                    self.pipe.send(None)
                case Collect(run=run):
                    self.pipe.send(await self.collect(run))
                case CloseAll():
                    await self.close_all()
                    self.pipe.send(None)
                case Stop():
                    await self.close_all()
                    return

    async def open(self, command: Open) -> Opened:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        uri = parse_uri(command.url)

        async def open_one() -> Subscriber:
            async with gate:
                subscriber = Subscriber(self, command.url, command.channel, self.compression)
                await loop.create_connection(lambda: subscriber, uri.host, uri.port)
                try:
                    await asyncio.wait_for(asyncio.shield(subscriber.opened), 60)
                except BaseException:
                    await subscriber.close()
                    raise
                return subscriber

        outcomes = await asyncio.gather(
            *(open_one() for _ in range(command.count)), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for outcome in outcomes:
            if isinstance(outcome, Subscriber):
                outcome.index = len(self.connections)
                self.connections.append(outcome)
        first_error = f"{type(errors[0]).__name__}: {errors[0]}" if errors else ""
        return Opened(command.count - len(errors), len(errors), first_error)

    def lost(self, subscriber: Subscriber) -> None:
        """A connection ended; unless we closed it, count its close code and end the runs."""
        if self.closing or subscriber.index < 0:
            return
        code = subscriber.protocol.close_code or -1
        self.closed[code] = self.closed.get(code, 0) + 1
        for stats in self.runs.values():
            stats.done.set()  # the run cannot complete any more

    def delivered(self, index: int, body: dict[str, Any]) -> None:
        stats = self.runs.get(body["run"])
        if stats is None:
            return
        now = time.time()
        stats.latencies.append(now - body["t"])
        if stats.received == 0:
            stats.first = now
        stats.last = now
        stats.received += 1
        seq = body["seq"]
        if seq != stats.next_seq[index]:
            stats.disordered += 1
        stats.next_seq[index] = seq + 1
        if stats.received >= stats.expected:
            stats.done.set()

    async def collect(self, run: int) -> Collected:
        stats = self.runs[run]
        seen = -1
        while not stats.done.is_set() and stats.received != seen:
            seen = stats.received
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stats.done.wait(), IDLE_TIMEOUT_S)
        del self.runs[run]
        return Collected(
            received=stats.received,
            expected=stats.expected,
            disordered=stats.disordered,
            latencies=stats.latencies.tobytes(),
            first=stats.first,
            last=stats.last,
            closed=dict(self.closed),
            errors=list(self.errors[:3]),
        )

    async def close_all(self) -> None:
        self.closing = True
        gate = asyncio.Semaphore(OPEN_CONCURRENCY * 5)

        async def close(subscriber: Subscriber) -> None:
            async with gate:
                await subscriber.close()

        await asyncio.gather(*(close(s) for s in self.connections), return_exceptions=True)
        self.connections, self.closed = [], {}
        self.closing = False


def client_process(pipe: Pipe[Reply, Command], compression: Compression) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with Stop or terminate()
    raise_nofile_limit()
    uvloop.run(ClientWorker(pipe, compression).run())


@dataclass
class Clients:
    """The client processes and their pipes."""

    processes: list[BaseProcess]
    pipes: list[Pipe[Command, Reply]]
    retried: int = 0  # connections that failed to open and were opened again

    def ask(self, commands: Sequence[Command]) -> list[Reply]:
        """Send one command to each process (in parallel), then gather the replies."""
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def ask_all(self, command: Command) -> list[Reply]:
        return self.ask([command] * len(self.pipes))

    def open(self, url: str, total: int, channel: str) -> None:
        """Open `total` connections spread over the processes. Failed ones are retried once,
        and reported; a second failure ends the benchmark."""
        shares = [total // len(self.pipes) + (i < total % len(self.pipes)) for i in self.indexes]
        for attempt in range(2):
            replies = self.ask([Open(url, share, channel) for share in shares])
            opened = [r for r in replies if isinstance(r, Opened)]
            shares = [r.failed for r in opened]
            if not any(shares):
                return
            error = next(r.first_error for r in opened if r.failed)
            message = f"{sum(shares)} of {total} connections failed to open: {error}"
            if attempt:
                raise RuntimeError(message)
            print(f"  !!! {message}; retrying them", file=sys.stderr, flush=True)
            self.retried += sum(shares)

    @property
    def indexes(self) -> range:
        return range(len(self.pipes))

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(p.pid) for p in self.processes if p.pid is not None)


@contextmanager
def client_processes(count: int, compression: Compression) -> Iterator[Clients]:
    ctx = mp.get_context("spawn")
    processes: list[BaseProcess] = []
    pipes: list[Pipe[Command, Reply]] = []
    try:
        for _ in range(count):
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(target=client_process, args=(child_end, compression))
            process.start()
            child_end.close()
            processes.append(process)
            pipes.append(parent_end)
        yield Clients(processes, pipes)
    finally:
        for pipe, child in zip(pipes, processes, strict=False):
            with contextlib.suppress(OSError, ValueError):
                if child.is_alive():
                    pipe.send(Stop())
            child.join(timeout=20)
            if child.is_alive():
                child.terminate()
                child.join()
