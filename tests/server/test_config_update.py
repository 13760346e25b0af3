"""Tests for lmvisor.server.config_update: `PATCH /v1/config`, in-process and as a real daemon."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from lmvisor.config.errors import ConfigError
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.config_update import masked_setting, merge_changes
from lmvisor.services.app import App
from tests.server.conftest import (
    DaemonProcess,
    LMProcess,
    api_client,
    app_client,
    start_lm_process,
)

_BREAKER = "infrastructure.circuit_breakers.default"
_MASK = "**********"


def _patch(client: httpx.Client, body: Any, **headers: str) -> httpx.Response:
    return client.patch("/v1/config", json=body, headers=headers)


class TestMergeChanges:
    def test_one_change_is_sent_as_given(self) -> None:
        """A single change is the update itself: its path and its value."""
        assert merge_changes({}, [("cache.l1_size", 5)]) == ("cache.l1_size", 5)

    def test_changes_merge_at_their_common_path(self) -> None:
        """Several changes become one update at their deepest common path, siblings kept."""
        key = SecretStr("sk-kept")
        tree = {"providers": {"openai": {"api_key": key, "rpm": None, "timeout": 60.0}}}
        path, value = merge_changes(
            tree, [("providers.openai.rpm", 10), ("providers.openai.timeout", 5.0)]
        )
        assert path == "providers.openai"
        assert value == {"api_key": key, "rpm": 10, "timeout": 5.0}
        assert tree["providers"]["openai"]["rpm"] is None  # the tree itself is untouched

    def test_later_changes_win_and_new_tables_are_made(self) -> None:
        """Changes apply in order; a change may name a table not set yet (a new vendor)."""
        path, value = merge_changes(
            {"providers": {}},
            [("providers.local.base_url", "a"), ("providers.local.base_url", "b")],
        )
        assert (path, value) == ("providers.local.base_url", "b")
        path, value = merge_changes(
            {"providers": {}},
            [("providers.local.base_url", "a"), ("providers.local.kind", "openai")],
        )
        assert (path, value) == ("providers.local", {"base_url": "a", "kind": "openai"})

    def test_changes_across_sections_are_refused(self) -> None:
        """Changes under two top-level sections cannot be one update: refused, naming one."""
        with pytest.raises(ConfigError, match=r"^invalid configuration \(update, 1 problem\):\n"):
            merge_changes({}, [("cache.l1_size", 1), ("modules.timeout", 2.0)])
        with pytest.raises(ConfigError, match=r"modules\.timeout: changes in one request must"):
            merge_changes({}, [("cache.l1_size", 1), ("modules.timeout", 2.0)])

    def test_a_change_through_a_value_is_refused(self) -> None:
        """A change below a setting that is not a table names its path."""
        with pytest.raises(ConfigError) as caught:
            merge_changes({"cache": {"l1_size": 5}}, [("cache.l1_size.x", 1), ("cache.y", 2)])
        assert caught.value.paths == ("cache.l1_size.x",)

    def test_masked_setting_walks_a_dump(self) -> None:
        """masked_setting reads a dotted path of a dump; an unknown one is a ConfigError."""
        assert masked_setting({"a": {"b": [1]}}, "a.b") == [1]
        with pytest.raises(ConfigError) as caught:
            masked_setting({"a": {"b": 1}}, "a.b.c")
        assert caught.value.paths == ("a.b.c",)


class TestPatchInProcess:
    async def test_an_accepted_change_answers_the_masked_config(self, runtime: Runtime) -> None:
        """An applied change answers the paths and the masked config; GET and events agree."""
        async with app_client(runtime) as (_, client):
            answer = await client.patch(
                "/v1/config", json={"path": f"{_BREAKER}.failure_threshold", "value": 9}
            )
            shown = await client.get("/v1/config", params={"path": _BREAKER})
            events = await client.get("/v1/events", params={"type": "config.changed"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["changed"] == [f"{_BREAKER}.failure_threshold"]
        assert (
            body["config"]["infrastructure"]["circuit_breakers"]["default"]["failure_threshold"]
            == 9
        )
        assert shown.json()["failure_threshold"] == 9
        assert runtime.config.infrastructure.circuit_breakers["default"].failure_threshold == 9
        assert [e["data"] for e in events.json()["events"]] == [
            {"path": f"{_BREAKER}.failure_threshold"}
        ]

    async def test_a_list_is_all_or_none(self, runtime: Runtime) -> None:
        """A list with one bad change is refused whole: the good change is not applied."""
        body = [
            {"path": f"{_BREAKER}.failure_threshold", "value": 9},
            {"path": f"{_BREAKER}.success_threshold", "value": 0},
        ]
        async with app_client(runtime) as (_, client):
            refused = await client.patch("/v1/config", json=body)
            accepted = await client.patch("/v1/config", json=[body[0], {**body[1], "value": 3}])
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == f"{_BREAKER}.success_threshold"
        assert accepted.status_code == 200
        assert accepted.json()["changed"] == [b["path"] for b in body]
        breaker = runtime.config.infrastructure.circuit_breakers["default"]
        assert (breaker.failure_threshold, breaker.success_threshold) == (9, 3)

    @pytest.mark.parametrize(
        ("body", "field", "reason"),
        [
            ({"path": "data_dir", "value": "/tmp/elsewhere"}, "data_dir", "is read at start only"),
            ({"path": "server.port", "value": 1}, "server.port", "is read at start only"),
            ({"path": "nowhere.at_all", "value": 1}, "nowhere", "Extra inputs"),
            (
                [{"path": "cache.l1_size", "value": 1}, {"path": f"{_BREAKER}.x", "value": 1}],
                f"{_BREAKER}.x",
                "share a top-level section",
            ),
        ],
    )
    async def test_refused_changes_are_422_naming_the_field(
        self, runtime: Runtime, body: Any, field: str, reason: str
    ) -> None:
        """A refused setting, an unknown path or a list over two sections: 422, nothing set."""
        before = runtime.config
        async with app_client(runtime) as (_, client):
            answer = await client.patch("/v1/config", json=body)
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("config_error", field)
        assert reason in error["message"]
        assert runtime.config is before

    @pytest.mark.parametrize(
        ("content", "status", "field"),
        [
            (b'{"path": ', 400, "body"),
            (b'{"path": "a..b", "value": 1}', 422, "body.ConfigChange.path"),
            (b'{"path": "cache.l1_size"}', 422, "body.ConfigChange.value"),
            (b"[]", 422, "body.ConfigChange"),
        ],
    )
    async def test_malformed_bodies_are_typed_4xx(
        self, runtime: Runtime, content: bytes, status: int, field: str
    ) -> None:
        """A body that is not JSON is a 400; one of the wrong shape a 422 naming the field."""
        async with app_client(runtime) as (_, client):
            answer = await client.patch(
                "/v1/config", content=content, headers={"content-type": "application/json"}
            )
        assert answer.status_code == status
        assert answer.json()["error"]["field"] == field

    async def test_too_large_a_body_is_413(self, runtime: Runtime) -> None:
        """A body past server.max_body_bytes is a 413, as on every route."""
        async with app_client(runtime, max_body_bytes=64) as (_, client):
            answer = await client.patch("/v1/config", json={"path": "a", "value": "x" * 100})
        assert answer.status_code == 413

    async def test_an_open_read_does_not_open_the_write(self, runtime: Runtime) -> None:
        """With /v1/config among open_paths, GET needs no token but PATCH still does."""
        open_paths = ["/healthz", "/v1/config"]
        change = {"path": f"{_BREAKER}.failure_threshold", "value": 4}
        async with app_client(runtime, token="tok-cfg-1", open_paths=open_paths) as (_, client):
            read = await client.get("/v1/config")
            anonymous = await client.patch("/v1/config", json=change)
            wrong = await client.patch(
                "/v1/config", json=change, headers={"Authorization": "Bearer nope"}
            )
            authed = await client.patch(
                "/v1/config", json=change, headers={"Authorization": "Bearer tok-cfg-1"}
            )
        assert (read.status_code, anonymous.status_code, wrong.status_code) == (200, 401, 401)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert authed.status_code == 200
        assert runtime.config.infrastructure.circuit_breakers["default"].failure_threshold == 4

    async def test_a_refused_secret_is_not_echoed(self, runtime: Runtime) -> None:
        """A secret sent to the wrong field is refused by path and reason, its value unshown."""
        secret = "sk-misplaced-0123456789"
        async with app_client(runtime) as (_, client):
            answer = await client.patch(
                "/v1/config",
                json=[
                    {"path": f"{_BREAKER}.recovery_time", "value": secret},
                    {"path": f"{_BREAKER}.failure_threshold", "value": {"k": secret}},
                ],
            )
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == f"{_BREAKER}.failure_threshold"
        assert secret not in answer.text

    async def test_get_path_filter(self, runtime: Runtime) -> None:
        """GET ?path= answers the masked setting; an unknown path is a 422 naming it."""
        async with app_client(runtime) as (_, client):
            leaf = await client.get("/v1/config", params={"path": f"{_BREAKER}.recovery_time"})
            unknown = await client.get("/v1/config", params={"path": "cache.nope"})
        assert leaf.json() == 30.0
        assert unknown.status_code == 422
        assert unknown.json()["error"]["field"] == "cache.nope"


def _stop(daemon: DaemonProcess) -> list[str]:
    """SIGTERM the daemon, wait for it, and return every stderr line it wrote."""
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    daemon.stop()
    while not daemon.lines.empty():
        daemon.log.append(daemon.lines.get())
    return daemon.log


def _access_lines(log: list[str]) -> list[dict[str, Any]]:
    """Method, path and status of each access log line among `log`."""
    found = []
    for line in log:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "http.request":
            found.append({key: record.get(key) for key in ("method", "path", "status")})
    return found


def _run(client: httpx.Client, question: str) -> httpx.Response:
    return client.post("/v1/programs/qa/run", json={"inputs": {"question": question}})


class TestPatchOverHttp:
    def test_rotating_the_vendor_key(self, spawn_daemon: Callable[..., DaemonProcess]) -> None:
        """A key rotated over HTTP is the one the next vendor calls send; no log holds it."""
        new_key = "sk-rotated-9f8e7d6c5b4a"
        vendor: LMProcess = start_lm_process("--api-key", new_key)
        try:
            daemon = spawn_daemon(
                "--app",
                "tests.server._daemon_app:register_qa",
                LMVISOR_SERVER__ACCESS_LOG="true",
                LMVISOR_PROVIDERS__OPENAI__BASE_URL=vendor.url + "/v1",
                LMVISOR_PROVIDERS__OPENAI__API_KEY="sk-old-1a2b3c4d5e6f",
                LMVISOR_PROVIDERS__OPENAI__MAX_RETRIES="0",
            )
            with httpx.Client(base_url=daemon.url, timeout=30) as client:
                before = _run(client, "with the old key?")
                change = {"path": "providers.openai.api_key", "value": new_key}
                answer = _patch(client, change)
                after = _run(client, "with the new key?")
                events = client.get("/v1/events", params={"type": "config.changed"}).text
            stats = httpx.get(vendor.url + "/stats", timeout=10).json()
        finally:
            vendor.stop()
        assert before.status_code >= 400
        assert answer.status_code == 200, answer.text
        assert answer.json()["config"]["providers"]["openai"]["api_key"] == _MASK
        assert after.status_code == 200, after.text
        assert after.json()["outputs"]["answer"]
        statuses = stats["by_status"]
        assert statuses.get("401", 0) >= 1 and statuses.get("200", 0) >= 1
        assert json.loads(events)["events"][0]["data"] == {"path": "providers.openai.api_key"}
        assert new_key not in events and new_key not in answer.text
        log = _stop(daemon)
        assert {"method": "PATCH", "path": "/v1/config", "status": 200} in _access_lines(log)
        assert not any(new_key in line for line in log)

    def test_token_required_and_refusal_changes_nothing(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """With a token: no token is a 401; `data_dir` is a 422 naming it; nothing changes."""
        daemon = spawn_daemon(LMVISOR_SERVER__TOKEN="proc-cfg-token")
        authed = {"Authorization": "Bearer proc-cfg-token"}
        change = {"path": "data_dir", "value": "/tmp/lmvisor-elsewhere"}
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            before = client.get("/v1/config", headers=authed).json()
            anonymous = _patch(client, change)
            refused = _patch(client, change, **authed)
            after = client.get("/v1/config", headers=authed).json()
        assert anonymous.status_code == 401
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["field"] == "data_dir"
        assert "/tmp/lmvisor-elsewhere" not in refused.text
        assert after == before
        assert not any("proc-cfg-token" in line for line in _stop(daemon))


class TestDocumented:
    async def test_the_route_and_its_security(self, runtime: Runtime) -> None:
        """/openapi.json shows PATCH /v1/config with its body; an open read leaves it secured."""
        open_paths = ["/healthz", "/v1/config"]
        async with app_client(runtime, token="tok-doc", open_paths=open_paths) as (_, client):
            doc = (
                await client.get("/openapi.json", headers={"Authorization": "Bearer tok-doc"})
            ).json()
        operations = doc["paths"]["/v1/config"]
        assert operations["get"]["security"] == []
        assert "security" not in operations["patch"]  # the document's global bearer applies
        body = operations["patch"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["anyOf"][0] == {"$ref": "#/components/schemas/ConfigChange"}
        assert doc["components"]["schemas"]["ConfigChange"]["required"] == ["path", "value"]


class TestReviewed:
    async def test_a_setting_read_edited_and_sent_back_keeps_its_secret(self, app: App) -> None:
        """GET a vendor's table, change one field, PATCH the table back: the masked key
        keeps the real one (it became the mask), and a partial table keeps the settings it
        leaves out (they fell back to defaults and the vendor was stopped)."""
        async with api_client(app) as (_, client):
            key = {"path": "providers.openai.api_key", "value": "sk-real-0123456789"}
            assert (await _patch(client, key)).status_code == 200
            before = app.runtime.config.providers["openai"]
            shown = (await client.get("/v1/config", params={"path": "providers.openai"})).json()
            assert shown["api_key"] == _MASK
            edited = {**shown, "rpm": 100}
            sent = await _patch(client, {"path": "providers.openai", "value": edited})
            assert sent.status_code == 200, sent.text
            partial = {"path": "providers.openai", "value": {"timeout": 9.0}}
            assert (await _patch(client, partial)).status_code == 200
        after = app.runtime.config.providers["openai"]
        assert after.api_key is not None
        assert after.api_key.get_secret_value() == "sk-real-0123456789"
        assert (after.rpm, after.timeout, after.base_url) == (100, 9.0, before.base_url)

    async def test_a_masked_url_is_refused_and_null_removes_an_entry(self, app: App) -> None:
        """A text holding the mask beside other characters (a masked URL edited) is a 422
        naming it; `null` inside a table removes that entry (merge-patch), here a vendor."""
        async with api_client(app) as (_, client):
            url = {"path": "providers.openai.base_url", "value": f"http://u:{_MASK}@h/v1"}
            refused = await _patch(client, url)
            removed = await _patch(client, {"path": "providers", "value": {"anthropic": None}})
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "providers.openai.base_url"
        assert removed.status_code == 200, removed.text
        assert "anthropic" not in app.runtime.config.providers

    async def test_the_token_is_checked_before_the_body(self, runtime: Runtime) -> None:
        """With /v1/config open for reads, an anonymous PATCH with a malformed body is a
        401, never a validation answer about the body it was not allowed to send."""
        open_paths = ["/healthz", "/v1/config"]
        async with app_client(runtime, token="tok-cfg-2", open_paths=open_paths) as (_, client):
            answer = await client.patch("/v1/config", json={"path": "a..b", "value": "sk-x"})
        assert answer.status_code == 401

    async def test_concurrent_lists_both_land(self, runtime: Runtime) -> None:
        """Two list PATCHes on one table at once both take effect (the merge reads, then
        writes: without the lock one's change was lost)."""
        first = [
            {"path": f"{_BREAKER}.failure_threshold", "value": 11},
            {"path": f"{_BREAKER}.recovery_time", "value": 5.0},
        ]
        second = [
            {"path": f"{_BREAKER}.success_threshold", "value": 4},
            {"path": f"{_BREAKER}.recovery_time", "value": 6.0},
        ]
        async with app_client(runtime) as (_, client):
            answers = await asyncio.gather(_apatch(client, first), _apatch(client, second))
        assert [a.status_code for a in answers] == [200, 200]
        breaker = runtime.config.infrastructure.circuit_breakers["default"]
        assert (breaker.failure_threshold, breaker.success_threshold) == (11, 4)


async def _apatch(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.patch("/v1/config", json=body)
