"""Tests for lmvisor.server.optimizations and optimization_progress: jobs over HTTP, in-process."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest

from lmvisor.server.optimization_progress import _next_trials, job_progress
from lmvisor.server.optimizations import _OPTIMIZER
from lmvisor.services.app import App
from lmvisor.services.optimization_job import OPTIMIZERS
from lmvisor.testing.lm_server import LMServer
from tests.server.conftest import api_client, sse_items

METRIC = "tests.server._metrics:answer_length"
QA = {"module": "Predict", "signature": "question -> answer"}


def _job(**changes: Any) -> dict[str, Any]:
    rows = [{"question": f"question {i}?", "answer": f"answer {i}"} for i in range(8)]
    job = {
        "optimizer": "BootstrapFewShotWithRandomSearch",
        "params": {"num_candidate_programs": 2, "max_bootstrapped_demos": 2},
        "program": "qa",
        "trainset": rows,
        "input_keys": ["question"],
        "metric": METRIC,
    }
    return {**job, **changes}


async def _ready(client: Any) -> None:
    answer = await client.post("/v1/programs", json={"id": "qa", "program": QA})
    assert answer.status_code == 201, answer.text


async def _until_done(client: Any, job_id: str) -> dict[str, Any]:
    """The job's status once it has finished; a loaded machine gets a minute."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 60.0
    while loop.time() < give_up:
        status: dict[str, Any] = (await client.get(f"/v1/optimizations/{job_id}")).json()
        if status["status"] != "running":
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} still running")


class TestSubmit:
    async def test_job_runs_streams_progress_and_deploys(self, app: App) -> None:
        """A job answers 202, streams status/trial/done over SSE, completes and deploys."""
        async with api_client(app, metrics=[METRIC]) as (_, client):
            await _ready(client)
            submitted = await client.post("/v1/optimizations", json=_job(deploy=True))
            job_id = submitted.json()["id"]
            items = sse_items(await client.get(f"/v1/optimizations/{job_id}/events"))
            status = (await client.get(f"/v1/optimizations/{job_id}")).json()
            result = (await client.get(f"/v1/optimizations/{job_id}/result")).json()
            program = (await client.get("/v1/programs/qa")).json()
            listed = (await client.get("/v1/optimizations")).json()
        assert submitted.status_code == 202
        assert submitted.headers["location"] == f"/v1/optimizations/{job_id}"
        assert submitted.json()["status"] == "running"
        names = [name for name, _ in items]
        assert names[0] == "status" and names[-2:] == ["done", "end"]
        trials = [data for name, data in items if name == "trial"]
        assert [t["iteration"] for t in trials] == list(range(len(trials)))
        assert all(t["metric"] == "answer_length" for t in trials)
        done = items[-2][1]
        assert (done["status"], done["trials_done"]) == ("completed", status["trials_total"])
        assert done["trials_done"] == len(trials) > 0
        assert status["status"] == "completed" and status["version"] == 2
        assert result["module_type"] == "Predict" and result["spec"]["module"] == "Predict"
        assert program["version"] == 2
        assert [job["id"] for job in listed["optimizations"]] == [job_id]

    async def test_an_inline_program_spec_needs_no_registration(self, app: App) -> None:
        """A job may carry its program as a spec instead of an id."""
        async with api_client(app, metrics=[METRIC]) as (_, client):
            job_id = (await client.post("/v1/optimizations", json=_job(program=QA))).json()["id"]
            status = await _until_done(client, job_id)
        assert (status["status"], status["program"]) == ("completed", "Predict")

    @pytest.mark.parametrize(
        ("changes", "status", "code", "field"),
        [
            ({"metric": "os:system"}, 403, "not_allowed", "metric"),
            ({"metric": "tests.server._metrics:nothing"}, 422, "metric_error", None),
            ({"trainset": "/etc/passwd"}, 422, "validation_error", "body.trainset"),
            ({"trainset": []}, 422, "validation_error", "body.trainset"),
            ({"optimizer": "Magic"}, 422, "validation_error", "body.optimizer"),
            ({"params": {"depth": 2}}, 422, "optimization_spec_error", "params.depth"),
            ({"trainset": [{"q": 1}]}, 422, "optimization_spec_error", "trainset[0]"),
            ({"deploy": True, "program": QA}, 422, "optimization_spec_error", "deploy"),
        ],
    )
    async def test_bad_jobs_are_typed_4xx(
        self,
        app: App,
        changes: dict[str, Any],
        status: int,
        code: str,
        field: str | None,
    ) -> None:
        """A job naming what is not allowed or malformed is refused, naming the field."""
        async with api_client(app, metrics=["tests.server._metrics:*"]) as (_, client):
            await _ready(client)
            answer = await client.post("/v1/optimizations", json=_job(**changes))
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == (code, field)

    async def test_metrics_allowed_by_module_or_by_the_hook(self, app: App) -> None:
        """`pkg.mod:*` allows every function of a module; `allow_metric` adds one at run time."""
        async with api_client(app, metrics=["tests.server._metrics:*"]) as (context, _):
            assert context.metric_allowed("tests.server._metrics:answered")
            assert context.metric_allowed("tests.server._metrics.answered")
            assert not context.metric_allowed("tests.services._optimization_support:always")
            context.allow_metric("tests.services._optimization_support.always")
            assert context.metric_allowed("tests.services._optimization_support:always")
            with pytest.raises(ValueError, match=r"^metric 'nomodule' must be"):
                context.allow_metric("nomodule")


