"""Tests for lmvisor.server.programs: the program routes over a real application tree, in-process.

The tree's LMs answer from the plugin's loopback LM server (`lm_server`), over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from lmvisor.programs import ChainOfThought
from lmvisor.services.app import App
from lmvisor.testing.lm_server import LMServer
from tests.server.conftest import api_client, sse_items

QA = {"module": "Predict", "signature": "question -> answer"}
COT = {"module": "ChainOfThought", "signature": "question -> answer"}


async def _register(client: Any, program_id: str = "qa", spec: Any = None, **body: Any) -> Any:
    answer = await client.post(
        "/v1/programs", json={"id": program_id, "program": spec or QA, **body}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _until(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds; a loaded machine gets half a minute."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 30.0
    while not condition():
        assert loop.time() < give_up, "the condition never held"
        await asyncio.sleep(0.005)


def _execution_tasks() -> list[asyncio.Task[Any]]:
    """The module executions still running (tasks the ModuleManager's task supervisor owns)."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_coro().__qualname__ == "_as_coroutine"  # type: ignore[union-attr]
    ]


def _error(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    return error


class TestRegister:
    async def test_spec_is_registered_and_listed(self, app: App) -> None:
        """A spec becomes version 1, with a Location header, and shows in the list."""
        async with api_client(app) as (_, client):
            answer = await client.post("/v1/programs", json={"id": "qa", "program": COT})
            listed = (await client.get("/v1/programs")).json()
        assert answer.status_code == 201
        assert answer.headers["location"] == "/v1/programs/qa"
        view = answer.json()
        assert (view["module_type"], view["version"], view["versions"]) == (
            "ChainOfThought",
            1,
            [1],
        )
        assert view["signature"] == "question -> reasoning, answer"
        assert [p["module_id"] for p in listed["programs"]] == ["qa"] and listed["count"] == 1

    async def test_a_saved_program_is_registered_with_its_state(self, app: App) -> None:
        """A saved program's state (demos, instructions) goes in the spec and is restored."""
        saved = ChainOfThought("question -> answer")
        saved.predict.demos = [{"question": "1+1?", "reasoning": "adding", "answer": "2"}]
        state = saved.dump_state()
        async with api_client(app) as (_, client):
            view = await _register(client, spec={**COT, "state": state})
            spec = (await client.get("/v1/programs/qa")).json()["spec"]
        assert view["demos"] == 1
        assert spec["state"]["predict"]["demos"] == state["predict"]["demos"]

    async def test_options_set_the_fallbacks(self, app: App) -> None:
        """Options are validated and shown; a default answer stands in when the LM fails."""
        async with api_client(app) as (_, client):
            view = await _register(client, options={"default": {"answer": "unknown"}})
        assert view["options"]["default"] == {"answer": "unknown"}

    @pytest.mark.parametrize(
        ("body", "status", "code", "field"),
        [
            ({"id": "qa", "program": {**QA, "module": "Nope"}}, 422, "validation_error",
             "body.program.module"),
            ({"id": "qa", "program": {**QA, "signature": "question"}}, 422,
             "program_spec_error", "program.signature"),
            ({"id": "qa", "program": {**QA, "descriptions": {"nope": "x"}}}, 422,
             "program_spec_error", "program.descriptions.nope"),
            ({"id": "qa", "program": {**QA, "config": {"api_key": "k"}}}, 422,
             "program_spec_error", "program.config.api_key"),
            ({"id": "qa", "program": QA, "options": {"fallback": {"module": "Predict",
              "signature": ""}}}, 422, "program_spec_error", "options.fallback.signature"),
            ({"id": "qa", "program": QA, "options": {"lm": "gpt"}}, 422,
             "service_input_error", "options.lm"),
            ({"id": "qa", "program": QA, "options": {"colour": "red"}}, 422,
             "service_input_error", "options.colour"),
            ({"id": "Q A", "program": QA}, 422, "validation_error", "body.id"),
            ({"id": "qa", "program": {**QA, "lm": "nowhere/model"}}, 422, "unknown_provider",
             None),
        ],
    )  # fmt: skip
    async def test_bad_registrations_are_typed_4xx(
        self, app: App, body: dict[str, Any], status: int, code: str, field: str | None
    ) -> None:
        """Each malformed registration names its code and the body field to fix."""
        async with api_client(app) as (_, client):
            error = _error(await client.post("/v1/programs", json=body), status)
        assert (error["code"], error["field"]) == (code, field)

    async def test_a_taken_id_is_a_conflict(self, app: App) -> None:
        """Registering an id twice is a 409; the first program stays."""
        async with api_client(app) as (_, client):
            await _register(client)
            taken = await client.post("/v1/programs", json={"id": "qa", "program": COT})
            error = _error(taken, 409)
            kept = (await client.get("/v1/programs/qa")).json()
        assert error["code"] == "module_already_registered"
        assert kept["module_type"] == "Predict"


class TestReadAndDelete:
    async def test_get_shows_the_current_spec(self, app: App) -> None:
        """GET answers the program with its spec, which registers the same program again."""
        async with api_client(app) as (_, client):
            await _register(client, spec={**COT, "instructions": "Be brief."})
            spec = (await client.get("/v1/programs/qa")).json()["spec"]
            again = await _register(client, "copy", spec=spec)
        assert spec["module"] == "ChainOfThought" and spec["instructions"] == "Be brief."
        assert again["predictors"][0]["instructions"] == "Be brief."

    async def test_unknown_ids_are_404(self, app: App) -> None:
        """Every route names an unknown program with a 404."""
        async with api_client(app) as (_, client):
            answers = [
                await client.get("/v1/programs/nope"),
                await client.delete("/v1/programs/nope"),
                await client.post("/v1/programs/nope/run", json={"inputs": {}}),
                await client.post("/v1/programs/nope/stream", json={"inputs": {}}),
                await client.put("/v1/programs/nope/version", json={"state": {}}),
                await client.post("/v1/programs/nope/rollback"),
            ]
        assert {(a.status_code, a.json()["error"]["code"]) for a in answers} == {
            (404, "unknown_module")
        }

    async def test_delete_unregisters(self, app: App) -> None:
        """DELETE answers 204 and the program is gone."""
        async with api_client(app) as (_, client):
            await _register(client)
            deleted = await client.delete("/v1/programs/qa")
            gone = await client.get("/v1/programs/qa")
        assert deleted.status_code == 204 and deleted.content == b""
        assert gone.status_code == 404


class TestRun:
    async def test_outputs_usage_cost_cache_and_correlation_id(self, app: App) -> None:
        """A run answers outputs, usage and cost; the same run again comes from the cache."""
        async with api_client(app) as (_, client):
            await _register(client, spec=COT)
            body = {"inputs": {"question": "What is DSPy?"}}
            first = await client.post(
                "/v1/programs/qa/run", json=body, headers={"X-Correlation-ID": "run-cid-1"}
            )
            again = (await client.post("/v1/programs/qa/run", json=body)).json()
            events = (await client.get("/v1/events", params={"correlation_id": "run-cid-1"})).json()
        result = first.json()
        assert first.status_code == 200 and first.headers["x-correlation-id"] == "run-cid-1"
        assert set(result["outputs"]) == {"reasoning", "answer"}
        assert result["outputs"]["answer"].startswith("answer ")
        assert result["usage"]["total_tokens"] > 0 and result["cost_usd"] > 0
        assert (result["cached"], result["strategy"], result["lm_calls"]) == (False, "primary", 1)
        assert result["correlation_id"] == "run-cid-1"
        assert again["cached"] is True and again["cost_usd"] == 0.0
        assert again["outputs"] == result["outputs"]
        types = [event["type"] for event in events["events"]]
        assert "module_execution_start" in types and "lm_request" in types

    async def test_missing_input_is_a_422_naming_it(self, app: App) -> None:
        """A missing input is `invalid_input` at `inputs.<name>`; the program keeps serving."""
        async with api_client(app) as (_, client):
            await _register(client)
            errors = [
                _error(await client.post("/v1/programs/qa/run", json={"inputs": {}}), 422)
                for _ in range(6)
            ]
            served = await client.post("/v1/programs/qa/run", json={"inputs": {"question": "ok"}})
        assert {(e["code"], e["field"]) for e in errors} == {("invalid_input", "inputs.question")}
        assert served.status_code == 200

    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({"inputs": {"question": "q"}, "timeout": 0}, "validation_error", "body.timeout"),
            ({"inputs": {"question": "q"}, "timeout": 10_000}, "invalid_input", "timeout"),
            ({"inputs": ["q"]}, "validation_error", "body.inputs"),
            ({"question": "q"}, "validation_error", "body.inputs"),
        ],
    )
    async def test_bad_run_bodies(
        self, app: App, body: dict[str, Any], code: str, field: str
    ) -> None:
        """A malformed run body is a 422 naming the field."""
        async with api_client(app) as (_, client):
            await _register(client)
            error = _error(await client.post("/v1/programs/qa/run", json=body), 422)
        assert (error["code"], error["field"]) == (code, field)

    async def test_body_timeout_is_the_runs_deadline(self, app: App, lm_server: LMServer) -> None:
        """A run slower than the body's timeout is a 504 `deadline_exceeded`."""
        lm_server.latency = 2.0
        async with api_client(app) as (_, client):
            await _register(client)
            body = {"inputs": {"question": "slow?"}, "timeout": 0.2}
            error = _error(await client.post("/v1/programs/qa/run", json=body), 504)
        # The provider gives up a little before the deadline (its last attempt timed out).
        assert error["code"] in {"deadline_exceeded", "retry_exhausted"}

    async def test_the_sooner_of_header_and_body_wins(self, app: App, lm_server: LMServer) -> None:
        """X-Request-Timeout shorter than the body's timeout bounds the run."""
        lm_server.latency = 2.0
        async with api_client(app) as (_, client):
            await _register(client)
            answer = await client.post(
                "/v1/programs/qa/run",
                json={"inputs": {"question": "slow?"}, "timeout": 30},
                headers={"X-Request-Timeout": "0.2"},
            )
        assert _error(answer, 504)["code"] in {"deadline_exceeded", "retry_exhausted"}

    async def test_a_failing_lm_falls_back_to_the_default(
        self, app: App, lm_server: LMServer
    ) -> None:
        """With the vendor failing, the default answer is served and named as the strategy."""
        from lmvisor.testing.lm_server import FaultRule

        lm_server.add_fault(FaultRule(kind="status", status=400))
        async with api_client(app) as (_, client):
            await _register(client, options={"default": {"answer": "unknown"}})
            result = (
                await client.post("/v1/programs/qa/run", json={"inputs": {"question": "q"}})
            ).json()
        assert (result["outputs"], result["strategy"]) == ({"answer": "unknown"}, "default")
        assert result["failures"][0][0] == "primary"


