"""A task's end is told to the API processes that wait for it, and to no other.

Two API processes, A and B, share one Redis and one inference worker. A raw subscription
to every events channel sees where each task's event is published. ``diabetes`` is routed
to the queue ``parked``, which no worker consumes: its tasks stay queued until cancelled.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from processes import ServiceProcess, service_env, start_api
from task_events import Events, channel_of, notify_of, until_registered

from services.cli.redis_server import free_port
from services.common import keys
from services.common.records import (
    CANCEL_SCRIPT,
    FINISH_SCRIPT,
    WATCH_SCRIPT,
    Status,
    event_record,
    finish_args,
    new_record,
    parse_event,
    split_events,
    task_end,
    to_public,
)

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
PARKED_ROW = [0.0] * 10  # diabetes, on the queue nobody consumes

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, model_store,
                       INFERQ_MODEL_QUEUES=json.dumps({"diabetes": "parked"}))


@pytest.fixture(scope="module")
def api_b(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_api(stack_env, free_port(), logs)
    yield process
    process.stop()


@pytest.fixture
def client_b(api_b: ServiceProcess) -> Iterator[httpx.Client]:
    url = f"http://127.0.0.1:{api_b.args[api_b.args.index('--port') + 1]}"
    with httpx.Client(base_url=url, timeout=40) as http:
        yield http


@pytest.fixture
def store(redis_server) -> redis.Redis:  # type: ignore[no-untyped-def]
    client: redis.Redis = redis_server.client()
    return client


@pytest.fixture
def events(store: redis.Redis) -> Iterator[Events]:
    subscription = Events(store, keys.events_channel("*"))
    yield subscription
    subscription.close()


def assert_told(store: redis.Redis, events: Events, task_id: str,
                *waiting: ServiceProcess) -> None:
    """The task's event came on the channel of each of the ``waiting`` processes, once, and
    on no other; the ended record keeps no channels (they served, and would take memory)."""
    channels = [channel_of(api) for api in waiting]
    assert events.seen() == {task_id: sorted(channels)}
    assert notify_of(store, task_id) is None


def submit(client: httpx.Client, model: str, row: list[float], wait: float = 0) -> dict:
    response = client.post(f"/v1/models/{model}/predict", params={"wait": wait},
                           json={"instances": [row]})
    assert response.status_code in (200, 202), response.text
    task: dict = response.json()
    return task


def test_each_api_process_has_a_channel_of_its_own(api: ServiceProcess,
                                                   api_b: ServiceProcess) -> None:
    assert channel_of(api) != channel_of(api_b)


def test_a_task_waited_for_on_submit_is_told_to_that_api_alone(
    client: httpx.Client, api: ServiceProcess, api_b: ServiceProcess,
    store: redis.Redis, events: Events,
) -> None:
    done = submit(client, "iris", IRIS_ROW, wait=10)

    assert done["status"] == "succeeded"
    assert "notify" not in done
    assert_told(store, events, done["task_id"], api)


def test_a_task_submitted_without_wait_is_answered_by_the_api_that_waits_for_it(
    client: httpx.Client, client_b: httpx.Client, api_b: ServiceProcess,
    store: redis.Redis, events: Events,
) -> None:
    task = submit(client, "sleepy", [1.0, 1.0])
    assert task["status"] == "queued"
    assert notify_of(store, task["task_id"]) is None

    started = time.monotonic()
    done = client_b.get(f"/v1/tasks/{task['task_id']}", params={"wait": 10}).json()

    assert done["status"] == "succeeded" and done["result"] == {"predictions": [2.0]}
    assert "notify" not in done
    # Woken by the event on B's channel: the model takes 1 s, the wait would take 10.
    assert time.monotonic() - started < 5
    assert_told(store, events, task["task_id"], api_b)


def test_a_task_nobody_waits_for_is_told_to_nobody(
    client: httpx.Client, client_b: httpx.Client, store: redis.Redis, events: Events
) -> None:
    task = submit(client, "iris", IRIS_ROW)
    deadline = time.monotonic() + 10
    while client_b.get(f"/v1/tasks/{task['task_id']}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the task did not finish"
        time.sleep(0.05)

    assert notify_of(store, task["task_id"]) is None
    assert events.seen() == {}


def test_a_cancel_on_one_api_wakes_the_request_waiting_on_another(
    client: httpx.Client, client_b: httpx.Client, api_b: ServiceProcess,
    store: redis.Redis, events: Events,
) -> None:
    task = submit(client, "diabetes", PARKED_ROW)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client_b.get, f"/v1/tasks/{task['task_id']}",
                              params={"wait": 10})
        until_registered(store, task["task_id"])

        cancelled = client.delete(f"/v1/tasks/{task['task_id']}")
        answered = waiting.result(timeout=3).json()

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert answered["status"] == "cancelled"
    assert_told(store, events, task["task_id"], api_b)


def test_waiting_for_a_finished_task_answers_at_once_and_registers_nothing(
    client: httpx.Client, client_b: httpx.Client, api: ServiceProcess,
    store: redis.Redis, events: Events,
) -> None:
    task = submit(client, "iris", IRIS_ROW, wait=10)
    assert events.seen() == {task["task_id"]: [channel_of(api)]}

    started = time.monotonic()
    done = client_b.get(f"/v1/tasks/{task['task_id']}", params={"wait": 10}).json()

    assert time.monotonic() - started < 1
    assert done["status"] == "succeeded" and done["result"] == task["result"]
    assert notify_of(store, task["task_id"]) is None


def test_each_waiting_process_is_named_once_and_each_is_told(
    client: httpx.Client, client_b: httpx.Client, api: ServiceProcess,
    api_b: ServiceProcess, store: redis.Redis, events: Events,
) -> None:
    task = submit(client, "diabetes", PARKED_ROW)
    url = f"/v1/tasks/{task['task_id']}"
    for _ in range(2):
        assert client_b.get(url, params={"wait": 0.1}).json()["status"] == "queued"
    assert notify_of(store, task["task_id"]) == channel_of(api_b)

    assert client.get(url, params={"wait": 0.1}).json()["status"] == "queued"
    assert client_b.get(url, params={"wait": 0.1}).json()["status"] == "queued"
    assert notify_of(store, task["task_id"]) == f"{channel_of(api_b)} {channel_of(api)}"

    assert client_b.delete(url).json()["status"] == "cancelled"
    assert_told(store, events, task["task_id"], api_b, api)


def test_waiting_for_an_unknown_task_is_404_and_leaves_no_record(
    client_b: httpx.Client, store: redis.Redis
) -> None:
    task_id = str(uuid.uuid4())
    started = time.monotonic()
    response = client_b.get(f"/v1/tasks/{task_id}", params={"wait": 10})

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "task_not_found"
    assert time.monotonic() - started < 1
    assert not store.exists(keys.task_key(task_id))


# The scripts themselves, on records written here.

def recorded(store: redis.Redis, **fields: str) -> str:
    """A task's record, queued unless ``fields`` say otherwise; its key."""
    key = keys.task_key(str(uuid.uuid4()))
    record = new_record(model="iris", version=1, queue="parked", rows=1, trace_id=None,
                        now=time.time())
    store.hset(key, mapping={**record, **fields})
    return key


