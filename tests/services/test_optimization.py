"""The OptimizationCoordinator: jobs submitted, tracked, cancelled, resumed after kills."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lmvisor.optimizers import MetricError
from lmvisor.runtime import Runtime
from lmvisor.runtime.config_service import update_config
from lmvisor.runtime.observe.names import (
    OPTIMIZATION_COMPLETED,
    OPTIMIZATION_FAILED,
    OPTIMIZATION_STARTED,
    OPTIMIZATION_SUSPENDED,
)
from lmvisor.runtime.supervisor import which_children
from lmvisor.services import (
    COORDINATOR_NAME,
    JobNotFinished,
    OptimizationSpecError,
    OptimizationStatus,
    OptimizationStore,
    UnknownJob,
    cancel_optimization,
    list_optimizations,
    optimization_result,
    optimization_spec,
    optimization_status,
    optimization_worker,
    submit_optimization,
    suspend_optimizations,
)
from lmvisor.services._job_claims import JobClaims
from tests.services._optimization_support import SlowLM, train_rows

ROOT = Path(__file__).resolve().parents[2]
METRIC = "tests.services._optimization_support:hashed_metric"
PROGRAM = {"module": "Predict", "signature": "question -> answer"}


def _copro(rows: int = 20, **params: Any) -> dict[str, Any]:
    return {
        "optimizer": "COPRO",
        "params": {"breadth": 3, "depth": 2, **params},
        "program": PROGRAM,
        "trainset": train_rows(rows),
        "input_keys": ["question"],
        "metric": METRIC,
    }


async def _start(runtime: Runtime, lm: SlowLM, path: Path | None = None, **kw: Any) -> Any:
    await runtime.start_child(optimization_spec(lm=lm, store_path=path, **kw))
    return runtime.via(COORDINATOR_NAME)


async def _wait(coordinator: Any, job_id: str, status: str = "running") -> OptimizationStatus:
    """The job's status once it has left `status`; a loaded machine gets a minute."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 60.0
    while loop.time() < give_up:
        found = await optimization_status(coordinator, job_id)
        if found.status != status:
            return found
        await asyncio.sleep(0.005)
    raise AssertionError(f"job {job_id} still {status}")


