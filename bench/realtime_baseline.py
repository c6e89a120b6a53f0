"""The baseline server of `bench/realtime.py`: a bare `websockets.asyncio.server.serve` process.

It sends the same `connected`, `subscribed` and `published` frames as agenthub's `/v1/ws` and,
for each publish, builds the same event frame and hands it to `websockets.broadcast` for the
channel's connections: no hub, no outbox, no ASGI. `baseline_process` runs it in its own process
(uvloop), as

    .venv/bin/python bench/realtime_baseline.py --port P [--compression deflate|none]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

from common import free_port, log_tail
from realtime_common import Compression, dumps, raise_nofile_limit

STARTUP_TIMEOUT_S = 30.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def baseline_server(port: int, compression: Compression) -> None:
    """Accept and hold connections; answer subscribe/publish/heartbeat; broadcast events."""
    channels: dict[str, set[ServerConnection]] = {}
    offsets: dict[str, int] = {}
    epoch = secrets.token_hex(4)
    user_id = "usr_baseline"

    async def handler(ws: ServerConnection) -> None:
        connection_id = f"con_{secrets.token_hex(8)}"
        joined: list[str] = []
        await ws.send(
            dumps(
                {
                    "type": "connected",
                    "connection_id": connection_id,
                    "user_id": user_id,
                    "heartbeat_interval": 30,
                }
            )
        )
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind, frame_id, channel = frame.get("type"), frame.get("id"), frame.get("channel")
                if kind == "subscribe":
                    channels.setdefault(channel, set()).add(ws)
                    joined.append(channel)
                    reply = {
                        "type": "subscribed",
                        "id": frame_id,
                        "channel": channel,
                        "offset": offsets.get(channel, 0),
                        "epoch": epoch,
                        "recovered": True,
                    }
                elif kind == "publish":
                    offset = offsets[channel] = offsets.get(channel, 0) + 1
                    event = {
                        "type": "event",
                        "channel": channel,
                        "offset": offset,
                        "epoch": epoch,
                        "event": "room.message",
                        "data": {
                            "connection_id": connection_id,
                            "user_id": user_id,
                            "data": frame["data"],
                        },
                        "ts": now_iso(),
                    }
                    broadcast(channels.get(channel, ()), dumps(event))
                    reply = {
                        "type": "published",
                        "id": frame_id,
                        "channel": channel,
                        "offset": offset,
                        "epoch": epoch,
                    }
                elif kind == "heartbeat":
                    reply = {"type": "heartbeat_ack", "id": frame_id}
                else:
                    reply = {"type": "error", "id": frame_id, "code": "unknown_type"}
                await ws.send(dumps(reply))
        finally:
            for channel in joined:
                channels.get(channel, set()).discard(ws)

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, compression=compression, max_size=65_536):
        await stop


def baseline_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="realtime_baseline.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    uvloop.run(baseline_server(args.port, None if args.compression == "none" else "deflate"))
    return 0


@contextmanager
def baseline_process(workdir: Path, compression: Compression) -> Iterator[tuple[str, int]]:
    """The baseline server in its own process: (ws base URL, pid); stopped on the way out."""
    port = free_port()
    log_path = workdir / "baseline.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(port)]
    cmd += ["--compression", compression or "none"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"baseline exited with {proc.returncode}:\n{log_tail(log_path)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"baseline not ready:\n{log_tail(log_path)}")
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/v1/ws", proc.pid
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(baseline_main(sys.argv[1:]))
