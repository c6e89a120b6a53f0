"""The body of `agenthub bench`: a progress bar on stderr while the run goes, then the tables
(or JSON) on stdout; the exit status says whether anything failed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import deque

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from agenthub.load.recorder import Recorder
from agenthub.load.report import Report
from agenthub.load.runner import Bench, BenchConfig, BenchError

REFRESH_SECONDS = 0.25
RATE_WINDOW_SECONDS = 2.0

OK, FAILED, UNUSABLE = 0, 1, 2


def main(config: BenchConfig, *, as_json: bool) -> int:
    """Run the bench and print its figures; 0 if nothing failed, 1 if something did, 2 if
    the run could not start."""
    errors = Console(stderr=True)
    try:
        report = asyncio.run(run_with_progress(Bench(config), errors))
    except BenchError as exc:
        errors.print(f"[red]agenthub bench: {escape(str(exc))}[/red]", highlight=False)
        return UNUSABLE
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        Console().print(report.tables())
    for hint in report.hints():
        errors.print(f"[yellow]{hint}[/yellow]", highlight=False)
    if report.failed:
        errors.print("[red]agenthub bench: some requests or events failed[/red]", highlight=False)
        return FAILED
    return OK


async def run_with_progress(bench: Bench, console: Console) -> Report:
    """Run `bench` with a progress bar on `console`: elapsed time, requests, rate, errors."""
    config = bench.config
    by_requests = config.requests is not None
    columns = (
        TextColumn("[bold]{task.description:<11}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[requests]:>8,} requests"),
        TextColumn("{task.fields[rate]:>8,.0f} req/s"),
        TextColumn("{task.fields[errors]:>6,} errors"),
    )
    with Progress(*columns, console=console, auto_refresh=False) as progress:
        task = progress.add_task(
            bench.phase,
            total=config.requests if by_requests else config.duration,
            requests=0,
            rate=0.0,
            errors=0,
        )
        updater = asyncio.create_task(_follow(bench, progress, task, by_requests))
        _stop_on_interrupt(bench)
        try:
            return await bench.run()
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            updater.cancel()
            recorder = bench.recorder
            mean = recorder.requests / recorder.elapsed if recorder.elapsed else 0.0
            _show(bench, progress, task, by_requests, mean)


def _stop_on_interrupt(bench: Bench) -> None:
    """The first Ctrl-C ends the run early and still reports it; a second one aborts."""
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        bench.stop()

    loop.add_signal_handler(signal.SIGINT, interrupt)


class _Rate:
    """Requests per second over the last couple of seconds."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, requests: int) -> float:
        now = time.monotonic()
        self._samples.append((now, requests))
        while now - self._samples[0][0] > RATE_WINDOW_SECONDS:
            self._samples.popleft()
        since, before = self._samples[0]
        return (requests - before) / (now - since) if now > since else 0.0


async def _follow(bench: Bench, progress: Progress, task: TaskID, by_requests: bool) -> None:
    rate = _Rate()
    while True:
        _show(bench, progress, task, by_requests, rate.update(bench.recorder.requests))
        await asyncio.sleep(REFRESH_SECONDS)


def _show(bench: Bench, progress: Progress, task: TaskID, by_requests: bool, rate: float) -> None:
    recorder: Recorder = bench.recorder
    progress.update(
        task,
        description=bench.phase,
        completed=recorder.requests if by_requests else recorder.elapsed,
        requests=recorder.requests,
        rate=rate,
        errors=recorder.errors,
    )
    progress.refresh()
