"""Tests for lmvisor.server.observe: tree, events (query and SSE follow), metrics, config."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lmvisor.providers.sse import SSEDecoder
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.context import ServerContext
from tests.server.conftest import app_client, live_daemon, server_config


class TestTree:
    async def test_tree_lists_every_actor(self, runtime: Runtime) -> None:
        """The tree answers root -> system -> config, event_store with live figures."""
        async with app_client(runtime) as (_, client):
            tree = (await client.get("/v1/tree")).json()
        assert tree["id"] == "root"
        assert tree["status"] == "running"
        system = tree["children"][0]
        assert system["id"] == "system"
        assert [c["id"] for c in system["children"]] == ["config", "event_store"]
        assert {"mailbox_depth", "restarts", "last_crash", "actor"} <= set(system)

    async def test_restarts_and_last_crash_show(self, runtime: Runtime) -> None:
        """A crashed child shows its restart count and its (redacted) last crash reason."""
        from lmvisor.runtime.child_spec import ChildSpec
        from tests.server._daemon_app import Crash, Fragile

        async with app_client(runtime) as (_, client):
            await runtime.start_child(ChildSpec("fragile", Fragile, name="fragile"))
            ref = runtime.whereis("fragile")
            assert ref is not None
            await ref.cast(Crash())
            await ref.wait_exit()
            loop = asyncio.get_running_loop()
            give_up = loop.time() + 30.0  # the restart takes a moment; a loaded machine more
            while runtime.whereis("fragile") in (None, ref):
                assert loop.time() < give_up, "fragile was not restarted"
                await asyncio.sleep(0.01)
            tree = (await client.get("/v1/tree")).json()
        fragile = next(c for c in tree["children"] if c["id"] == "fragile")
        assert fragile["restarts"] == 1
        assert fragile["last_crash"] == "RuntimeError('fragile crashed on purpose')"


class TestEvents:
    async def test_filters(self, runtime: Runtime) -> None:
        """correlation_id, type (exact and prefix) and limit filter the answer, oldest first."""
        from lmvisor.runtime.correlation import correlation_scope

        with correlation_scope("c-1"):
            runtime.events.emit("job.started", {"n": 1})
            runtime.events.emit("job.finished", {"n": 2})
        runtime.events.emit("other.thing", {"n": 3})
        async with app_client(runtime) as (_, client):
            by_id = (await client.get("/v1/events", params={"correlation_id": "c-1"})).json()
            by_prefix = (await client.get("/v1/events", params={"type": "job.*"})).json()
            both = (
                await client.get(
                    "/v1/events", params=[("type", "job.finished"), ("type", "other.thing")]
                )
            ).json()
            newest = (await client.get("/v1/events", params={"limit": 1})).json()
        assert [e["data"]["n"] for e in by_id["events"]] == [1, 2]
        assert by_id["count"] == 2
        assert [e["type"] for e in by_prefix["events"]] == ["job.started", "job.finished"]
        assert [e["data"]["n"] for e in both["events"]] == [2, 3]
        assert [e["data"]["n"] for e in newest["events"]] == [3]

    async def test_since_keeps_later_events(self, runtime: Runtime) -> None:
        """since= keeps events at or after that time."""
        first = runtime.events.emit("a.one")
        runtime.events.emit("a.two")
        async with app_client(runtime) as (_, client):
            later = (await client.get("/v1/events", params={"since": first.timestamp + 1e6})).json()
            all_ = (await client.get("/v1/events", params={"since": first.timestamp})).json()
        assert later["events"] == []
        assert [e["type"] for e in all_["events"]] == ["a.one", "a.two"]

    async def test_odd_and_secret_values_are_safe(self, runtime: Runtime) -> None:
        """A non-JSON value becomes its repr and a secret-named value is redacted."""
        runtime.events.emit("odd.value", {"when": object, "api_key": "sk-abcdefghijk123"})
        async with app_client(runtime) as (_, client):
            answer = await client.get("/v1/events", params={"type": "odd.value"})
        data = answer.json()["events"][0]["data"]
        assert data["when"] == "<class 'object'>"
        assert data["api_key"] == "[REDACTED]"

    async def test_too_many_types_are_422(self, runtime: Runtime) -> None:
        """More than 32 `type` values is a 422 naming the field (each event was matched
        against every one: 3,000 held the daemon's loop for seconds); 32 are answered."""
        runtime.events.emit("job.started")
        types = [("type", f"t{i}.*") for i in range(31)]
        async with app_client(runtime) as (_, client):
            many = await client.get("/v1/events", params=[*types, ("type", "x"), ("type", "y")])
            most = await client.get("/v1/events", params=[*types, ("type", "job.started")])
            follow = await client.get(
                "/v1/events", params=[*types, ("type", "x"), ("type", "y"), ("follow", "true")]
            )
        assert many.status_code == follow.status_code == 422
        error = many.json()["error"]
        assert (error["field"], error["message"]) == (
            "query.type",
            "query.type: List should have at most 32 items after validation, not 33",
        )
        assert [e["type"] for e in most.json()["events"]] == ["job.started"]

    async def test_bad_filters_are_422(self, runtime: Runtime) -> None:
        """A malformed correlation id, a negative since or an infinite since are 422s."""
        async with app_client(runtime) as (_, client):
            for params in ({"correlation_id": "a b"}, {"since": -1}, {"since": "inf"}):
                answer = await client.get("/v1/events", params=params)
                assert answer.status_code == 422, params


async def _read_sse(
    client: httpx.AsyncClient, url: str, want: int, **params: Any
) -> tuple[list[tuple[str, dict[str, Any]]], httpx.Response]:
    """Read SSE frames from `url` until `want` frames arrived (or the stream ended)."""
    frames: list[tuple[str, dict[str, Any]]] = []
    decoder = SSEDecoder()
    async with client.stream("GET", url, params={**params, "follow": "true"}) as answer:
        async for chunk in answer.aiter_bytes():
            for event in decoder.feed(chunk):
                frames.append((event.event, json.loads(event.data)))
            if len(frames) >= want:
                break
    return frames, answer


class TestFollow:
    async def test_backlog_then_live_events(self, runtime: Runtime) -> None:
        """follow=true sends matching stored events, then new ones as they happen."""
        runtime.events.emit("job.old", {"n": 1})
        runtime.events.emit("noise.x", {"n": 0})
        context = ServerContext(runtime, config=server_config())
        async with live_daemon(context) as daemon, httpx.AsyncClient() as client:

            async def emit_later() -> None:
                await asyncio.sleep(0.2)
                runtime.events.emit("noise.y", {"n": 0})
                runtime.events.emit("job.new", {"n": 2})

            task = asyncio.ensure_future(emit_later())
            frames, answer = await _read_sse(client, daemon.url + "/v1/events", 2, type="job.*")
            await task
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert [(name, data["type"]) for name, data in frames] == [
            ("event", "job.old"),
            ("event", "job.new"),
        ]

    async def test_drain_ends_the_stream(self, runtime: Runtime) -> None:
        """When the daemon drains, an open stream ends with `end` / `shutdown`."""
        context = ServerContext(runtime, config=server_config())
        async with live_daemon(context) as daemon, httpx.AsyncClient() as client:
            asyncio.get_running_loop().call_later(0.2, daemon.drain, "test")
            frames, _ = await _read_sse(client, daemon.url + "/v1/events", 99, type="none.*")
        assert frames[-1] == ("end", {"reason": "shutdown"})

    async def test_deadline_bounds_the_stream(self, runtime: Runtime) -> None:
        """X-Request-Timeout ends a followed stream, completely, with `end` / `deadline`."""
        context = ServerContext(runtime, config=server_config())
        async with live_daemon(context) as daemon, httpx.AsyncClient() as client:
            client.headers["X-Request-Timeout"] = "0.3"
            frames, answer = await _read_sse(client, daemon.url + "/v1/events", 99, type="x.*")
        assert answer.status_code == 200
        assert frames == [("end", {"reason": "deadline"})]


class TestMetrics:
    async def test_exposition_parses_and_counts_requests(self, runtime: Runtime) -> None:
        """/metrics parses with prometheus_client's parser and counts HTTP requests by route."""
        async with app_client(runtime) as (_, client):
            await client.get("/v1/tree")
            await client.get("/v1/events", params={"limit": 0})
            answer = await client.get("/metrics")
        assert answer.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        assert "lmvisor_actors_alive" in families
        samples = {
            (s.labels["route"], s.labels["status"]): s.value
            for s in families["lmvisor_http_requests"].samples
            if s.name == "lmvisor_http_requests_total"
        }
        assert samples[("/v1/tree", "200")] == 1
        assert samples[("/v1/events", "422")] == 1

    async def test_unknown_methods_and_paths_do_not_grow_labels(self, runtime: Runtime) -> None:
        """Odd methods count as OTHER and unmatched paths as <unmatched>."""
        async with app_client(runtime) as (_, client):
            await client.request("BREW", "/coffee/1")
            await client.get("/coffee/2")
            answer = await client.get("/metrics")
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        labels = {
            (s.labels["method"], s.labels["route"])
            for s in families["lmvisor_http_requests"].samples
        }
        assert ("OTHER", "<unmatched>") in labels
        assert ("GET", "<unmatched>") in labels
        assert not any("coffee" in route for _, route in labels)


class TestConfig:
    async def test_secrets_are_masked(self) -> None:
        """/v1/config shows the configuration with every secret masked."""
        from lmvisor.config.schema import LmvisorConfig

        config = LmvisorConfig.model_validate(
            {"server": {"token": "t0p-secret"}, "providers": {"openai": {"api_key": "sk-live"}}}
        )
        async with Runtime.open(config) as own:
            context = ServerContext(own)
            async with live_daemon(context) as daemon, httpx.AsyncClient() as client:
                headers = {"Authorization": "Bearer t0p-secret"}
                answer = await client.get(daemon.url + "/v1/config", headers=headers)
        assert answer.status_code == 200
        assert "t0p-secret" not in answer.text and "sk-live" not in answer.text
        assert answer.json()["server"]["token"] == "**********"