class TestStream:
    async def test_field_chunks_then_the_prediction(self, app: App) -> None:
        """Each output field streams as `chunk` events, then `prediction` (as /run), then `end`."""
        async with api_client(app) as (_, client):
            await _register(client, spec=COT)
            body = {"inputs": {"question": "streamed?"}}
            answer = await client.post("/v1/programs/qa/stream", json=body)
            run = (await client.post("/v1/programs/qa/run", json=body)).json()
        items = sse_items(answer)
        names = [name for name, _ in items]
        assert names[-2:] == ["prediction", "end"] and items[-1][1] == {"reason": "done"}
        chunks = [data for name, data in items if name == "chunk"]
        assert set(names[:-2]) == {"chunk"} and len(chunks) > 2
        text: dict[str, str] = {}
        for chunk in chunks:
            text[chunk["field"]] = text.get(chunk["field"], "") + chunk["chunk"]
        prediction = items[-2][1]
        assert text == prediction["outputs"] == run["outputs"]
        assert [c["field"] for c in chunks if c["is_last_chunk"]] == ["reasoning", "answer"]
        assert {c["predict_name"] for c in chunks} == {"predict"}
        assert prediction["cached"] is False

    async def test_a_failure_after_the_start_is_an_error_event(self, app: App) -> None:
        """Bad inputs found once streaming are an `error` event with the typed body."""
        async with api_client(app) as (_, client):
            await _register(client)
            answer = await client.post("/v1/programs/qa/stream", json={"inputs": {}})
        items = sse_items(answer)
        assert [name for name, _ in items] == ["error", "end"]
        error = items[0][1]
        assert error["status"] == 422
        assert (error["error"]["code"], error["error"]["field"]) == (
            "invalid_input",
            "inputs.question",
        )

    async def test_body_timeout_ends_the_run_with_an_error_event(
        self, app: App, lm_server: LMServer
    ) -> None:
        """A run past the body's timeout ends in an `error` event (504), then `end`."""
        lm_server.latency = 5.0
        async with api_client(app) as (_, client):
            await _register(client)
            body = {"inputs": {"question": "slow"}, "timeout": 0.2}
            items = sse_items(await client.post("/v1/programs/qa/stream", json=body))
        assert [name for name, _ in items] == ["error", "end"]
        assert items[0][1]["status"] == 504

    async def test_a_stream_at_its_deadline_stops_the_run(
        self, app: App, lm_server: LMServer
    ) -> None:
        """At the request's deadline the stream ends (the run's 504, then `end`), and the
        run does not outlive it."""
        lm_server.latency = 5.0
        async with api_client(app) as (_, client):
            await _register(client)
            answer = await client.post(
                "/v1/programs/qa/stream",
                json={"inputs": {"question": "cut"}},
                headers={"X-Request-Timeout": "0.3"},
            )
        items = sse_items(answer)
        assert items[-1][0] == "end" and items[-1][1]["reason"] in {"deadline", "done"}
        assert all(data["status"] == 504 for name, data in items if name == "error")
        await _until(lambda: not _execution_tasks())


