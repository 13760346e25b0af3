"""MIPROv2's instruction step: the dataset summary and one instruction per (predictor, demo set).

The prompts are `proposer`'s signatures; this module runs them through the run's executor,
each as a journaled step (`mipro/summary`, `mipro/propose/p{i}/set{j}`), so a resumed run
asks the prompt model only for what it had not recorded. The RNG draws (a tip and a
rollout seed per proposal) happen before any proposal is sent, in DSPy's order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, final

from lmvisor.optimizers import _step_values as step_values
from lmvisor.optimizers._gather import gather_steps
from lmvisor.optimizers.proposer import (
    TIPS,
    DatasetDescriptor,
    DatasetDescriptorWithPriorObservations,
    DescribeModule,
    DescribeProgram,
    ObservationSummarizer,
    ProposalPlan,
    dspy_repr,
    example_string,
    instruction_signature,
    program_code,
    strip_prefix,
)
from lmvisor.optimizers.run import OptimizationRun
from lmvisor.programs.example import Example
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature

__all__ = ["InstructionProposer", "ProposerFlags"]

_DEMOS_IN_CONTEXT = 3
_SUMMARY_BATCH_CALLS = 10
_COMPLETE_SKIPS = 5

_DemoSets = list[list[list[Example]]]
"""Per predictor, per demo set, the demos."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ProposerFlags:
    """Which grounding the instruction prompts get (MIPROv2's `*_aware_proposer` options)."""

    program_aware: bool = True
    data_aware: bool = True
    tip_aware: bool = True
    fewshot_aware: bool = True
    view_data_batch_size: int = 10


