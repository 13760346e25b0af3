"""`BestOfN` and `Refine`: run a module several times and keep the best-rewarded result;
Refine also asks the LM for advice on each miss and hands it to the next attempt.

Refine's advice request is DSPy 3.4.1's: the `OfferFeedback` signature, given the
program's code, each predictor's definition, the inputs, the trajectory of predictor
calls, the outputs, the reward function's code, the threshold and the reward, and asked
for a discussion and advice per predictor. The next attempt's predictors each get their
advice as a `hint_` input ("N/A" for those not blamed).
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import inspect
import json
import math
import numbers
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lmvisor.programs._hints import hint_var
from lmvisor.programs.adapters.chat import format_fields
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.example import Prediction
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context, current_settings
from lmvisor.programs.signature import Signature
from lmvisor.programs.trace import TraceEntry, record_entries, trace

__all__ = ["BestOfN", "OfferFeedback", "Refine", "RewardFn", "inspect_modules"]

RewardFn = Callable[[dict[str, Any], Prediction], float | Awaitable[float]]
"""Scores a prediction given the inputs; sync or async."""


class OfferFeedback(Signature):
    """
    In the discussion, assign blame to each module that contributed to the final reward being below the threshold, if
    any. Then, prescribe concrete advice of how the module should act on its future input when we retry the process, if
    it were to receive the same or similar inputs. If a module is not to blame, the advice should be N/A.
    The module will not see its own history, so it needs to rely on entirely concrete and actionable advice from you
    to avoid the same mistake on the same or similar inputs.
    """  # noqa: E501

    program_code: str = InputField(desc="The code of the program that we are analyzing")
    modules_defn: str = InputField(
        desc="The definition of each module in the program, including its I/O"
    )
    program_inputs: str = InputField(desc="The inputs to the program that we are analyzing")
    program_trajectory: str = InputField(
        desc="The trajectory of the program's execution, showing each module's I/O"
    )
    program_outputs: str = InputField(desc="The outputs of the program that we are analyzing")
    reward_code: str = InputField(desc="The code of the reward function that we are analyzing")
    target_threshold: float = InputField(desc="The target threshold for the reward function")
    reward_value: float = InputField(desc="The reward value assigned to the program's outputs")
    module_names: list[str] = InputField(
        desc="The names of the modules in the program, for which we seek advice"
    )
    discussion: str = OutputField(
        desc="Discussing blame of where each module went wrong, if it did"
    )
    advice: dict[str, str] = OutputField(
        desc="For each module, describe very concretely, in this order: the specific scenarios "
        "in which it has made mistakes in the past and what each mistake was, followed by what "
        "it should do differently in that kind ofscenario in the future. If the module is not "
        "to blame, write N/A."
    )


class BestOfN(Module):
    """Run `module` up to `n` times (temperature 1.0); stop at the first reward >= threshold.

    As in DSPy, each attempt carries its own `rollout_id` (counting up from the settings'
    one, else 0): a cache keys on it, so attempts are sampled, not replayed; it is never
    sent to the vendor.

    Returns the best-rewarded prediction; the trace of that attempt's predictor calls joins
    the caller's `trace()`. Failed attempts are counted (in Refine, an attempt whose advice
    request fails too); at `fail_count` failures the last error is raised. A NaN reward
    ranks below every number; a reward that is no number fails its attempt.

    Args:
        module: the program to sample.
        n: attempts at most.
        reward_fn: `(inputs, prediction) -> float`, sync or async (never saved as state).
        threshold: a reward that ends the search.
        fail_count: the number of failed attempts at which the last error is raised
            (default n).

    Raises:
        ValueError: n < 1 or fail_count < 1.
    """

    def __init__(
        self,
        module: Module,
        n: int,
        reward_fn: RewardFn,
        threshold: float,
        *,
        fail_count: int | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        super().__init__(callbacks=callbacks)
        if n < 1:
            raise ValueError("n must be >= 1")
        if fail_count is not None and fail_count < 1:
            raise ValueError("fail_count must be >= 1")
        self.module = module
        self.n = n
        # Wrapped so a reward program (an LM judge) is not taken for this module's state.
        self.reward_fn: RewardFn = lambda inputs, pred: reward_fn(inputs, pred)
        self.reward_code = _source(reward_fn)  # for Refine's advice request, as DSPy keeps it
        self.threshold = threshold
        self.fail_count = n if fail_count is None else fail_count

    async def forward(self, **inputs: Any) -> Prediction:
        """Sample until the threshold is met or attempts run out; return the best.

        Raises:
            Exception: the last attempt's error once `fail_count` attempts failed, or
                when no attempt succeeded.
        """
        best: tuple[Prediction, float, list[TraceEntry]] | None = None
        failures = 0
        last_error: Exception | None = None
        for attempt in range(self.n):
            try:
                pred, reward, entries = await self._attempt(inputs, attempt)
            except Exception as exc:
                failures, last_error = failures + 1, exc
                if failures >= self.fail_count:
                    raise
                continue
            if best is None or _rank(reward) > _rank(best[1]):
                best = (pred, reward, entries)
            if reward >= self.threshold:
                break
            if attempt < self.n - 1:
                try:
                    await self._after_miss(inputs, pred, reward, entries)
                except Exception:
                    # As DSPy: advice the LM botched fails this attempt, not the search.
                    failures += 1
                    if failures >= self.fail_count:
                        raise
        if best is None:
            assert last_error is not None
            raise last_error
        record_entries(best[2])
        return best[0]

    async def _attempt(
        self, inputs: dict[str, Any], attempt: int
    ) -> tuple[Prediction, float, list[TraceEntry]]:
        base = current_settings().lm_params
        start = base.get("rollout_id")
        rollout = (start if isinstance(start, int) else 0) + attempt
        params = {**base, "temperature": 1.0, "rollout_id": rollout}
        with context(lm_params=params), trace() as entries:
            pred = await self.module(**inputs)
        # Refine's hint is for the sampled module only, never for an LM judge in reward_fn.
        token = hint_var.set(None)
        try:
            reward = self.reward_fn(dict(inputs), pred)
            if inspect.isawaitable(reward):
                reward = await reward
        finally:
            hint_var.reset(token)
        return pred, _reward_value(reward), list(entries)

    async def _after_miss(
        self, inputs: dict[str, Any], pred: Prediction, reward: float, entries: list[TraceEntry]
    ) -> None:
        """Called after an attempt below the threshold, unless it was the last one."""


class Refine(BestOfN):
    """BestOfN with feedback: after a miss, the LM assigns blame and advises each predictor,
    and in the next attempt each predictor sees its advice as a `hint_` input.
    """

    async def forward(self, **inputs: Any) -> Prediction:
        """As BestOfN, each attempt after a miss carrying the last advice."""
        token = hint_var.set(None)
        try:
            return await super().forward(**inputs)
        finally:
            hint_var.reset(token)

    async def _after_miss(
        self, inputs: dict[str, Any], pred: Prediction, reward: float, entries: list[TraceEntry]
    ) -> None:
        earlier = hint_var.set(None)
        named = self.module.named_predictors()
        names = {id(p): n for n, p in named}
        trajectory = [
            {
                "module_name": names.get(id(e.predictor), "?"),
                "inputs": e.inputs,
                "outputs": dict(e.prediction.items()),
            }
            for e in entries
        ]
        request = {
            "program_code": _source(self.module),
            "modules_defn": inspect_modules(self.module),
            "program_inputs": inputs,
            "program_trajectory": trajectory,
            "program_outputs": dict(pred.items()),
            "reward_code": self.reward_code,
            "target_threshold": self.threshold,
            "reward_value": reward,
            "module_names": [n for n, _ in named],
        }
        shown = {k: v if isinstance(v, str) else _indented_json(v) for k, v in request.items()}
        try:
            with trace():  # the advice call is no part of any attempt's trajectory
                advice = (await Predict(OfferFeedback)(**shown)).advice
        except BaseException:
            hint_var.reset(earlier)  # as DSPy: botched advice leaves the earlier advice
            raise
        hint_var.set({id(p): str(advice.get(n, "N/A")) for n, p in named})


def _reward_value(reward: Any) -> float:
    """The reward as a float.

    Raises:
        TypeError: the reward is not a real number (None, a string, a complex).
    """
    if isinstance(reward, numbers.Real | decimal.Decimal):
        return float(reward)
    raise TypeError(f"reward_fn returned {type(reward).__name__}, not a number")


def _rank(reward: float) -> float:
    """The reward as attempts are compared: NaN below every number, so a NaN reward
    (a judge that failed quietly) never outranks a later attempt with a real one.
    """
    return -math.inf if math.isnan(reward) else reward


def inspect_modules(program: Module) -> str:
    """Each predictor's name, fields and instructions, as DSPy's Refine shows them."""
    separator = "-" * 80
    output = [separator]
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        instructions = "\n\t\t".join(["", *textwrap.dedent(signature.instructions).splitlines()])
        output.append(f"Module {name}")
        output.append("\n\tInput Fields:")
        output.append("\n\t\t".join(["", *format_fields(signature._inputs).splitlines()]))
        output.append("\tOutput Fields:")
        output.append("\n\t\t".join(["", *format_fields(signature._outputs).splitlines()]))
        output.append(f"\tOriginal Instructions: {instructions}")
        output.append(separator)
    return "\n".join(o.strip("\n") for o in output)


def _source(obj: Any) -> str:
    """The source of a function, or of the class of an object; "" when unavailable."""
    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) else type(obj)
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return ""


def _indented_json(value: Any) -> str:
    """JSON indented by two, as DSPy's orjson dump writes it; unknown objects named."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return f"<non-serializable: {type(value).__name__}>"
