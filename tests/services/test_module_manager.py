"""Tests for the ModuleManager (lmvisor.services.module_manager / modules): registry, versions,
hot-swap, execution, protections and live config."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest

from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.errors import StateError
from lmvisor.programs.example import Prediction
from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse, LMStreamItem
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.spec import ProgramSpecError
from lmvisor.runtime.config_service import update_config
from lmvisor.runtime.correlation import CorrelationScope, current_scope
from lmvisor.runtime.errors import CircuitOpen, DeadlineExceeded, RateLimited
from lmvisor.runtime.observe.names import (
    MODULE_EXECUTION_COMPLETE,
    MODULE_EXECUTION_START,
    MODULE_ROLLED_BACK,
    MODULE_SWAPPED,
)
from lmvisor.runtime.supervisor import restart_child, terminate_child
from lmvisor.services.app import App
from lmvisor.services.errors import (
    ModuleAlreadyRegistered,
    NoPreviousVersion,
    ServiceInputError,
    UnknownModule,
    UnknownProvider,
    VersionMoved,
)
from lmvisor.services.module_manager import Swap
from lmvisor.testing.lm_server import LMServer

QA = {"module": "Predict", "signature": "question -> answer"}


class TagLM:
    """Answers every output field with the `tag:vN` found in the request's instructions."""

    model = "test/tag"
    capabilities = LMCapabilities()

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    async def complete(self, request: LMRequest) -> LMResponse:
        self.calls += 1
        await asyncio.sleep(self.delay)
        system = request.messages[0]["content"]
        found = re.search(r"tag:(v\d+)", system)
        tag = found.group(1) if found else "none"
        fields = re.findall(r"`(\w+)` \(str\)", system.split("Your output fields are:")[1])
        body = "".join(f"[[ ## {f} ## ]]\n{tag}\n\n" for f in fields)
        return LMResponse(outputs=[body + "[[ ## completed ## ]]"])

    async def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        raise TypeError("not used")
        yield  # pragma: no cover


class TwoStep(Module):
    """Drafts, then answers from the draft: two LM calls that must come from one version."""

    def __init__(self, tag: str, lm: TagLM) -> None:
        super().__init__()
        self.draft = Predict("question -> draft")
        self.finish = Predict("draft -> answer")
        for predictor in (self.draft, self.finish):
            predictor.signature = predictor.signature.with_instructions(f"Work. tag:{tag}")
            predictor.lm = lm

    async def forward(self, **inputs: Any) -> Prediction:
        draft = await self.draft(question=inputs["question"])
        final: Prediction = await self.finish(draft=draft.draft)
        return Prediction(draft=draft.draft, answer=final.answer)


class Blocked(Module):
    """Blocks until cancelled; says when it started and when it was cancelled.

    The events live on the class the test makes (a registered program is a deep copy).
    """

    started: ClassVar[asyncio.Event]
    cancelled: ClassVar[asyncio.Event]

    async def forward(self, **inputs: Any) -> Prediction:
        type(self).started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            type(self).cancelled.set()
            raise
        return Prediction(answer="never")


class Quick(Module):
    """Answers at once, without an LM."""

    async def forward(self, **inputs: Any) -> Prediction:
        return Prediction(answer="now")


class ScopeProbe(Module):
    """Answers at once and records the correlation scope it ran in (on its class: a
    registered program is a deep copy)."""

    seen: ClassVar[list[CorrelationScope | None]] = []

    async def forward(self, **inputs: Any) -> Prediction:
        type(self).seen.append(current_scope())
        return Prediction(answer="now")


def _blocked() -> type[Blocked]:
    """A fresh Blocked class, with events of the running loop."""
    return type("Blocked", (Blocked,), {"started": asyncio.Event(), "cancelled": asyncio.Event()})


async def _cancel_a_blocked_run(app: App) -> type[Blocked]:
    """Register a Blocked program as "slow", start a run of it, and cancel its caller."""
    program = _blocked()
    await app.register("slow", program())
    caller = asyncio.ensure_future(app.run("slow", {}))
    await program.started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    return program