def test_the_watch_script_matches_whole_channel_names(store: redis.Redis) -> None:
    watch = store.register_script(WATCH_SCRIPT)
    key = recorded(store, notify="inferq:events:abc1 inferq:events:xabc")

    watch(keys=[key], args=["inferq:events:abc", "default"])
    watch(keys=[key], args=["inferq:events:abc", "default"])

    assert store.hget(key, "notify") == (
        b"inferq:events:abc1 inferq:events:xabc inferq:events:abc")
    assert watch(keys=[keys.task_key("never-submitted")],
                 args=["inferq:events:abc", "default"]) == []
    assert not store.exists(keys.task_key("never-submitted"))


def test_the_watch_and_cancel_scripts_treat_another_tenants_task_as_missing(
    store: redis.Redis,
) -> None:
    watch = store.register_script(WATCH_SCRIPT)
    cancel = store.register_script(CANCEL_SCRIPT)
    key = recorded(store, tenant="acme")
    task_id = key.removeprefix(keys.task_key(""))
    before = store.hgetall(key)

    assert watch(keys=[key], args=["inferq:events:other", "globex"]) == []
    assert cancel(keys=[key], args=[repr(time.time()), 60, task_id, "globex"]) == [
        0, b"missing", b""]
    # Nothing was registered, nothing changed: the same answers as for no record at all.
    assert store.hgetall(key) == before
    missing = keys.task_key("never-submitted")
    assert cancel(keys=[missing], args=[repr(time.time()), 60, "x", "globex"]) == [
        0, b"missing", b""]
    # A record without a tenant (written before tenants) is the default tenant's.
    old = recorded(store)
    store.hdel(old, "tenant")
    assert watch(keys=[old], args=["inferq:events:other", "acme"]) == []
    assert watch(keys=[old], args=["inferq:events:mine", "default"]) != []
    assert cancel(keys=[key], args=[repr(time.time()), 60, task_id, "acme"])[:2] == [
        1, b"cancelled"]