class TestVersions:
    async def test_hot_swap_state_then_roll_back(self, app: App) -> None:
        """New state is version 2; rollback returns to 1; a second rollback is a 409."""
        async with api_client(app) as (_, client):
            await _register(client)
            spec = (await client.get("/v1/programs/qa")).json()["spec"]
            state = spec["state"]
            state["signature"]["instructions"] = "Answer in French."
            swapped = await client.put("/v1/programs/qa/version", json={"state": state})
            now = (await client.get("/v1/programs/qa")).json()
            back = await client.post("/v1/programs/qa/rollback")
            after = (await client.get("/v1/programs/qa")).json()
            again = await client.post("/v1/programs/qa/rollback")
        assert swapped.json() == {"module_id": "qa", "version": 2, "previous": 1}
        assert now["predictors"][0]["instructions"] == "Answer in French."
        assert back.json() == {"module_id": "qa", "version": 1, "previous": 2}
        assert after["predictors"][0]["instructions"] != "Answer in French."
        assert _error(again, 409)["code"] == "no_previous_version"

    async def test_concurrent_swaps_each_name_the_version_they_replaced(self, app: App) -> None:
        """Swaps sent at once each answer `previous` as the version they replaced: 1, 2, 3."""
        async with api_client(app) as (_, client):
            await _register(client)
            answers = await asyncio.gather(
                *(client.put("/v1/programs/qa/version", json={"program": COT}) for _ in range(3))
            )
            back = await client.post("/v1/programs/qa/rollback")
        changes = sorted((a.json()["version"], a.json()["previous"]) for a in answers)
        assert changes == [(2, 1), (3, 2), (4, 3)]
        assert back.json() == {"module_id": "qa", "version": 3, "previous": 4}

    async def test_hot_swap_a_new_spec(self, app: App) -> None:
        """A whole new spec replaces the program's type; runs answer from it."""
        async with api_client(app) as (_, client):
            await _register(client)
            swapped = await client.put("/v1/programs/qa/version", json={"program": COT})
            run = (
                await client.post("/v1/programs/qa/run", json={"inputs": {"question": "v2?"}})
            ).json()
        assert swapped.json()["version"] == 2
        assert run["version"] == 2 and "reasoning" in run["outputs"]

    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({}, "invalid_input", "program"),
            ({"program": QA, "state": {}}, "invalid_input", "program"),
            ({"program": {**QA, "signature": "->"}}, "program_spec_error", "program.signature"),
            ({"state": {"demos": 5}}, "service_input_error", "state.self.demos"),
        ],
    )
    async def test_bad_swaps_are_typed(
        self, app: App, body: dict[str, Any], code: str, field: str
    ) -> None:
        """A swap needs exactly one of a valid spec or a fitting state."""
        async with api_client(app) as (_, client):
            await _register(client)
            error = _error(await client.put("/v1/programs/qa/version", json=body), 422)
        assert (error["code"], error["field"]) == (code, field)

    async def test_runs_in_flight_finish_on_their_version(
        self, app: App, lm_server: LMServer
    ) -> None:
        """A run started before a swap answers from the version it started on."""
        lm_server.latency = 0.3
        async with api_client(app) as (_, client):
            await _register(client)
            body = {"inputs": {"question": "in flight"}}
            running = asyncio.ensure_future(client.post("/v1/programs/qa/run", json=body))
            await _until(lambda: lm_server.stats().in_flight == 1)  # it has its version
            await client.put("/v1/programs/qa/version", json={"program": COT})
            old = (await running).json()
            new = (await client.post("/v1/programs/qa/run", json=body)).json()
        assert (old["version"], new["version"]) == (1, 2)