class TestRegistry:
    async def test_register_list_describe_unregister(self, app: App) -> None:
        """A Module and a JSON spec register; describe shows signature, demos and version."""
        program = ChainOfThought("question -> answer")
        program.predict.demos = [{"question": "1+1?", "reasoning": "add", "answer": "2"}]
        info = await app.register("cot", program)
        assert (info.module_type, info.version, info.demos) == ("ChainOfThought", 1, 1)
        assert info.signature == "question -> reasoning, answer"
        spec_info = await app.register(
            "qa", QA, options={"lm": "anthropic/claude-3-5-haiku-latest"}
        )
        assert spec_info.lm == "anthropic/claude-3-5-haiku-latest"
        assert [i.module_id for i in await app.list_modules()] == ["cot", "qa"]
        assert (await app.describe("qa")).to_dict()["signature"] == "question -> answer"
        await app.unregister("qa")
        with pytest.raises(UnknownModule, match=r"^no program is registered as 'qa'$"):
            await app.describe("qa")

    @pytest.mark.lmvisor_config(
        infrastructure={"circuit_breakers": {f"p{i}": {"failure_threshold": 1} for i in range(3)}},
        providers={"openai": {"max_retries": 0}},
    )
    async def test_unregistered_programs_leave_no_series(
        self, app: App, lm_server: LMServer
    ) -> None:
        """Programs registered, run and unregistered one after another leave no series behind."""
        from lmvisor.testing.lm_server import FaultRule

        lm_server.add_fault(FaultRule(kind="status", status=503, model="gpt-4o"))
        for i in range(3):
            await app.register(f"p{i}", QA, options={"lm": "openai/gpt-4o"})
            with pytest.raises(Exception):  # noqa: B017 - any failure opens the breaker
                await app.run(f"p{i}", {"question": "q"})
            assert (
                app.runtime.metrics.value("lmvisor_circuit_breaker_state", breaker=f"module:p{i}")
                == 2
            )
            await app.unregister(f"p{i}")
        text = app.runtime.metrics.render()
        assert not re.search(r'module="p\d+"|breaker="module:p\d+"', text)

    async def test_registry_keeps_its_own_copy(self, app: App) -> None:
        """Changing the registered object, or a copy from get(), changes nothing registered."""
        program = Predict("question -> answer")
        await app.register("qa", program)
        program.demos.append({"question": "q", "answer": "a"})
        copy = await app.get("qa")
        copy.demos.append({"question": "q", "answer": "a"})  # type: ignore[attr-defined]
        assert (await app.describe("qa")).demos == 0

    async def test_bad_registrations_are_typed_errors(self, app: App) -> None:
        """Duplicate ids, bad ids, bad specs and unknown vendors each name the problem."""
        await app.register("qa", QA)
        with pytest.raises(ModuleAlreadyRegistered, match=r"^a program is already registered"):
            await app.register("qa", QA)
        with pytest.raises(ServiceInputError, match=r"^invalid module_id: must be 1-128"):
            await app.register("Bad Id", QA)
        with pytest.raises(ServiceInputError, match=r"^invalid module_id: must be 1-128"):
            await app.register("qa2\n", QA)  # `$` alone would let a final newline through
        with pytest.raises(ProgramSpecError, match=r"^invalid program spec at module: must be"):
            await app.register("x", {"module": "Nope", "signature": "a -> b"})
        with pytest.raises(UnknownProvider, match=r"names provider 'nowhere'"):
            await app.register("y", QA, options={"lm": "nowhere/model"})
        with pytest.raises(ServiceInputError, match=r"^invalid options.colour: unknown option$"):
            await app.register("z", QA, options={"colour": "red"})
        with pytest.raises(UnknownModule):
            await app.run("missing", {"question": "?"})
        with pytest.raises(ServiceInputError, match=r"^invalid inputs: must be an object"):
            await app.run("qa", ["not", "a", "mapping"])  # type: ignore[arg-type]