class TestSubmit:
    async def test_job_runs_to_a_result(self, runtime: Runtime) -> None:
        """A submitted job completes; status, result and lifecycle events follow."""
        lm = SlowLM()
        coordinator = await _start(runtime, lm)
        job_id = await submit_optimization(coordinator, _copro())
        done = await _wait(coordinator, job_id)
        assert done.status == "completed" and done.trials_done == done.trials_total == 6
        program = await optimization_result(coordinator, job_id)
        assert program.predictors()[0].signature.instructions.startswith("proposed_instruction")
        assert lm.calls == 122
        kinds = [e.type for e in runtime.events.ring.query(type="optimization.*")]
        assert kinds[0] == OPTIMIZATION_STARTED and kinds[-1] == OPTIMIZATION_COMPLETED
        assert kinds.count("optimization.iteration") == 6
        assert [s.id for s in await list_optimizations(coordinator)] == [job_id]

    async def test_bad_specs_are_typed_errors(self, runtime: Runtime) -> None:
        """A malformed job is refused with the field named; nothing starts."""
        coordinator = await _start(runtime, SlowLM())
        with pytest.raises(OptimizationSpecError, match=r"^invalid optimization job at optimizer:"):
            await submit_optimization(coordinator, {**_copro(), "optimizer": "GEPA"})
        with pytest.raises(OptimizationSpecError, match=r"^invalid optimization job at params.x:"):
            await submit_optimization(coordinator, _copro(x=1))
        with pytest.raises(OptimizationSpecError, match=r"at trainset\[0\]: has no input field"):
            await submit_optimization(coordinator, {**_copro(), "input_keys": ["query"]})
        with pytest.raises(MetricError, match=r"^metric 'nope:fn': cannot import 'nope'"):
            await submit_optimization(coordinator, {**_copro(), "metric": "nope:fn"})
        with pytest.raises(UnknownJob, match=r"^no optimization job 'x'$"):
            await optimization_status(coordinator, "x")
        assert await list_optimizations(coordinator) == []

    @pytest.mark.parametrize(
        ("optimizer", "params", "field", "problem"),
        [
            ("COPRO", {"breadth": math.nan}, "breadth", "must be a whole number"),
            ("COPRO", {"depth": "3"}, "depth", "must be a whole number"),
            ("COPRO", {"depth": True}, "depth", "must be a whole number"),
            ("COPRO", {"breadth": 10**30}, "breadth", "must be at most 1000000"),
            ("COPRO", {"init_temperature": math.inf}, "init_temperature", "must be a finite"),
            (
                "BootstrapFewShotWithRandomSearch",
                {"num_candidate_programs": 10**30},
                "num_candidate_programs",
                "must be at most 1000000",
            ),
            ("LabeledFewShot", {"sample": 1}, "sample", "must be true or false"),
            ("MIPROv2", {"auto": 3}, "auto", "must be a string"),
            ("MIPROv2", {"seed": 2**64}, "seed", "must be at most 9223372036854775807"),
            ("MIPROv2", {"num_trials": 0}, "num_trials", "must be at least 1"),
            ("MIPROv2", {"minibatch_size": -2}, "minibatch_size", "must be at least 1"),
        ],
    )
    async def test_settings_of_the_wrong_kind_are_refused_at_submit(
        self, runtime: Runtime, optimizer: str, params: dict[str, Any], field: str, problem: str
    ) -> None:
        """A setting that is not a count, flag, finite number or name as its kind needs is
        refused at submit naming it (NaN failed late with a TypeError's text; 10**30
        candidates crashed the worker until its supervisor gave up, or an OverflowError)."""
        coordinator = await _start(runtime, SlowLM())
        spec = {**_copro(), "optimizer": optimizer, "params": params}
        with pytest.raises(
            OptimizationSpecError,
            match=rf"^invalid optimization job at params\.{field}: {problem}",
        ):
            await submit_optimization(coordinator, spec)
        assert await list_optimizations(coordinator) == []

    @pytest.mark.parametrize(
        ("optimizer", "params", "problem"),
        [
            ("MIPROv2", {"seed": -1}, "MIPROv2.seed must be"),
            ("COPRO", {"breadth": 1}, "COPRO.breadth must be"),
        ],
    )
    async def test_a_setting_the_optimizer_refuses_fails_the_submit(
        self, runtime: Runtime, optimizer: str, params: dict[str, Any], problem: str
    ) -> None:
        """A setting of the right kind that the optimizer itself refuses fails the submit,
        naming it (it was accepted and the job failed once its worker built the optimizer)."""
        coordinator = await _start(runtime, SlowLM())
        spec = {**_copro(), "optimizer": optimizer, "params": params}
        with pytest.raises(
            OptimizationSpecError, match=rf"^invalid optimization job at params: {problem}"
        ):
            await submit_optimization(coordinator, spec)
        assert await list_optimizations(coordinator) == []

    async def test_hostile_jsonl_is_a_typed_error(self, runtime: Runtime, tmp_path: Path) -> None:
        """A JSONL line nested past the decoder's depth, or a file not in UTF-8, is refused
        at submit with the line named; the coordinator keeps serving."""
        coordinator = await _start(runtime, SlowLM())
        deep, latin = tmp_path / "deep.jsonl", tmp_path / "latin.jsonl"
        deep.write_text('{"question": "q", "answer": "a"}\n' + "[" * 100_000 + "\n")
        latin.write_bytes(b'{"question": "caf\xe9", "answer": "a"}\n')
        with pytest.raises(
            OptimizationSpecError,
            match=r"^invalid optimization job at trainset:2: not valid JSON: nested too deeply$",
        ):
            await submit_optimization(coordinator, {**_copro(), "trainset": str(deep)})
        with pytest.raises(
            OptimizationSpecError,
            match=r"^invalid optimization job at trainset: '.*latin.jsonl' is not UTF-8 \(",
        ):
            await submit_optimization(coordinator, {**_copro(), "trainset": str(latin)})
        assert await list_optimizations(coordinator) == []

    async def test_a_dataset_path_that_is_no_regular_file(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A FIFO, a device or a directory as a dataset path is refused at submit without
        reading it: a FIFO held the coordinator's loop for good, /dev/zero ran it out of
        memory."""
        coordinator = await _start(runtime, SlowLM())
        fifo = tmp_path / "rows.jsonl"
        os.mkfifo(fifo)
        for path in (fifo, Path("/dev/zero"), tmp_path):
            with pytest.raises(
                OptimizationSpecError,
                match=r"^invalid optimization job at trainset: '.*': not a regular file$",
            ):
                await submit_optimization(coordinator, {**_copro(), "trainset": str(path)})
        assert await list_optimizations(coordinator) == []

    async def test_a_spec_naming_models_needs_lm_for(self, runtime: Runtime) -> None:
        """An inline two_step program is built at submit with the given `lm_for` (its model
        names resolved there); without one it is refused, naming the field."""
        program = {**PROGRAM, "adapter": {"name": "two_step", "extraction_lm": "openai/x"}}
        spec = {**_copro(), "program": program}
        bare = await _start(runtime, SlowLM())
        with pytest.raises(
            OptimizationSpecError,
            match=r"^invalid optimization job at program\.adapter\.extraction_lm: building a",
        ):
            await submit_optimization(bare, spec)
        assert await list_optimizations(bare) == []
        await runtime.terminate_child("optimization")
        await runtime.delete_child("optimization")
        asked: list[str] = []

        def lm_for(model: str) -> SlowLM:
            asked.append(model)
            return SlowLM()

        coordinator = await _start(runtime, SlowLM(), lm_for=lm_for)
        done = await _wait(coordinator, await submit_optimization(coordinator, spec))
        assert done.status == "completed"
        assert "openai/x" in asked  # at submit, and again in the worker

    async def test_jsonl_trainset(self, runtime: Runtime, tmp_path: Path) -> None:
        """A trainset may be a JSONL file path; a line break other than "\\n" inside a
        string (U+2028, as `json.dumps(..., ensure_ascii=False)` writes it) is text."""
        path = tmp_path / "train.jsonl"
        rows = [{**r, "question": f"{r['question']}\u2028more"} for r in train_rows(6)]
        json = __import__("json")
        path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        coordinator = await _start(runtime, SlowLM())
        spec = {**_copro(), "optimizer": "BootstrapFewShot", "params": {}, "trainset": str(path)}
        done = await _wait(coordinator, await submit_optimization(coordinator, spec))
        assert done.status == "completed"

    async def test_deploy_records_the_version(self, runtime: Runtime) -> None:
        """deploy=True hot-swaps the result through the given callable and records the version."""
        deployed: list[tuple[str, Any]] = []

        async def resolve(program_id: str) -> Any:
            from lmvisor.programs import Predict

            return Predict("question -> answer")

        async def deploy(program_id: str, module: Any) -> int:
            deployed.append((program_id, module))
            return 7

        coordinator = await _start(runtime, SlowLM(), resolve_program=resolve, deploy=deploy)
        spec = {**_copro(), "program": "qa", "deploy": True}
        done = await _wait(coordinator, await submit_optimization(coordinator, spec))
        assert done.version == 7 and deployed[0][0] == "qa"


class TestLifecycle:
    async def test_cancel(self, runtime: Runtime) -> None:
        """A cancelled job stops, keeps no result and reports a failed event."""
        coordinator = await _start(runtime, SlowLM(delay=0.05))
        job_id = await submit_optimization(coordinator, _copro())
        await asyncio.sleep(0.02)
        status = await cancel_optimization(coordinator, job_id)
        assert status.status == "cancelled"
        with pytest.raises(JobNotFinished, match=r"has no result \(status: cancelled\)$"):
            await optimization_result(coordinator, job_id)
        failed = runtime.events.ring.query(type=OPTIMIZATION_FAILED)
        assert failed[-1].data["code"] == "cancelled"
        assert runtime.whereis(("optimization_worker", job_id)) is None

    async def test_two_jobs_run_concurrently(self, runtime: Runtime) -> None:
        """Two jobs run side by side and each gets its own result."""
        lm = SlowLM(delay=0.001)
        coordinator = await _start(runtime, lm)
        first = await submit_optimization(coordinator, _copro())
        second = await submit_optimization(
            coordinator, {**_copro(), "params": {"breadth": 2, "depth": 1}}
        )
        results = [await _wait(coordinator, first), await _wait(coordinator, second)]
        assert [r.status for r in results] == ["completed", "completed"]
        assert [r.trials_done for r in results] == [6, 2]

    async def test_failing_job_does_not_touch_others(self, runtime: Runtime) -> None:
        """A job whose metric raises fails alone; the other completes."""
        coordinator = await _start(runtime, SlowLM())
        bad = await submit_optimization(
            coordinator, {**_copro(), "metric": "tests.services._optimization_support:failing"}
        )
        good = await submit_optimization(coordinator, _copro())
        assert (await _wait(coordinator, bad)).status == "failed"
        assert (await _wait(coordinator, good)).status == "completed"
        failed = await optimization_status(coordinator, bad)
        assert failed.error is not None and failed.error["code"] == "too_many_errors"

    async def test_killed_worker_resumes_without_repeating_trials(self, runtime: Runtime) -> None:
        """A worker killed mid-run restarts, replays its checkpoint and ends the same."""
        reference = SlowLM()
        coordinator = await _start(runtime, reference)
        whole = await _wait(coordinator, await submit_optimization(coordinator, _copro()))
        expected = (await optimization_result(coordinator, whole.id)).dump_state()

        lm = SlowLM(delay=0.002)
        async with Runtime.open() as other:
            coordinator = await _start(other, lm)
            job_id = await submit_optimization(coordinator, _copro())
            store_steps = 0
            while store_steps < 3:
                await asyncio.sleep(0.005)
                store_steps = (await optimization_status(coordinator, job_id)).trials_done
            worker = other.whereis(("optimization_worker", job_id))
            assert worker is not None
            await worker.stop(RuntimeError("killed by the test"))
            done = await _wait(coordinator, job_id)
            assert done.status == "completed"
            assert other.whereis(("optimization_worker", job_id)) is None
            result = await optimization_result(coordinator, job_id)
            events = other.events.ring.query(type="optimization.iteration")
        assert result.dump_state() == expected
        # every trial was scored once; only requests of trials cut short by the kill repeat
        assert sorted(e.data["iteration"] for e in events) == list(range(6))
        assert reference.calls <= lm.calls <= reference.calls + 60

    async def test_concurrency_change_applies_to_running_jobs(self, runtime: Runtime) -> None:
        """optimization.concurrency updates resize a running job's bound."""
        lm = SlowLM(delay=0.01)
        coordinator = await _start(runtime, lm)
        job_id = await submit_optimization(coordinator, _copro())
        while lm.calls < 5:  # noqa: ASYNC110 (polling a plain counter)
            await asyncio.sleep(0.002)
        assert lm.peak > 2
        await update_config(runtime.via("config"), "optimization.concurrency", 2)
        # The change reached the coordinator before this call did (one mailbox, in order).
        await optimization_status(coordinator, job_id)
        while lm.in_flight > 2:  # noqa: ASYNC110 (calls started before the change end)
            await asyncio.sleep(0.002)
        lm.peak = lm.in_flight
        await _wait(coordinator, job_id)
        assert lm.peak <= 2


class TestSuspend:
    async def test_suspended_job_keeps_its_progress_and_resumes(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """Suspending stops the worker with the job still running and its progress stored;
        a coordinator started on the same store finishes it without repeating trials."""
        db = tmp_path / "optimization.sqlite"
        coordinator = await _start(runtime, SlowLM(delay=0.002), db)
        job_id = await submit_optimization(coordinator, _copro())
        while (await optimization_status(coordinator, job_id)).trials_done < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        assert await suspend_optimizations(coordinator) == [job_id]
        assert runtime.whereis(("optimization_worker", job_id)) is None
        stored = {job.id: job for job in await OptimizationStore(db).jobs()}[job_id]
        assert stored.status == "running" and stored.trials_done >= 2
        (event,) = runtime.events.ring.query(type=OPTIMIZATION_SUSPENDED)
        assert event.data["optimization_id"] == job_id
        assert await suspend_optimizations(coordinator) == []
        async with Runtime.open() as reopened:
            resumed = await _start(reopened, SlowLM(), db)
            done = await _wait(resumed, job_id)
            trials = reopened.events.ring.query(type="optimization.iteration")
        assert done.status == "completed" and done.trials_done == 6
        assert min(e.data["iteration"] for e in trials) >= stored.trials_done

    @pytest.mark.parametrize(
        "damage",
        [{"score": "high", "scores": [1.0]}, [75.0], None, {"score": 75.0, "scores": "1"}],
        ids=["score-text", "a-list", "null", "scores-text"],
    )
    async def test_a_damaged_step_fails_the_resumed_job_with_a_typed_error(
        self, runtime: Runtime, tmp_path: Path, damage: Any
    ) -> None:
        """A recorded trial of the wrong shape (an older or damaged run wrote it) fails the
        resumed job as checkpoint_error naming the step; the coordinator keeps serving."""
        db = tmp_path / "optimization.sqlite"
        store = OptimizationStore(db)
        coordinator = await _start(runtime, SlowLM(), db)
        job_id = await submit_optimization(coordinator, _copro())
        done = await _wait(coordinator, job_id)
        key = next(k for k in await store.steps(job_id) if k.startswith("copro/eval/"))
        await store.record_step(job_id, key, damage)
        record = await store.job(job_id)
        assert record is not None
        await store.save_job(record.evolve(status="running", error=None))
        await store.close()
        async with Runtime.open() as reopened:
            resumed = await _start(reopened, SlowLM(), db)
            failed = await _wait(resumed, job_id)
            again = await _wait(resumed, await submit_optimization(resumed, _copro()))
        assert done.status == "completed" and failed.status == "failed"
        assert failed.error is not None and failed.error["code"] == "checkpoint_error"
        assert failed.error["message"].startswith(f"checkpoint step {key!r} cannot be replayed: ")
        assert again.status == "completed"

    async def test_finished_jobs_are_left_alone(self, runtime: Runtime) -> None:
        """A completed job is not touched by a suspension."""
        coordinator = await _start(runtime, SlowLM())
        job_id = await submit_optimization(coordinator, _copro())
        await _wait(coordinator, job_id)
        assert await suspend_optimizations(coordinator) == []
        assert (await optimization_status(coordinator, job_id)).status == "completed"


class TestProcessKill:
    async def test_reopened_app_resumes_the_job(self, runtime: Runtime, tmp_path: Path) -> None:
        """Kill -9 the process mid-job; the same data dir resumes it to the same result."""
        reference = SlowLM()
        coordinator = await _start(runtime, reference)
        whole = await _wait(coordinator, await submit_optimization(coordinator, _copro()))
        expected = (await optimization_result(coordinator, whole.id)).dump_state()

        db = tmp_path / "optimization.sqlite"
        script = textwrap.dedent(f"""
            import asyncio
            from lmvisor.runtime import Runtime
            from lmvisor.services import optimization_spec, submit_optimization
            from tests.services._optimization_support import SlowLM
            from tests.services.test_optimization import _copro

            async def main():
                async with Runtime.open() as rt:
                    await rt.start_child(optimization_spec(lm=SlowLM(0.01), store_path={str(db)!r}))
                    await submit_optimization(rt.via("optimization"), _copro())
                    await asyncio.sleep(60)

            asyncio.run(main())
        """)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, env=env, cwd=ROOT)
        try:
            store = OptimizationStore(db)
            steps = 0
            for _ in range(3000):
                await asyncio.sleep(0.01)
                if db.exists():
                    jobs = await store.jobs()
                    steps = await store.count_steps(jobs[0].id) if jobs else 0
                    if steps >= 2:
                        break
            assert steps >= 2
            await store.close()
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        lm = SlowLM()
        async with Runtime.open() as reopened:
            coordinator = await _start(reopened, lm, db)
            (job,) = await list_optimizations(coordinator)
            done = await _wait(coordinator, job.id)
            assert done.status == "completed"
            result = await optimization_result(coordinator, job.id)
        assert result.dump_state() == expected
        assert lm.calls < reference.calls


class _GatedLM(SlowLM):
    """A SlowLM whose every call waits until `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def complete(self, request: Any) -> Any:
        await self.gate.wait()
        return await super().complete(request)


class TestSharedFile:
    async def test_a_second_app_leaves_a_live_job_to_its_runner(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A coordinator opened on a jobs file whose running job another app runs does not run
        it again (it resumed it, paying every LM call twice); it reports the stored record."""
        db = tmp_path / "optimization.sqlite"
        first_lm, second_lm = _GatedLM(), SlowLM()
        first = await _start(runtime, first_lm, db)
        job_id = await submit_optimization(first, _copro())
        async with Runtime.open() as other:
            second = await _start(other, second_lm, db)
            assert (await optimization_status(second, job_id)).status == "running"
            first_lm.gate.set()
            done = await _wait(first, job_id)
            assert [(j.id, j.status) for j in await list_optimizations(second)] == [
                (job_id, "completed")
            ]
            seen = await optimization_status(second, job_id)
            assert second_lm.calls == 0
            assert (seen.status, seen.trials_done) == (done.status, done.trials_done)
            assert await _wait(second, await submit_optimization(second, _copro(rows=4)))

    async def test_a_suspended_job_is_free_for_another_app(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """Suspending a job drops its claim: a coordinator on the same file resumes it."""
        db = tmp_path / "optimization.sqlite"
        first = await _start(runtime, _GatedLM(), db)
        job_id = await submit_optimization(first, _copro())
        assert await suspend_optimizations(first) == [job_id]
        lm = SlowLM()
        async with Runtime.open() as other:
            done = await _wait(await _start(other, lm, db), job_id)
        assert done.status == "completed" and lm.calls > 0

    async def test_claims_that_cannot_be_kept_do_not_stop_jobs(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """Where no claim file can be made (its folder's name is a file), jobs run unclaimed."""
        db = tmp_path / "optimization.sqlite"
        (tmp_path / "optimization.sqlite.claims").write_text("in the way")
        coordinator = await _start(runtime, SlowLM(), db)
        job = await _wait(coordinator, await submit_optimization(coordinator, _copro(rows=4)))
        assert job.status == "completed"

    async def test_a_closed_app_leaves_its_file_whole_and_its_jobs_free(
        self, tmp_path: Path
    ) -> None:
        """Stopping the subtree mid-job closes the jobs file (nothing left only in its -wal)
        and drops the claim: another app resumes the job and finishes it."""
        db = tmp_path / "optimization.sqlite"
        async with Runtime.open() as first:
            coordinator = await _start(first, _GatedLM(), db)
            job_id = await submit_optimization(coordinator, _copro())
        assert not (tmp_path / "optimization.sqlite-wal").exists()
        lm = SlowLM()
        async with Runtime.open() as other:
            done = await _wait(await _start(other, lm, db), job_id)
        assert done.status == "completed" and lm.calls > 0

    async def test_a_job_its_runner_left_is_taken_over_by_an_app_still_open(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A job whose runner went away (its app closed mid-job) while another app stays
        open on the file is resumed there at its next status query, not left running in
        the file with nobody running it."""
        db = tmp_path / "optimization.sqlite"
        lm = SlowLM()
        async with Runtime.open() as first:
            job_id = await submit_optimization(await _start(first, _GatedLM(), db), _copro())
            second = await _start(runtime, lm, db)
            assert (await optimization_status(second, job_id)).status == "running"
            assert lm.calls == 0
        done = await _wait(second, job_id)
        assert done.status == "completed" and lm.calls > 0

    async def test_an_apps_own_suspended_job_stays_suspended(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A job the app suspended (a drain) is not taken over again by its own status
        queries: it waits for the next app on the file."""
        lm = SlowLM()
        coordinator = await _start(runtime, lm, tmp_path / "optimization.sqlite")
        job_id = await submit_optimization(coordinator, _copro())
        assert await suspend_optimizations(coordinator) == [job_id]
        calls = lm.calls
        for _ in range(3):
            assert (await optimization_status(coordinator, job_id)).status == "running"
            assert [j.id for j in await list_optimizations(coordinator)] == [job_id]
            await asyncio.sleep(0.01)
        assert runtime.whereis(("optimization_worker", job_id)) is None
        assert lm.calls == calls


async def _crash_coordinator(runtime: Runtime) -> None:
    """Crash the coordinator and wait until its supervisor has started the next one."""
    first = runtime.whereis(COORDINATOR_NAME)
    assert first is not None
    await first.stop(RuntimeError("coordinator crash, by the test"))
    while runtime.whereis(COORDINATOR_NAME) in (None, first):  # noqa: ASYNC110
        await asyncio.sleep(0.002)


class TestCoordinatorRestart:
    async def test_a_restarted_coordinator_hears_of_a_running_jobs_end(
        self, runtime: Runtime
    ) -> None:
        """After the coordinator restarts, the jobs it left running are still watched: one
        whose supervisor then dies is settled as crashed (its Down was lost with the
        predecessor's monitor, and the job read 'running' for good)."""
        lm = _GatedLM()
        coordinator = await _start(runtime, lm)
        job_id = await submit_optimization(coordinator, _copro())
        await _crash_coordinator(runtime)
        assert (await optimization_status(coordinator, job_id)).status == "running"
        jobs = runtime.whereis("optimization_jobs")
        assert jobs is not None
        [job_supervisor] = [c.ref for c in await which_children(jobs) if c.ref is not None]
        await job_supervisor.stop(RuntimeError("job supervisor crash, by the test"))
        done = await _wait(coordinator, job_id)
        assert done.status == "failed" and done.error is not None
        assert done.error["code"] == "crashed"

    async def test_a_job_that_ended_while_no_coordinator_ran_is_not_rerun(
        self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A job whose end reached the file but not the coordinator (its `JobFinished` lost
        with a crashed incarnation; the job's supervisor outlives its worker) takes its end
        from the file when the coordinator restarts: not 'running' for good, not rerun."""
        lost = asyncio.Event()
        real = optimization_worker.OptimizationWorker._notify

        def notify(self: Any, message: Any) -> None:
            if isinstance(message, optimization_worker.JobFinished):
                lost.set()  # gone with the incarnation that would have read it
                return
            real(self, message)

        monkeypatch.setattr(optimization_worker.OptimizationWorker, "_notify", notify)
        lm = _GatedLM()
        coordinator = await _start(runtime, lm)
        job_id = await submit_optimization(coordinator, _copro(rows=4))
        lm.gate.set()
        await lost.wait()
        while runtime.whereis((optimization_worker.WORKER_NAME, job_id)) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        await _crash_coordinator(runtime)
        assert (await optimization_status(coordinator, job_id)).status == "completed"
        jobs = runtime.whereis("optimization_jobs")
        assert jobs is not None
        assert [c for c in await which_children(jobs) if c.ref is not None] == []


class TestJobClaims:
    def test_one_holder_per_job_until_released(self, tmp_path: Path) -> None:
        """Two claim sets on one file exclude each other per job; a release frees the job."""
        one, two = JobClaims(tmp_path / "jobs.sqlite"), JobClaims(tmp_path / "jobs.sqlite")
        assert one.claim("a") and one.claim("a")  # held: claiming again is a no-op
        assert not two.claim("a") and two.claim("b")
        one.release("a")
        assert two.claim("a") and not one.claim("b")
        two.release_all()
        assert one.claim("a") and one.claim("b")
        one.release_all()

    def test_a_hostile_id_names_no_path(self, tmp_path: Path) -> None:
        """An id read back from a damaged file ('../x', NUL, huge) only names a hashed file."""
        claims = JobClaims(tmp_path / "jobs.sqlite")
        for job_id in ("../../escape", "a\x00b", "x" * 100_000, "\udcff"):
            assert claims.claim(job_id)
        assert [p.name for p in tmp_path.iterdir()] == ["jobs.sqlite.claims"]
        assert len(list((tmp_path / "jobs.sqlite.claims").iterdir())) == 4
        claims.release_all()

    def test_memory_store_claims_always_succeed(self) -> None:
        """Without a file there is no other holder: every claim succeeds."""
        one, two = JobClaims(None), JobClaims(None)
        assert one.claim("a") and two.claim("a")


def _alternate(path: Path, turns: int) -> tuple[int, int]:
    """Two holders on one jobs file, on two threads, claiming and releasing one job as fast
    as they can until each has held it `turns` times (or a cap of tries): the fewer times
    one held it, and how often both held it at once."""
    holding, both, took = [0], [0], [0, 0]
    lock = threading.Lock()

    def run(me: int) -> None:
        claims = JobClaims(path)
        for _ in range(200 * turns):
            if min(took) >= turns:
                return
            if not claims.claim("job"):
                continue
            with lock:
                holding[0] += 1
                both[0] += holding[0] > 1
            took[me] += 1
            time.sleep(0)  # let the other thread try while this one holds it
            with lock:
                holding[0] -= 1
            claims.release("job")

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads between open, lock and unlink
    try:
        threads = [threading.Thread(target=run, args=(me,)) for me in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    return min(took), both[0]


class TestClaimFiles:
    def test_a_released_claim_leaves_no_file(self, tmp_path: Path) -> None:
        """The claims directory holds a file per job claimed now: 50 claimed and released
        leave it empty, 3 still held leave 3."""
        claims = JobClaims(tmp_path / "jobs.sqlite")
        folder = tmp_path / "jobs.sqlite.claims"
        for i in range(50):
            assert claims.claim(f"job{i}")
        assert len(list(folder.iterdir())) == 50
        for i in range(47):
            claims.release(f"job{i}")
        assert len(list(folder.iterdir())) == 3
        claims.release_all()
        assert list(folder.iterdir()) == []

    def test_two_holders_alternating_never_both_hold_a_job(self, tmp_path: Path) -> None:
        """Two holders claiming and releasing one job in a tight loop never hold it both at
        once: one that locked a file the other had just unlinked sees it and tries again."""
        took, both = _alternate(tmp_path / "jobs.sqlite", turns=300)
        assert both == 0
        assert took == 300  # each held it that often: the loops really alternated

    async def test_settled_jobs_leave_no_claim_files(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """50 jobs run to their end leave no claim file; a job still running keeps its own."""
        db = tmp_path / "optimization.sqlite"
        coordinator = await _start(runtime, _GatedLM(), db)
        held = await submit_optimization(coordinator, _copro())
        spec = {**_copro(rows=2), "optimizer": "LabeledFewShot", "params": {"k": 1}}
        ids = [await submit_optimization(coordinator, spec) for _ in range(50)]
        for job_id in ids:
            assert (await _wait(coordinator, job_id)).status == "completed"
        assert len(list((tmp_path / "optimization.sqlite.claims").iterdir())) == 1
        assert (await cancel_optimization(coordinator, held)).status == "cancelled"
        assert list((tmp_path / "optimization.sqlite.claims").iterdir()) == []
