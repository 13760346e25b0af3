"""The daemon's program and optimization routes as a real process over real HTTP on loopback.

Daemons talk to a loopback LM server in its own process (`lm_process`), as to a vendor.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from lmvisor.providers.sse import SSEDecoder
from lmvisor.server.client import DaemonClient
from tests.server.conftest import DaemonProcess, LMProcess, start_lm_process

QA = {"module": "Predict", "signature": "question -> answer"}
COT = {"module": "ChainOfThought", "signature": "question -> answer"}
METRIC = "tests.server._metrics:answer_length"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _register(client: httpx.Client, spec: Any = None, **body: Any) -> str:
    program_id = _unique("p")
    answer = client.post("/v1/programs", json={"id": program_id, "program": spec or QA, **body})
    assert answer.status_code == 201, answer.text
    return program_id


class TestProgramsOverHttp:
    def test_register_run_and_describe(self, shared_daemon: DaemonProcess) -> None:
        """A registered program runs over HTTP: outputs, usage, cost, correlation id."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            program_id = _register(client, COT)
            answer = client.post(
                f"/v1/programs/{program_id}/run",
                json={"inputs": {"question": "over http?"}},
                headers={"X-Correlation-ID": "http-run-1"},
            )
            described = client.get(f"/v1/programs/{program_id}").json()
        result = answer.json()
        assert answer.status_code == 200
        assert set(result["outputs"]) == {"reasoning", "answer"}
        assert result["usage"]["total_tokens"] > 0 and result["correlation_id"] == "http-run-1"
        assert described["spec"]["module"] == "ChainOfThought"

    def test_stream_arrives_in_pieces(self, shared_daemon: DaemonProcess) -> None:
        """The SSE stream, parsed as it arrives, carries field chunks before the prediction."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            program_id = _register(client, COT)
            decoder = SSEDecoder()
            seen: list[tuple[str, Any]] = []
            reads = 0
            body = {"inputs": {"question": "stream me"}}
            with client.stream("POST", f"/v1/programs/{program_id}/stream", json=body) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                for chunk in answer.iter_bytes():
                    reads += 1
                    seen += [(e.event, json.loads(e.data)) for e in decoder.feed(chunk)]
        names = [name for name, _ in seen]
        assert names[-2:] == ["prediction", "end"] and names.count("chunk") > 2
        assert reads > 1
        answer_text = "".join(
            data["chunk"] for name, data in seen if name == "chunk" and data["field"] == "answer"
        )
        assert seen[-2][1]["outputs"]["answer"] == answer_text

    def test_hot_swap_and_rollback(self, shared_daemon: DaemonProcess) -> None:
        """PUT a new version, run on it, roll back, run on the first again."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            program_id = _register(client)
            path = f"/v1/programs/{program_id}"
            body = {"inputs": {"question": "which version?"}}
            swapped = client.put(f"{path}/version", json={"program": COT}).json()
            on_new = client.post(f"{path}/run", json=body).json()
            back = client.post(f"{path}/rollback").json()
            on_old = client.post(f"{path}/run", json=body).json()
        assert (swapped["version"], on_new["version"]) == (2, 2)
        assert "reasoning" in on_new["outputs"]
        assert (back["version"], on_old["version"]) == (1, 1)
        assert set(on_old["outputs"]) == {"answer"}

    def test_bad_specs_and_inputs_are_typed_4xx(self, shared_daemon: DaemonProcess) -> None:
        """Malformed specs and inputs get typed 4xx bodies naming the field."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            program_id = _register(client)
            answers = [
                client.post("/v1/programs", json={"id": "x", "program": {**QA, "signature": 3}}),
                client.post("/v1/programs", json={"id": "x", "program": {**QA, "module": "X"}}),
                client.post(f"/v1/programs/{program_id}/run", json={"inputs": {"q": "?"}}),
                client.post(
                    f"/v1/programs/{program_id}/run",
                    content=b'{"inputs": ' + b"[" * 100_000,
                    headers={"content-type": "application/json"},
                ),
                client.post("/v1/programs/missing/run", json={"inputs": {}}),
                client.post(
                    f"/v1/programs/{program_id}/run",
                    content=b'{"inputs": {"question": ' + b"[" * 990 + b"]" * 990 + b"}}",
                    headers={"content-type": "application/json"},
                ),
            ]
        found = [
            (a.status_code, a.json()["error"]["code"], a.json()["error"]["field"]) for a in answers
        ]
        assert found == [
            (422, "validation_error", "body.program.signature.str"),
            (422, "validation_error", "body.program.module"),
            (422, "invalid_input", "inputs.question"),
            (400, "bad_request", "body"),
            (404, "unknown_module", None),
            (422, "invalid_input", "inputs"),
        ]

    def test_a_lone_surrogate_in_a_named_field_is_a_typed_4xx(
        self, shared_daemon: DaemonProcess
    ) -> None:
        """An error naming what the caller sent (here an option key written `\\ud800`, which
        no UTF-8 can carry) answers with that name escaped, not with a bare 500."""
        body = b'{"id": "s", "program": {"module": "Predict", "signature": "a -> b"}, '
        with httpx.Client(base_url=shared_daemon.url) as client:
            answer = client.post(
                "/v1/programs",
                content=body + b'"options": {"\\ud800": 1}}',
                headers={"content-type": "application/json"},
            )
        assert answer.status_code == 422
        assert answer.json()["error"] == {
            "code": "service_input_error",
            "message": "invalid options.\\ud800: unknown option",
            "field": "options.\\ud800",
            "correlation_id": answer.headers["x-correlation-id"],
        }

    def test_a_lone_surrogate_in_a_program_is_refused_and_the_list_still_answers(
        self, shared_daemon: DaemonProcess
    ) -> None:
        """A program whose instructions hold a lone surrogate is refused with a typed 4xx
        naming the field (it was registered, could not be stored, and made every listing of
        programs a 500); the listing still answers."""
        body = (
            b'{"id": "surrogate", "program": {"module": "Predict", "signature": "a -> b",'
            b' "instructions": "x\\ud800"}}'
        )
        with httpx.Client(base_url=shared_daemon.url) as client:
            answer = client.post(
                "/v1/programs", content=body, headers={"content-type": "application/json"}
            )
            listing = client.get("/v1/programs")
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("program_spec_error", "program.instructions")
        assert listing.status_code == 200
        assert "surrogate" not in [p["module_id"] for p in listing.json()["programs"]]


class TestOptimizationsOverHttp:
    def test_job_progress_over_sse(
        self, spawn_daemon: Callable[..., DaemonProcess], lm_process: LMProcess
    ) -> None:
        """A submitted job's progress streams over SSE to its end; the result is deployed."""
        daemon = spawn_daemon(LMVISOR_SERVER__METRICS=json.dumps([METRIC]), **lm_process.env())
        rows = [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(6)]
        with DaemonClient(daemon.url) as client:
            client.register("qa", QA, options=None)
            job = client.submit_optimization(
                {
                    "optimizer": "BootstrapFewShotWithRandomSearch",
                    "params": {"num_candidate_programs": 2},
                    "program": "qa",
                    "trainset": rows,
                    "input_keys": ["question"],
                    "metric": METRIC,
                    "deploy": True,
                }
            )
            items = list(client.follow_optimization(job["id"]))
            program = client.program("qa")
        names = [item["event"] for item in items]
        assert names[0] == "status" and names[-1] == "done" and "trial" in names
        assert items[-1]["data"]["status"] == "completed"
        assert program["version"] == 2