@final
class InstructionProposer:
    """Writes MIPROv2's instruction candidates with the prompt model.

    Args:
        run: the run whose executor sends the requests and whose journal records them.
        prompt_model: the LM that writes (None: the settings' LM).
        temperature: the proposals' temperature.
        flags: which grounding to give the prompts.
    """

    def __init__(
        self,
        run: OptimizationRun,
        *,
        prompt_model: LM | None,
        temperature: float,
        flags: ProposerFlags,
    ) -> None:
        self.run = run
        self.prompt_model = prompt_model
        self.temperature = temperature
        self.flags = flags

    async def summary(self, trainset: list[Example]) -> str | None:
        """The dataset summary (None when not data-aware, or when it cannot be made)."""
        if not self.flags.data_aware:
            return None
        found: str | None = await self.run.step(
            "mipro/summary", lambda: self._summarize(trainset), step_values.summary
        )
        return found

    async def instructions(
        self,
        program: Module,
        demos: _DemoSets,
        summary: str | None,
        rng: random.Random,
        *,
        wanted: int,
    ) -> list[list[str]]:
        """Per predictor, its candidate instructions; index 0 is the predictor's own."""
        proposals = self._plan(program, demos, rng, wanted)
        code = program_code(program) if self.flags.program_aware else ""
        texts = await gather_steps(
            *(self._propose_one(program, demos, summary, p, code) for p in proposals)
        )
        found: list[list[str]] = [[] for _ in program.predictors()]
        for proposal, text in zip(proposals, texts, strict=True):
            found[proposal.predictor].append(text)
        for p_i, predictor in enumerate(program.predictors()):
            if found[p_i]:
                found[p_i][0] = predictor.signature.instructions
            else:
                found[p_i] = [predictor.signature.instructions]
        return found

    # --- the summary --------------------------------------------------------------------

    async def _summarize(self, trainset: list[Example]) -> dict[str, Any]:
        try:
            observations = await self._observations(trainset)
            summary = await self._ask(ObservationSummarizer, observations=observations)
        except Exception:  # DSPy proposes without a summary when it cannot be made
            return {"summary": None}
        return {"summary": strip_prefix(str(summary["summary"]))}

    async def _observations(self, trainset: list[Example]) -> str:
        batch = self.flags.view_data_batch_size
        seen = await self._ask(DatasetDescriptor, examples=dspy_repr(trainset[:batch]))
        observations = str(seen["observations"])
        calls, skips = 0, 0
        for start in range(batch, len(trainset), batch):
            calls += 1
            if calls >= _SUMMARY_BATCH_CALLS:
                break
            more = await self._ask(
                DatasetDescriptorWithPriorObservations,
                prior_observations=observations,
                examples=dspy_repr(trainset[start : start + batch]),
            )
            text = str(more["observations"])
            if len(text) >= 8 and text[:8].upper() == "COMPLETE":
                skips += 1
                if skips >= _COMPLETE_SKIPS:
                    break
                continue
            observations += text
        return observations

    # --- one instruction ------------------------------------------------------------------

    def _plan(
        self, program: Module, demos: _DemoSets, rng: random.Random, wanted: int
    ) -> list[ProposalPlan]:
        """The proposals to write, drawing a tip and a rollout seed from `rng` as DSPy does."""
        sets = max(len(demos[0]), 1) if demos and demos[0] else wanted
        proposals: list[ProposalPlan] = []
        for p_i in range(len(program.predictors())):
            for demo_set in range(sets)[: min(wanted, sets)]:
                tip = TIPS[rng.choice(list(TIPS))] if self.flags.tip_aware else ""
                proposals.append(ProposalPlan(p_i, demo_set, tip, rng.randint(0, 10**9)))
        return proposals

    async def _propose_one(
        self,
        program: Module,
        demos: _DemoSets,
        summary: str | None,
        proposal: ProposalPlan,
        code: str,
    ) -> str:
        predictor = program.predictors()[proposal.predictor]
        fewshot = self.flags.fewshot_aware and demos
        task_demos = _task_demos(predictor.signature, demos, proposal) if fewshot else ""
        if not task_demos.strip() or proposal.demo_set == 0:
            task_demos = "No task demos provided."

        async def propose() -> dict[str, Any]:
            inputs = await self._inputs(predictor, summary, proposal, code, task_demos)
            generator = instruction_signature(
                summary=summary is not None,
                program=self.flags.program_aware,
                tip=bool(proposal.tip),
            )
            answer = await self._ask(generator, **inputs)
            return {"instruction": strip_prefix(strip_prefix(str(answer["proposed_instruction"])))}

        key = f"mipro/propose/p{proposal.predictor}/set{proposal.demo_set}"
        proposed: str = await self.run.step(key, propose, step_values.instruction)
        return proposed

    async def _inputs(
        self,
        predictor: Any,
        summary: str | None,
        proposal: ProposalPlan,
        code: str,
        task_demos: str,
    ) -> dict[str, Any]:
        """The instruction prompt's inputs, in the order the signature declares them."""
        inputs: dict[str, Any] = {
            "task_demos": task_demos,
            "basic_instruction": predictor.signature.instructions,
        }
        if summary is not None:
            inputs["dataset_description"] = summary
        if self.flags.program_aware:
            inputs.update(await self._describe(code, task_demos, predictor))
        if proposal.tip:
            inputs["tip"] = proposal.tip
        return inputs

    async def _describe(self, code: str, task_demos: str, predictor: Any) -> dict[str, str]:
        described = {
            "program_code": code,
            "program_description": "Not available",
            "module": "Not provided",
            "module_description": "Not provided",
        }
        try:
            about = await self._ask(DescribeProgram, program_code=code, program_example=task_demos)
            described["program_description"] = strip_prefix(str(about["program_description"]))
            fields = predictor.signature
            described["module"] = (
                f"{type(predictor).__name__}({', '.join(fields.input_fields)}) -> "
                f"{', '.join(fields.output_fields)}"
            )
            module = await self._ask(
                DescribeModule, program_code=code,
                program_description=described["program_description"],
                program_example=task_demos, module=described["module"],
            )  # fmt: skip
            described["module_description"] = str(module["module_description"])
        except Exception:  # as DSPy: propose without the program's description
            pass
        return described

    async def _ask(self, signature: type[Signature], **inputs: Any) -> dict[str, Any]:
        predict = Predict(signature, n=1, temperature=self.temperature)
        overrides = {} if self.prompt_model is None else {"lm": self.prompt_model}
        with context(**overrides):
            prediction = await self.run.executor.run(lambda: predict(**inputs))
        return dict(prediction.items())


def _task_demos(signature: type[Signature], demos: _DemoSets, proposal: ProposalPlan) -> str:
    """Up to three augmented demos, starting at the proposal's own set, as DSPy shows them."""
    sets = demos[proposal.predictor]
    ordered = [sets[proposal.demo_set], *sets[proposal.demo_set + 1 :], *sets[: proposal.demo_set]]
    shown: list[str] = []
    for demo_set in ordered:
        for example in demo_set:
            if "augmented" in example:
                shown.append(example_string(signature, example))
                if len(shown) >= _DEMOS_IN_CONTEXT:
                    return "\n\n".join(shown) + "\n\n"
    return "\n\n".join(shown) + "\n\n"