class TestReadiness:
    async def test_ready_with_every_provider_running(self, app: App) -> None:
        """/readyz passes its `providers` check when the models in use have providers."""
        async with api_client(app) as (_, client):
            await _register(client)
            body = (await client.get("/readyz")).json()
        assert body["status"] == "ready"
        assert body["checks"]["providers"]["detail"].startswith("providers running: ")

    async def test_not_ready_without_a_provider(self, app: App) -> None:
        """A program whose vendor's provider is gone and has no fallback is not ready."""
        from lmvisor.runtime.supervisor import terminate_child
        from lmvisor.services.lm_provider import provider_name

        async with api_client(app) as (_, client):
            await _register(client, "fallback", options={"default": {"answer": "-"}})
            supervisor = app.runtime.whereis("lm_providers")
            ref = app.runtime.whereis(provider_name("openai"))
            assert supervisor is not None and ref is not None
            await terminate_child(supervisor, ref)
            answer = await client.get("/readyz")
        detail = answer.json()["checks"]["providers"]["detail"]
        assert answer.status_code == 503
        assert "default model openai/gpt-4o-mini: the 'openai' provider is not running" in detail
        assert "fallback" not in detail


class TestSpecBody:
    def test_the_documented_adapters_are_the_programs_layers(self) -> None:
        """The API's adapter names are exactly the ones a spec may use."""
        from typing import get_args

        from lmvisor.programs._spec_adapters import ADAPTER_NAMES
        from lmvisor.server.program_views import ADAPTER_NAME

        assert get_args(ADAPTER_NAME) == ADAPTER_NAMES

    async def test_adapters_with_options(self, app: App) -> None:
        """An adapter given with options, and a two-step adapter naming its model, register."""
        async with api_client(app) as (_, client):
            chat = {**QA, "adapter": {"name": "chat", "use_json_adapter_fallback": False}}
            two_step = {**QA, "adapter": {"name": "two_step", "extraction_lm": "openai/gpt-4o"}}
            first = await _register(client, "chat", spec=chat)
            second = await _register(client, "two", spec=two_step)
            run = await client.post("/v1/programs/chat/run", json={"inputs": {"question": "q"}})
            spec = (await client.get("/v1/programs/two")).json()["spec"]
        assert first["module_id"] == "chat" and second["module_id"] == "two"
        assert run.status_code == 200, run.text
        assert spec["adapter"] == {"name": "two_step", "extraction_lm": "openai/gpt-4o"}

    async def test_an_unknown_adapter_is_a_422(self, app: App) -> None:
        """An adapter object naming no adapter is refused at its field."""
        async with api_client(app) as (_, client):
            body = {"id": "x", "program": {**QA, "adapter": {"name": "yaml"}}}
            error = _error(await client.post("/v1/programs", json=body), 422)
        assert (error["code"], error["field"]) == ("program_spec_error", "program.adapter.name")
