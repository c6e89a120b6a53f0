"""Contract tests of the `Broker` backends: every test runs on `memory` and on `redis`.

Redis tests use a unique key prefix each (deleted afterwards) on the shared Redis, or a
private `redis-server` for outages. Without Redis they are skipped (failed when `CI` is set).
Brokers are "nodes": Redis ones share the prefix, as processes of one deployment do.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agenthub.config import Settings
from agenthub.realtime.broker import Broker, BrokerUnavailable, Event, History
from agenthub.wiring import create_broker
from private_servers import PrivateRedis, redis_server
from realtime_support import Recorder, drop_prefix, redis_url, require_redis

BACKENDS = ("memory", "redis")


def broker_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite+aiosqlite:///:memory:",
        "secret_key": "x" * 40,
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "realtime_history_size": 1000,
        "realtime_history_ttl_seconds": 600,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@dataclass
class Node:
    broker: Broker
    recorder: Recorder


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def make_node(backend: str) -> AsyncIterator[NodeFactory]:
    """Start brokers ("nodes") sharing one fresh prefix: `await make_node(**settings)`."""
    prefix = f"test{secrets.token_hex(6)}"
    if backend == "redis":
        require_redis()
    nodes: list[Node] = []

    async def make(**overrides: Any) -> Node:
        settings = broker_settings(redis_url(), prefix, **overrides)
        if backend != "redis":
            settings = settings.model_copy(update={"redis_url": None})
        broker = create_broker(settings)
        node = Node(broker, Recorder())
        await broker.start(node.recorder)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.broker.close()
    if backend == "redis":
        drop_prefix(prefix)


async def publish_n(broker: Broker, channel: str, count: int) -> list[Event]:
    return [await broker.publish(channel, "tick", {"n": n}, f"ts-{n}") for n in range(count)]


async def test_offsets_start_at_one_and_history_keeps_the_order(make_node: NodeFactory) -> None:
    broker = (await make_node()).broker
    empty = await broker.history("chat")
    assert (empty.offset, empty.events) == (0, [])

    published = await publish_n(broker, "chat", 3)

    assert [e.offset for e in published] == [1, 2, 3]
    assert {e.epoch for e in published} == {empty.epoch}  # the epoch `history` handed out
    assert published[0].data == {"n": 0} and published[0].ts == "ts-0"
    assert await broker.history("chat") == History(empty.epoch, 3, published)
    assert (await broker.history("other")).offset == 0  # channels are independent logs


async def test_history_after_an_offset_and_position_only(make_node: NodeFactory) -> None:
    broker = (await make_node()).broker
    published = await publish_n(broker, "chat", 5)

    assert (await broker.history("chat", 3)).events == published[3:]
    assert (await broker.history("chat", 5)).events == []
    position = await broker.history("chat", None)
    assert (position.epoch, position.offset, position.events) == (published[0].epoch, 5, [])
    assert (await broker.history("chat", 2)).since(2, published[0].epoch) == (True, published[2:])


async def test_live_delivery_until_unsubscribe(make_node: NodeFactory) -> None:
    node = await make_node()
    await node.broker.subscribe("chat")
    await node.broker.subscribe("marker")

    first = await node.broker.publish("chat", "message.created", {"text": "héllo"}, "t1")
    await node.recorder.until(lambda: node.recorder.on("chat") == [first])

    await node.broker.unsubscribe("chat")
    await node.broker.publish("chat", "message.created", {"text": "unseen"}, "t2")
    marker = await node.broker.publish("marker", "ping", {}, "t3")
    # One connection delivers in publication order: once the marker is in, so would be "chat".
    await node.recorder.until(lambda: node.recorder.on("marker") == [marker])
    assert node.recorder.on("chat") == [first]


async def test_concurrent_nodes_get_distinct_offsets_in_order(
    backend: str, make_node: NodeFactory
) -> None:
    watcher = await make_node()
    await watcher.broker.subscribe("busy")
    # Redis: two other nodes publish; memory has one node per process, so it publishes itself.
    nodes = [await make_node(), await make_node()] if backend == "redis" else [watcher] * 2

    results = await asyncio.gather(
        *(node.broker.publish("busy", "tick", {"i": i}, "ts") for i in range(200) for node in nodes)
    )

    assert sorted(e.offset for e in results) == list(range(1, 401))
    await watcher.recorder.until(lambda: len(watcher.recorder.on("busy")) == 400)
    assert watcher.recorder.on("busy") == sorted(results, key=lambda e: e.offset)
    assert (await nodes[1].broker.history("busy")).offset == 400


async def test_history_is_trimmed_and_since_reports_gaps(make_node: NodeFactory) -> None:
    broker = (await make_node(realtime_history_size=5)).broker
    published = await publish_n(broker, "log", 8)
    epoch = published[0].epoch

    history = await broker.history("log")
    assert (history.offset, history.events) == (8, published[3:])  # the newest five
    assert history.since(6, epoch) == (True, published[6:])
    assert history.since(3, epoch) == (True, published[3:])  # oldest retained is 4
    assert history.since(8, None) == (True, [])
    assert history.since(2, epoch) == (False, published[3:])  # event 3 is gone
    assert history.since(0, None) == (False, published[3:])
    assert history.since(6, "stale") == (False, [])
    assert history.since(9, epoch) == (False, [])  # beyond the log

    short = await publish_n(broker, "short", 3)
    assert (await broker.history("short")).since(0, None) == (True, short)


async def test_restart_starts_the_log_over_and_tells_every_node(
    backend: str, make_node: NodeFactory
) -> None:
    watcher = await make_node()
    await watcher.broker.subscribe("lossy")
    restarter = await make_node() if backend == "redis" else watcher
    old = await publish_n(restarter.broker, "lossy", 3)

    epoch = await restarter.broker.restart("lossy")

    history = await watcher.broker.history("lossy")
    assert (history.epoch, history.offset, history.events, history.lost) == (epoch, 0, [], True)
    assert epoch != old[0].epoch
    assert history.since(3, old[0].epoch) == (False, [])
    fresh = await restarter.broker.publish("lossy", "tick", {}, "ts")
    assert (fresh.epoch, fresh.offset) == (epoch, 1)
    assert (await watcher.broker.history("lossy")).lost  # for as long as this log lives
    # The restart reaches the subscribed node between the old log's events and the new one's.
    await watcher.recorder.until(lambda: len(watcher.recorder.on("lossy")) == 4)
    assert watcher.recorder.restarts == [("lossy", epoch, 3)]
    assert watcher.recorder.on("lossy") == [*old, fresh]
    assert not (await watcher.broker.history("other")).lost


async def test_idle_log_starts_over_with_a_new_epoch(make_node: NodeFactory) -> None:
    broker = (await make_node(realtime_history_ttl_seconds=1)).broker
    old = await publish_n(broker, "idle", 2)
    await asyncio.sleep(1.5)

    fresh = await broker.publish("idle", "tick", {}, "ts")

    assert fresh.offset == 1 and fresh.epoch != old[0].epoch
    history = await broker.history("idle")
    assert (history.epoch, history.events) == (fresh.epoch, [fresh])
    assert history.since(2, old[0].epoch) == (False, [])


async def test_presence_members_refresh_remove_and_expire(make_node: NodeFactory) -> None:
    broker = (await make_node()).broker
    await broker.set_members("room:1", {"u1": {"name": "Ann"}, "u2": {"name": "Bob"}}, ttl=30)
    await broker.set_members("room:1", {"u1": {"name": "Ann B."}}, ttl=30)
    assert sorted(m["name"] for m in await broker.members("room:1")) == ["Ann B.", "Bob"]

    await broker.remove_member("room:1", "u2")
    await broker.remove_member("room:1", "nobody")
    assert await broker.members("room:1") == [{"name": "Ann B."}]

    await broker.set_members("room:2", {"u3": {}}, ttl=30)
    await broker.set_members("room:3", {"u4": {}}, ttl=0.3)
    await broker.set_members("lobby", {"u5": {}}, ttl=30)
    await broker.set_members("room:4", {"u6": {}}, ttl=30)
    await broker.remove_member("room:4", "u6")
    assert sorted(await broker.member_keys("room:")) == ["room:1", "room:2", "room:3"]

    await asyncio.sleep(0.5)
    assert await broker.members("room:3") == []
    assert sorted(await broker.member_keys("room:")) == ["room:1", "room:2"]
    assert await broker.members("room:1") == [{"name": "Ann B."}]


async def test_presence_short_ttl_member_does_not_expire_a_longer_one(
    make_node: NodeFactory,
) -> None:
    broker = (await make_node()).broker
    await broker.set_members("doc", {"long": {"n": 1}}, ttl=30)
    await broker.set_members("doc", {"short": {"n": 2}}, ttl=1)
    await asyncio.sleep(1.2)
    assert await broker.members("doc") == [{"n": 1}]


async def test_member_keys_prefix_is_literal(make_node: NodeFactory) -> None:
    broker = (await make_node()).broker
    for key in ("a*[b]?:1", "a*[b]?:2", "ax[b]?:3", "a*b:4", "a\\*:5"):
        await broker.set_members(key, {"u": {}}, ttl=30)
    assert sorted(await broker.member_keys("a*[b]?")) == ["a*[b]?:1", "a*[b]?:2"]
    assert await broker.member_keys("a\\*") == ["a\\*:5"]


async def test_ten_thousand_members_in_one_call(make_node: NodeFactory) -> None:
    broker = (await make_node()).broker
    members = {f"user-{n}": {"n": n} for n in range(10_000)}
    await broker.set_members("big", members, ttl=30)
    assert len(await broker.members("big")) == 10_000


# -- Redis outages, on a private server (the shared one is never stopped) ---------------------


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    async with redis_server(tmp_path) as server:
        yield server


async def test_redis_outage_raises_then_reader_reconnects(private_redis: PrivateRedis) -> None:
    settings = broker_settings(private_redis.url, "outage")
    node, late = (
        Node(create_broker(settings), Recorder()),
        Node(create_broker(settings), Recorder()),
    )
    try:
        await node.broker.start(node.recorder)
        await node.broker.subscribe("chat")
        first = await node.broker.publish("chat", "tick", {}, "t1")
        await node.recorder.until(lambda: node.recorder.on("chat") == [first])

        await private_redis.stop()
        for call in (
            node.broker.publish("chat", "tick", {}, "t2"),
            node.broker.history("chat"),
            node.broker.ping(),
            node.broker.members("room"),
        ):
            with pytest.raises(BrokerUnavailable) as raised:
                await call
            assert private_redis.password not in str(raised.value)
        await late.broker.start(late.recorder)  # REST keeps working: start does not fail
        with pytest.raises(BrokerUnavailable):
            await late.broker.subscribe("chat")

        await private_redis.start()
        await node.recorder.until(lambda: node.recorder.resyncs == 1)
        await late.recorder.until(lambda: late.recorder.resyncs == 1)
        await late.broker.subscribe("chat")
        again = await late.broker.publish("chat", "tick", {}, "t3")
        assert again.offset == 1 and again.epoch != first.epoch  # the restarted Redis is empty
        await node.recorder.until(lambda: node.recorder.on("chat") == [first, again])
        await late.recorder.until(lambda: late.recorder.on("chat") == [again])
        await node.broker.ping()
    finally:
        await node.broker.close()
        await late.broker.close()