class TestVersions:
    async def test_swap_rollback_and_history(self, app: App) -> None:
        """Swaps number versions 2, 3; rollback returns to the one current before."""
        lm = TagLM()
        await app.register("two", TwoStep("v1", lm))
        assert await app.swap("two", TwoStep("v2", lm)) == 2
        assert await app.swap("two", TwoStep("v3", lm)) == 3
        assert (await app.run("two", {"question": "?"})).prediction.answer == "v3"
        assert await app.rollback("two") == 2
        assert (await app.run("two", {"question": "?"})).prediction.answer == "v2"
        assert await app.swap("two", TwoStep("v4", lm)) == 4
        assert await app.rollback("two") == 2
        assert await app.rollback("two") == 1
        with pytest.raises(NoPreviousVersion, match=r"^program 'two' is at version 1"):
            await app.rollback("two")
        assert (await app.describe("two")).versions == (1, 2, 3, 4)
        swapped = await app.events.query(type=[MODULE_SWAPPED, MODULE_ROLLED_BACK])
        assert [e.data["version"] for e in swapped] == [2, 3, 2, 4, 2, 1]

    async def test_a_state_swap_never_undoes_a_swap_that_came_first(self, app: App) -> None:
        """A state swap built on version 1 while a program swap installs version 2 is applied
        again to version 2: it used to install version 1's program with the new demos,
        silently undoing the program swap (its temperature)."""
        await app.register("qa", QA)
        state = (await app.get("qa")).dump_state()
        state["demos"] = [{"question": "q", "answer": "a"}]
        hotter = {**QA, "config": {"temperature": 0.3}}
        # The program swap's message is queued first; the state swap copies version 1
        # before the manager has installed version 2.
        versions = await asyncio.gather(app.swap("qa", hotter), app.swap("qa", state=state))
        assert versions == [2, 3]
        current = await app.get("qa")
        assert current.config == {"temperature": 0.3}  # type: ignore[attr-defined]
        assert (await app.describe("qa")).demos == 1

    async def test_a_state_swap_never_lands_on_a_program_registered_anew(self, app: App) -> None:
        """A state swap read from a program that is unregistered and registered again
        (with another config) before it lands is applied to the new registration, not
        installed as the old program over it (both read "version 1")."""
        await app.register("qa", QA)
        state = (await app.get("qa")).dump_state()
        state["demos"] = [{"question": "q", "answer": "a"}]
        other = {**QA, "config": {"temperature": 0.7}}
        await asyncio.gather(
            app.unregister("qa"), app.register("qa", other), app.swap("qa", state=state)
        )
        current = await app.get("qa")
        assert current.config == {"temperature": 0.7}  # type: ignore[attr-defined]
        assert (await app.describe("qa")).demos == 1

    async def test_state_swaps_give_up_typed_when_others_keep_coming_first(
        self, app: App, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A state swap that finds a newer version every time it tries is VersionMoved
        (retryable, 409 at the daemon), not a lost update."""
        await app.register("qa", QA)
        state = (await app.get("qa")).dump_state()
        tries = 0

        def stale(**fields: Any) -> Swap:  # as if another swap had always come first
            nonlocal tries
            tries += 1
            return Swap(**{**fields, "base": replace(fields["base"], number=0)})

        monkeypatch.setattr("lmvisor.services.modules.Swap", stale)
        with pytest.raises(VersionMoved, match=r"^program 'qa' moved from version 0 to 1 while"):
            await app.swap("qa", state=state)
        assert tries == 8 and VersionMoved.retryable
        assert (await app.describe("qa")).versions == (1,)

    async def test_swap_parameters_only(self, app: App) -> None:
        """A state swap changes demos and instructions of a copy of the current version."""
        await app.register("qa", QA)
        state = (await app.get("qa")).dump_state()
        state["demos"] = [{"question": "q", "answer": "a"}]
        state["signature"]["instructions"] = "Be brief."
        assert await app.swap("qa", state=state) == 2
        info = await app.describe("qa")
        assert info.demos == 1 and info.predictors[0].instructions == "Be brief."
        with pytest.raises(
            ServiceInputError, match=r"^invalid state\.self\.demos: must be a list of JSON objects$"
        ):
            await app.swap("qa", state={"demos": "not a list"})
        with pytest.raises(ServiceInputError, match=r"^invalid program: give a program or a state"):
            await app.swap("qa")
        assert issubclass(StateError, ValueError)

    async def test_a_state_with_a_part_the_program_lacks_is_refused(self, app: App) -> None:
        """A state key that is no part of the program (a typo) is refused, naming it, rather
        than ignored into a new version with the misnamed part reset; a saved file's
        metadata is accepted."""
        await app.register("qa", QA)
        await app.swap("qa", state={"demos": [{"question": "q", "answer": "a"}]})
        with pytest.raises(
            ServiceInputError,
            match=r"^invalid state\.demo: not a part of this program's state "
            r"\(its parts: demos, lm, signature, traces, train\)$",
        ):
            await app.swap("qa", state={"demo": [{"question": "q2", "answer": "b"}]})
        with pytest.raises(ServiceInputError, match=r"^invalid state\.x{64}\.\.\."):
            await app.swap("qa", state={"x" * 10_000: 1})
        info = await app.describe("qa")
        assert (info.versions, info.demos) == ((1, 2), 1)
        state = (await app.get("qa")).dump_state()
        assert await app.swap("qa", state={**state, "metadata": {"format": "x"}}) == 3
        await app.register("cot", {"module": "ChainOfThought", "signature": "question -> answer"})
        with pytest.raises(
            ServiceInputError, match=r"^invalid state\.demos: .*\(its parts: predict\)$"
        ):
            await app.swap("cot", state={"demos": []})
        with pytest.raises(  # one level down too: ChainOfThought's predictor
            ServiceInputError,
            match=r"^invalid state\.predict\.demo: not a part of this program's state "
            r"\(its parts: demos, lm, signature, traces, train\)$",
        ):
            await app.swap("cot", state={"predict": {"demo": [{"question": "q", "answer": "a"}]}})
        cot = (await app.get("cot")).dump_state()
        assert await app.swap("cot", state={**cot, "metadata": {}}) == 2
        with pytest.raises(  # a predictor's key, misplaced at the top
            ServiceInputError, match=r"^invalid state\.fields: .*\(its parts: predict\)$"
        ):
            await app.swap("cot", state={**cot, "fields": {}})

    async def test_a_spec_naming_another_model_is_refused(self, app: App) -> None:
        """A swapped-in spec whose `lm` is not the program's is refused, not run on the old
        model with its own dropped; the program's own model (or none) is accepted."""
        await app.register("qa", QA)
        for lm in ("nope/typo", "anthropic/claude-3-5-haiku-latest"):
            with pytest.raises(
                ServiceInputError,
                match=r"^invalid program\.lm: a swap keeps the program's model "
                r"'openai/gpt-4o-mini'; unregister and register it again to change the model$",
            ):
                await app.swap("qa", {**QA, "lm": lm})
        assert (await app.describe("qa")).versions == (1,)
        assert await app.swap("qa", {**QA, "lm": "openai/gpt-4o-mini"}) == 2
        assert await app.swap("qa", QA) == 3

    async def test_a_state_swap_of_instructions_keeps_the_demos(self, app: App) -> None:
        """Swapping in new instructions alone keeps the current demos (they were reset)."""
        await app.register("qa", QA)
        await app.swap("qa", state={"demos": [{"question": "q", "answer": "a"}]})
        assert await app.swap("qa", state={"signature": {"instructions": "Be brief."}}) == 3
        info = await app.describe("qa")
        assert (info.demos, info.predictors[0].instructions) == (1, "Be brief.")

    async def test_a_spec_swapped_under_a_model_set_by_options_passes(self, app: App) -> None:
        """When the module's options name its model, the spec's own `lm` never decided it:
        swapping the very spec that was registered passes (it was refused)."""
        spec = {**QA, "lm": "openai/gpt-4o-mini"}
        await app.register("qa", spec, options={"lm": "anthropic/claude-3-5-haiku-latest"})
        assert await app.swap("qa", spec) == 2
        with pytest.raises(ServiceInputError, match=r"^invalid program\.lm: a swap keeps"):
            await app.swap("qa", {**QA, "lm": "openai/gpt-4o-minii"})  # misspelt

    @pytest.mark.lmvisor_config(modules={"max_versions": 3})
    async def test_old_versions_are_forgotten(self, app: App) -> None:
        """Only `modules.max_versions` versions are kept; older ones cannot be fetched."""
        await app.register("qa", QA)
        for _ in range(4):
            await app.swap("qa", QA)
        assert (await app.describe("qa")).versions == (3, 4, 5)
        with pytest.raises(
            ServiceInputError, match=r"^invalid version: not kept \(kept: 3, 4, 5\)"
        ):
            await app.get("qa", version=1)

    async def test_hot_swap_under_load_never_mixes_versions(self, app: App) -> None:
        """While swaps happen, every execution's two LM calls come from the version it reports."""
        lm = TagLM(delay=0.002)
        await app.register("two", TwoStep("v1", lm))

        async def swapper() -> None:
            for n in range(2, 8):
                await asyncio.sleep(0.004)
                await app.swap("two", TwoStep(f"v{n}", lm))

        async def load() -> list[Any]:
            runs = []
            for i in range(150):
                runs.append(asyncio.ensure_future(app.run("two", {"question": f"q{i}"})))
                if i % 5 == 4:
                    await asyncio.sleep(0.001)
            return await asyncio.gather(*runs)

        results, _ = await asyncio.gather(load(), swapper())
        for execution in results:
            tag = f"v{execution.version}"
            assert execution.prediction.draft == tag
            assert execution.prediction.answer == tag
        assert len({e.version for e in results}) > 1


class TestExecution:
    async def test_events_and_metrics_of_an_execution(self, app: App) -> None:
        """Start and complete events carry the seed's fields; the metrics count it."""
        await app.register("qa", QA)
        execution = await app.run("qa", {"question": "2+2?"}, correlation_id="call-1")
        assert execution.correlation_id == "call-1" and execution.lm_calls == 1
        events = await app.events.query(
            correlation_id="call-1", type=[MODULE_EXECUTION_START, MODULE_EXECUTION_COMPLETE]
        )
        start, done = events
        assert start.data == {"module_id": "qa", "module_type": "Predict", "version": 1}
        assert done.data["success"] is True and done.data["lm_calls"] == 1
        assert done.data["cost_usd"] == execution.cost_usd
        assert done.data["duration_ms"] >= 0 and done.data["strategy"] == "primary"
        metrics = app.runtime.metrics
        assert metrics.value("lmvisor_module_success_total", module="qa") == 1.0
        assert metrics.value("lmvisor_module_execution_seconds_count", module="qa") == 1.0

    async def test_failures_are_counted_and_reported(self, app: App) -> None:
        """A failing execution emits a complete event with its error and counts the error."""
        await app.register("qa", QA)
        with pytest.raises(ValueError, match=r"^missing input 'question'"):
            await app.run("qa", {})
        [done] = await app.events.query(type=MODULE_EXECUTION_COMPLETE)
        assert done.data["success"] is False
        assert done.data["error"] == {"type": "ValueError", "code": "ValueError"}
        value = app.runtime.metrics.value(
            "lmvisor_module_errors_total", module="qa", error="ValueError"
        )
        assert value == 1.0

    async def test_a_made_correlation_id_is_marked_generated(self, app: App) -> None:
        """An execution without an id runs in a scope marked generated (the log chain then
        skips its redaction pass); a caller's id is not marked."""
        probe = type("ScopeProbe", (ScopeProbe,), {"seen": []})
        await app.register("probe", probe())
        made = await app.run("probe", {})
        await app.run("probe", {}, correlation_id="call-1")
        first, second = probe.seen
        assert first is not None and (first.id, first.generated) == (made.correlation_id, True)
        assert second is not None and (second.id, second.generated) == ("call-1", False)

    async def test_timeout_is_a_deadline(self, app: App) -> None:
        """An execution past its timeout raises DeadlineExceeded and is not left running."""
        program = _blocked()
        await app.register("slow", program())
        with pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during module execution"):
            await app.run("slow", {}, timeout=0.05)
        # On a loaded machine the deadline may pass before the program starts at all.
        assert program.cancelled.is_set() or not program.started.is_set()

    async def test_each_execution_is_cut_at_its_own_deadline(self, app: App) -> None:
        """A later call with a nearer deadline is cut first; the other still at its own."""
        program = _blocked()
        await app.register("slow", program())
        far = asyncio.ensure_future(app.run("slow", {}, timeout=0.4))
        await program.started.wait()
        near = asyncio.ensure_future(app.run("slow", {}, timeout=0.02))
        done, _ = await asyncio.wait([far, near], timeout=5.0, return_when="FIRST_COMPLETED")
        assert done == {near} and isinstance(near.exception(), DeadlineExceeded)
        with pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during module execution"):
            await asyncio.wait_for(far, 5.0)  # not cut at all: TimeoutError instead

    async def test_an_endless_timeout_runs_unbounded(self, app: App) -> None:
        """A timeout of +inf, or one that overflows loop time (1e308, as `modules.timeout`
        may be), runs the execution without a cutoff: OverflowError escaped every call."""
        await app.register("quick", Quick())
        for timeout in (math.inf, 1e308):
            assert (await app.run("quick", {}, timeout=timeout)).prediction is not None

    async def test_a_deadline_after_an_ended_ones_is_still_kept(self, app: App) -> None:
        """An execution whose deadline comes after a finished one's is cut at its own."""
        program = _blocked()
        await app.register("slow", program())
        await app.register("quick", Quick())
        await app.run("quick", {}, timeout=0.05)
        slow = asyncio.ensure_future(app.run("slow", {}, timeout=0.15))
        await program.started.wait()
        with pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during module execution"):
            await asyncio.wait_for(slow, 5.0)  # not cut at all: TimeoutError instead

    async def test_cancelling_the_caller_cancels_the_execution(self, app: App) -> None:
        """The execution task does not outlive a caller that gave up."""
        program = await _cancel_a_blocked_run(app)
        await asyncio.sleep(0)
        assert program.cancelled.is_set()

    async def test_a_cancelled_execution_is_recorded_as_cancelled(self, app: App) -> None:
        """A cancelled execution ends with a failed `module_execution_complete` whose error
        code is `cancelled`, counted under that code."""
        await _cancel_a_blocked_run(app)
        [done] = await app.events.query(type=MODULE_EXECUTION_COMPLETE)
        assert done.data["success"] is False
        assert done.data["error"] == {"type": "CancelledError", "code": "cancelled"}
        value = app.runtime.metrics.value(
            "lmvisor_module_errors_total", module="slow", error="cancelled"
        )
        assert value == 1.0


class TestProtections:
    @pytest.mark.lmvisor_config(
        infrastructure={"circuit_breakers": {"flaky": {"failure_threshold": 2}}},
        providers={"openai": {"max_retries": 0}},
    )
    async def test_the_modules_own_breaker_opens(self, app: App, lm_server: LMServer) -> None:
        """After `failure_threshold` counted failures the program fails fast with CircuitOpen."""
        from lmvisor.testing.lm_server import FaultRule

        await app.register("flaky", QA, options={"lm": "openai/gpt-4o"})
        lm_server.add_fault(FaultRule(kind="status", status=503, model="gpt-4o"))
        for question in ("a", "b"):
            with pytest.raises(Exception) as caught:
                await app.run("flaky", {"question": question})
            assert not isinstance(caught.value, CircuitOpen)
        with pytest.raises(CircuitOpen, match=r"^circuit 'module:flaky' is open"):
            await app.run("flaky", {"question": "c"})

    @pytest.mark.lmvisor_config(
        infrastructure={"circuit_breakers": {"qa": {"failure_threshold": 2}}},
    )
    async def test_callers_mistakes_do_not_open_the_breaker(self, app: App) -> None:
        """Missing inputs fail the caller only: the program's breaker stays closed."""
        await app.register("qa", QA)
        for _ in range(5):
            with pytest.raises(ValueError, match=r"^missing input 'question'"):
                await app.run("qa", {})
        assert (await app.run("qa", {"question": "still served?"})).strategy == "primary"

    async def test_limiter_set_at_run_time_applies_without_restart(self, app: App) -> None:
        """A rate limiter added to the config binds the next execution; removing it frees it."""
        await app.register("qa", QA)
        config = app.runtime.via("config")
        await update_config(config, "infrastructure.rate_limiters", {"qa": {"limit": 1}})
        await app.run("qa", {"question": "first"})
        with pytest.raises(RateLimited, match=r"^rate limit 'module:qa' reached"):
            await app.run("qa", {"question": "second"}, timeout=1.0)
        await update_config(config, "infrastructure.rate_limiters", {})
        assert (await app.run("qa", {"question": "third"}, timeout=1.0)).strategy == "primary"

    @pytest.mark.lmvisor_config(
        infrastructure={"rate_limiters": {"qa": {"limit": 1, "scale": 3600}}},
        modules={"timeout": None},  # no deadline: the executions wait their turn
    )
    async def test_a_raised_limit_drains_executions_waiting_in_the_limiter(self, app: App) -> None:
        """100 executions waiting out 1 per hour all run once the limit is raised: the
        limiter is changed in place (a new one left them sleeping out the old rate)."""
        await app.register("qa", QA)
        await app.run("qa", {"question": "first"})
        limiter = app.modules._table.records["qa"].limiter
        assert limiter is not None
        runs = [asyncio.create_task(app.run("qa", {"question": f"q{n}"})) for n in range(100)]
        for _ in range(500):
            if limiter.statistics().waiting == 100:
                break
            await asyncio.sleep(0.01)
        assert limiter.statistics().waiting == 100
        config = app.runtime.via("config")
        await update_config(
            config, "infrastructure.rate_limiters.qa", {"limit": 500, "scale": 3600}
        )
        done = await asyncio.wait_for(asyncio.gather(*runs), timeout=30)
        assert len(done) == 100 and limiter.statistics().waiting == 0
        assert app.modules._table.records["qa"].limiter is limiter

    @pytest.mark.lmvisor_config(
        infrastructure={"rate_limiters": {"qa": {"limit": 1, "scale": 3600}}},
        modules={"timeout": None},
    )
    async def test_a_removed_limit_frees_executions_waiting_in_the_limiter(self, app: App) -> None:
        """Executions waiting in a limiter whose entry is removed run at once (they kept
        sleeping out the old rate in a limiter nobody else used any more)."""
        await app.register("qa", QA)
        await app.run("qa", {"question": "first"})
        limiter = app.modules._table.records["qa"].limiter
        assert limiter is not None
        runs = [asyncio.create_task(app.run("qa", {"question": f"q{n}"})) for n in range(20)]
        for _ in range(500):
            if limiter.statistics().waiting == 20:
                break
            await asyncio.sleep(0.01)
        await update_config(app.runtime.via("config"), "infrastructure.rate_limiters", {})
        assert len(await asyncio.wait_for(asyncio.gather(*runs), timeout=30)) == 20
        assert app.modules._table.records["qa"].limiter is None

    @pytest.mark.lmvisor_config(
        infrastructure={"circuit_breakers": {"qa": {"failure_threshold": 1}}},
    )
    async def test_an_edited_breaker_keeps_its_state(self, app: App) -> None:
        """A breaker's thresholds changed at run time keep an open breaker open (editing
        any of them closed it, letting calls through to an LM known to fail)."""
        await app.register("qa", QA)
        breaker = app.modules._table.records["qa"].breaker
        breaker.on_failure(TimeoutError())
        config = app.runtime.via("config")
        await update_config(config, "infrastructure.circuit_breakers.qa.failure_threshold", 3)
        assert app.modules._table.records["qa"].breaker is breaker
        assert breaker.failure_threshold == 3
        with pytest.raises(CircuitOpen, match=r"^circuit 'module:qa' is open"):
            await app.run("qa", {"question": "x"})

    async def test_an_update_made_while_the_manager_is_down_applies_when_it_is_back(
        self, app: App
    ) -> None:
        """A limiter set while the manager is stopped (its notice went to nobody) binds the
        program once the manager runs again: a new incarnation catches up on the tree."""
        await app.register("qa", QA)
        runtime = app.runtime
        modules = next(c.ref for c in await runtime.which_children() if c.id == "modules")
        assert modules is not None
        await terminate_child(modules, "manager")
        await update_config(runtime.via("config"), "infrastructure.rate_limiters.qa", {"limit": 1})
        await restart_child(modules, "manager")
        await app.run("qa", {"question": "first"})
        with pytest.raises(RateLimited, match=r"^rate limit 'module:qa' reached"):
            await app.run("qa", {"question": "second"}, timeout=1.0)

    async def test_cache_switch_applies_without_restart(
        self, app: App, lm_server: LMServer
    ) -> None:
        """Turning modules.cache_enabled off at run time sends repeated calls to the LM again."""
        await app.register("qa", QA)
        await app.run("qa", {"question": "same"})
        assert (await app.run("qa", {"question": "same"})).cached
        await update_config(app.runtime.via("config"), "modules.cache_enabled", False)
        again = await app.run("qa", {"question": "same"})
        assert not again.cached
        assert lm_server.stats().requests == 2