def test_the_finish_script_publishes_on_every_channel_named_and_on_none_without(
    store: redis.Redis,
) -> None:
    told = Events(store, keys.events_channel("script-*"))
    try:
        channels = [keys.events_channel("script-1"), keys.events_channel("script-2")]
        named = recorded(store, status="running", notify=" ".join(channels))
        unnamed = recorded(store, status="running")
        finish = store.register_script(FINISH_SCRIPT)
        for key in (named, unnamed):
            task_id = key.removeprefix(keys.task_key(""))
            reply = finish(keys=[key], args=finish_args(
                60, [task_end(task_id, Status.SUCCEEDED, {"predictions": [1]})]))
            assert reply == [b"succeeded"]

        named_id = named.removeprefix(keys.task_key(""))
        messages = told.messages()
        assert sorted(channel for channel, _ in messages) == channels
        assert store.hget(named, "notify") is None  # A finished record keeps no channels.
        for _, data in messages:
            task_id, raw = parse_event(data)
            assert task_id == named_id
            # The event carries the record; ``notify`` has served and is dropped from both.
            carried = event_record(raw)
            assert carried is not None and "notify" not in carried
            shown = to_public(task_id, carried)
            assert shown["status"] == "succeeded" and shown["result"] == {"predictions": [1]}
            assert "notify" not in shown
    finally:
        told.close()


def test_one_finish_tells_each_api_process_of_its_tasks_in_one_message(
    store: redis.Redis,
) -> None:
    """Three tasks ended in one call: an API process's channel gets one message holding the
    three events, each with its record; a channel of an earlier release (no batched
    mark) gets each event in a message of its own; a task already ended is left alone."""
    batched, earlier = keys.events_channel("script-5"), "inferq:events:script-6"
    told = Events(store, "inferq:events:*script-[56]")
    try:
        tasks = [recorded(store, status="running", notify=f"{batched} {earlier}")
                 for _ in range(3)]
        ended = recorded(store, status="cancelled", notify=batched)
        ids = [key.removeprefix(keys.task_key("")) for key in [*tasks, ended]]
        finish = store.register_script(FINISH_SCRIPT)
        reply = finish(keys=[*tasks, ended], args=finish_args(60, [
            task_end(task_id, Status.SUCCEEDED, {"predictions": [n]})
            for n, task_id in enumerate(ids)]))
        assert reply == [b"succeeded"] * 3 + [b"cancelled"]

        messages = told.messages()
        on_batched = [data for channel, data in messages if channel == batched]
        on_earlier = [data for channel, data in messages if channel == earlier]
        assert len(on_batched) == 1 and len(on_earlier) == 3
        events = [parse_event(event) for event in split_events(on_batched[0])]
        assert [task_id for task_id, _ in events] == ids[:3]
        assert [parse_event(data)[0] for data in on_earlier] == ids[:3]
        for n, (task_id, raw) in enumerate(events):
            carried = event_record(raw)
            assert carried is not None
            assert to_public(task_id, carried)["result"] == {"predictions": [n]}
        assert store.hget(ended, "status") == b"cancelled"
    finally:
        told.close()


def test_the_cancel_script_publishes_on_every_channel_named(store: redis.Redis) -> None:
    told = Events(store, keys.events_channel("script-*"))
    try:
        channels = [keys.events_channel("script-3"), keys.events_channel("script-4")]
        named = recorded(store, notify=" ".join(channels))
        unnamed = recorded(store)
        cancel = store.register_script(CANCEL_SCRIPT)
        for key in (named, unnamed):
            task_id = key.removeprefix(keys.task_key(""))
            reply = cancel(keys=[key], args=[repr(time.time()), 60, task_id, "default"])
            assert reply[:2] == [1, b"cancelled"]

        assert told.seen() == {named.removeprefix(keys.task_key("")): channels}
        assert store.hget(named, "notify") is None and store.hget(named, "status") == b"cancelled"
    finally:
        told.close()


def test_an_end_missed_while_the_subscription_was_down_is_found_when_it_comes_back(
    client: httpx.Client, client_b: httpx.Client, store: redis.Redis,
) -> None:
    """B's subscription is cut, and the task is cancelled before B subscribes again: B
    hears nothing, but reads the record once it is back, well before its wait runs out."""
    task = submit(client, "diabetes", PARKED_ROW)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(client_b.get, f"/v1/tasks/{task['task_id']}",
                              params={"wait": 20})
        until_registered(store, task["task_id"])
        store.client_kill_filter(_type="pubsub")
        # Ended in the record alone, as if its event went out while nobody listened.
        store.hset(keys.task_key(task["task_id"]), "status", Status.CANCELLED.value)
        answered = waiting.result(timeout=15)
        took = time.monotonic() - started

    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "cancelled"
    assert took < 10, f"answered after {took:.1f} s: the wait ran out instead"