class TestLifecycle:
    async def test_unknown_jobs_are_404(self, app: App) -> None:
        """Every job route names an unknown id with a 404."""
        async with api_client(app) as (_, client):
            answers = [
                await client.get("/v1/optimizations/nope"),
                await client.get("/v1/optimizations/nope/events"),
                await client.get("/v1/optimizations/nope/result"),
                await client.post("/v1/optimizations/nope/cancel"),
            ]
        assert {(a.status_code, a.json()["error"]["code"]) for a in answers} == {
            (404, "unknown_job")
        }

    async def test_cancel_a_running_job(self, app: App, lm_server: LMServer) -> None:
        """Cancelling stops the job; its result is a 409 and its stream ends `cancelled`."""
        lm_server.latency = 0.05
        async with api_client(app, metrics=[METRIC]) as (_, client):
            await _ready(client)
            job_id = (await client.post("/v1/optimizations", json=_job())).json()["id"]
            cancelled = (await client.post(f"/v1/optimizations/{job_id}/cancel")).json()
            result = await client.get(f"/v1/optimizations/{job_id}/result")
            items = sse_items(await client.get(f"/v1/optimizations/{job_id}/events"))
        assert cancelled["status"] == "cancelled"
        assert cancelled["error"]["code"] == "cancelled"
        assert (result.status_code, result.json()["error"]["code"]) == (409, "job_not_finished")
        assert [name for name, _ in items] == ["status", "done", "end"]
        assert items[1][1]["status"] == "cancelled"


class TestProgress:
    async def test_progress_of_a_finished_job_is_its_final_status(self, app: App) -> None:
        """Following a completed job yields its status, then `done` at once."""
        async with api_client(app, metrics=[METRIC]) as (_, client):
            await _ready(client)
            job_id = (await client.post("/v1/optimizations", json=_job())).json()["id"]
            await _until_done(client, job_id)
        messages = [message async for message in job_progress(app, job_id)]
        assert [m.event for m in messages] == ["status", "done"]
        assert messages[1].data["status"] == "completed"

    async def test_a_follower_cancelled_as_a_trial_arrives_stays_cancelled(self) -> None:
        """Cancelling the progress stream in the loop turn a trial arrives cancels it: the
        trial does not win over the cancellation (asyncio.wait_for in 3.11 let it)."""
        trials: asyncio.Queue[Any] = asyncio.Queue()
        waiting = asyncio.ensure_future(_next_trials(trials, 60.0))
        for _ in range(3):
            await asyncio.sleep(0)  # parked on the queue
        trials.put_nowait("trial")
        waiting.cancel()
        await asyncio.wait([waiting])
        assert waiting.cancelled()

    def test_the_documented_optimizers_are_the_services(self) -> None:
        """The API's optimizer names are exactly the ones the services run."""
        assert get_args(_OPTIMIZER) == OPTIMIZERS
