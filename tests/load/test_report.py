"""The figures `agenthub bench` prints, from known samples."""

from __future__ import annotations

import math
import random

from rich.console import Console

from agenthub.load.recorder import Recorder
from agenthub.load.report import (
    LOGIN_HINT,
    RATE_LIMIT_HINT,
    Delivery,
    Latency,
    Report,
    percentile,
)
from agenthub.load.scenario import Operation, Scenario
from agenthub.load.user import Budget


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert math.isnan(percentile([], 0.5))


def test_latency_is_in_milliseconds_from_seconds() -> None:
    latency = Latency.of([0.003, 0.001, 0.002, 0.010])
    assert latency == Latency(p50=2.0, p95=10.0, p99=10.0, max=10.0)
    assert latency.as_json("delivery_") == {
        "delivery_p50_ms": 2.0,
        "delivery_p95_ms": 10.0,
        "delivery_p99_ms": 10.0,
        "delivery_max_ms": 10.0,
    }
    assert Latency.of([]).as_json()["p50_ms"] is None


def _delivery(expected: int, received: int, errors: dict[str, int] | None = None) -> Delivery:
    return Delivery(
        subscribers=2,
        connected=2,
        expected=expected,
        received=received,
        duplicates=0,
        latency=Latency.of([0.004, 0.002]),
        errors=errors or {},
    )


def test_report_counts_throughput_and_errors_per_operation_and_in_total() -> None:
    recorder = Recorder()
    for seconds in (0.010, 0.020, 0.030, 0.040):
        recorder.success(Operation.POST_MESSAGE, seconds)
    recorder.success(Operation.LIST_SESSIONS, 0.005)
    recorder.failure(Operation.LIST_SESSIONS, "429")
    recorder.failure(Operation.LIST_SESSIONS, "429")
    recorder.failure(Operation.LOGIN, "timeout")
    recorder.started, recorder.finished = 100.0, 102.0  # two seconds

    report = Report.build(recorder, ("http://a",), 2, _delivery(8, 8))

    post = report.operations[Operation.POST_MESSAGE]
    assert (post.count, post.throughput, post.errors) == (4, 2.0, {})
    assert (post.latency.p50, post.latency.max) == (20.0, 40.0)
    listed = report.operations[Operation.LIST_SESSIONS]
    assert (listed.count, listed.throughput, listed.errors) == (3, 1.5, {"429": 2})
    assert listed.latency.p99 == 5.0  # of the successful request only
    assert report.operations[Operation.GET_SESSION].count == 0
    assert report.total.count == 8
    assert report.total.errors == {"429": 2, "timeout": 1}
    assert report.total.throughput == 4.0
    assert report.failed
    assert report.hints() == [RATE_LIMIT_HINT]
    assert "AGENTHUB_RATE_LIMIT_USER" in RATE_LIMIT_HINT

    as_json = report.as_json()
    assert as_json["operations"]["list_sessions"]["errors"] == {"429": 2}
    assert as_json["operations"]["get_session"]["p50_ms"] is None
    assert as_json["websocket"]["lost"] == 0
    assert as_json["duration_s"] == 2.0

    console = Console(width=120, record=True)
    console.print(report.tables())
    text = console.export_text()
    assert "429 x2" in text
    assert "timeout x1" in text


def test_lost_events_and_refused_logins_fail_the_run() -> None:
    recorder = Recorder()
    recorder.success(Operation.POST_MESSAGE, 0.01)
    recorder.started, recorder.finished = 0.0, 1.0
    clean = Report.build(recorder, ("http://a",), 1, _delivery(5, 5))
    assert not clean.failed and clean.hints() == []
    assert Report.build(recorder, ("http://a",), 1, _delivery(5, 4)).websocket.lost == 1
    assert Report.build(recorder, ("http://a",), 1, _delivery(5, 4)).failed
    assert Report.build(recorder, ("http://a",), 1, _delivery(5, 5, {"closed 1011": 1})).failed
    recorder.failure(Operation.LOGIN, "401")
    assert Report.build(recorder, ("http://a",), 1, _delivery(5, 5)).hints() == [LOGIN_HINT]


def test_deferred_requests_are_counted_apart_and_fail_nothing() -> None:
    recorder = Recorder()
    recorder.deferral(Operation.LOGIN)
    recorder.deferral(Operation.LOGIN)
    recorder.success(Operation.LOGIN, 0.2)
    recorder.started, recorder.finished = 0.0, 1.0
    report = Report.build(recorder, ("http://a",), 1, _delivery(0, 0))
    login = report.operations[Operation.LOGIN]
    assert (login.count, login.deferred, login.errors, login.latency.max) == (3, 2, {}, 200.0)
    assert (report.total.count, report.total.deferred) == (3, 2)
    assert not report.failed
    assert report.as_json()["operations"]["login"]["deferred"] == 2
    console = Console(width=140, record=True)
    console.print(report.tables())
    assert "503, retried" in console.export_text()


def test_scenario_logs_in_first_and_creates_sessions_as_they_fill() -> None:
    scenario = Scenario(messages_per_session=3)
    rng = random.Random(1)
    assert scenario.next_operation(rng, logged_in=False, posted_in_current=2) == Operation.LOGIN
    created = scenario.next_operation(rng, logged_in=True, posted_in_current=None)
    assert created == Operation.CREATE_SESSION
    full = scenario.next_operation(rng, logged_in=True, posted_in_current=3)
    assert full == Operation.CREATE_SESSION
    drawn = {scenario.next_operation(rng, logged_in=True, posted_in_current=1) for _ in range(500)}
    free = {Operation.POST_MESSAGE, Operation.PAGE_HISTORY, Operation.GET_SESSION}
    assert free | {Operation.LIST_SESSIONS} <= drawn
    assert Operation.CREATE_SESSION not in drawn


def test_a_budget_ends_after_its_requests_its_time_or_a_stop() -> None:
    budget = Budget(seconds=None, requests=3)
    budget.start()
    assert [budget.take() for _ in range(5)] == [True, True, True, False, False]
    timed = Budget(seconds=0, requests=None)
    timed.start()
    assert not timed.take()
    stopped = Budget(seconds=60, requests=None)
    stopped.start()
    assert stopped.take()
    stopped.stop()
    assert not stopped.take()


def test_a_wait_asked_for_by_the_server_never_outlasts_the_run() -> None:
    assert Budget(seconds=None, requests=3).wait_within(5.0) == 5.0
    timed = Budget(seconds=2, requests=None)
    timed.start()
    assert 1.5 < timed.wait_within(5.0) <= 2.0
    assert timed.wait_within(0.5) == 0.5
    timed.stop()
    assert timed.wait_within(5.0) == 0.0