class TestDrain:
    async def test_sigterm_during_200_in_flight_runs(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """SIGTERM with 200 runs in flight: every one completes, none is lost, exit 0."""
        lm = start_lm_process("--latency", "1.0")
        try:
            daemon = spawn_daemon(
                LMVISOR_SERVER__DRAIN_TIMEOUT="20",
                LMVISOR_PROVIDERS__OPENAI__MAX_IN_FLIGHT="256",
                **lm.env(),
            )
            with httpx.Client(base_url=daemon.url) as client:
                program_id = _register(client)
            results = await _runs_through_sigterm(daemon, lm, program_id, 200)
            code = daemon.wait(20)  # the drain timeout: it must have exited by then
        finally:
            lm.stop()
        assert code == 0
        assert len(results) == 200
        assert all(isinstance(r, httpx.Response) for r in results), [
            r for r in results if not isinstance(r, httpx.Response)
        ][:3]
        statuses = {r.status_code for r in results if isinstance(r, httpx.Response)}
        assert statuses == {200}
        ids = {r.json()["correlation_id"] for r in results if isinstance(r, httpx.Response)}
        assert len(ids) == 200
        stopped = daemon.next_log("server.stopped")
        assert stopped["exit_code"] == 0

    def test_sigterm_checkpoints_a_running_job(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Any
    ) -> None:
        """SIGTERM stops a running job with its progress stored and flushes the events; the
        next daemon on the same data directory resumes it to completion."""
        lm = start_lm_process("--latency", "0.2")
        env = {
            "LMVISOR_DATA_DIR": str(tmp_path),
            "LMVISOR_EVENTS__SQLITE_PATH": str(tmp_path / "events.sqlite3"),
            "LMVISOR_SERVER__METRICS": json.dumps([METRIC]),
            **lm.env(),
        }
        rows = [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(10)]
        job_spec = {
            "optimizer": "COPRO",
            "params": {"breadth": 4, "depth": 3},
            "program": QA,
            "trainset": rows,
            "input_keys": ["question"],
            "metric": METRIC,
        }
        try:
            first = spawn_daemon(**env)
            with DaemonClient(first.url) as client:
                job_id = client.submit_optimization(job_spec)["id"]
                while client.optimization(job_id)["trials_done"] < 1:
                    time.sleep(0.02)
            first.signal(signal.SIGTERM)
            assert first.wait(30) == 0
            checkpointed = first.next_log("server.checkpointed")
            assert (checkpointed["step"], checkpointed["result"]) == ("optimization jobs", [job_id])
            second = spawn_daemon(**env)
            with DaemonClient(second.url) as client:
                suspended = client.events(type=["optimization.suspended"])
                items = list(client.follow_optimization(job_id))
        finally:
            lm.stop()
        assert [e["data"]["optimization_id"] for e in suspended] == [job_id]
        assert items[-1]["data"]["status"] == "completed"
        assert items[-1]["data"]["trials_done"] == items[-1]["data"]["trials_total"] > 0


async def _runs_through_sigterm(
    daemon: DaemonProcess, lm: LMProcess, program_id: str, count: int
) -> list[httpx.Response | BaseException]:
    """Start `count` runs, SIGTERM the daemon once all reach the LM, return every outcome."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=daemon.url, limits=limits, timeout=60) as client:
        runs = [
            asyncio.ensure_future(
                client.post(
                    f"/v1/programs/{program_id}/run",
                    json={"inputs": {"question": f"in flight {i}"}},
                )
            )
            for i in range(count)
        ]
        async with httpx.AsyncClient(base_url=lm.url) as probe:
            for _ in range(1000):
                if (await probe.get("/stats")).json()["in_flight"] >= count:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the runs never all reached the LM server")
        daemon.signal(signal.SIGTERM)
        return list(await asyncio.gather(*runs, return_exceptions=True))
