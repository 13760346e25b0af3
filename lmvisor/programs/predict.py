"""`Predict`: one signature, one LM call — format with the adapter, call, parse.

The request a Predict sends is `LMRequest(model=lm.model, messages=<adapter's messages>,
params={**settings.lm_params, **predict.lm_params, **predict.config, **call config,
**adapter params})`,
where `lm` is the call's `lm=`, else `predict.lm`, else the settings' LM. As in DSPy, a
request for `n > 1` completions at a temperature unset or <= 0.15 is sent at 0.7.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

from lmvisor.programs._hints import current_hint
from lmvisor.programs._types import is_optional
from lmvisor.programs.adapters.base import Adapter
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.dspy_compat import read_predictor_state
from lmvisor.programs.errors import LMNotConfigured
from lmvisor.programs.example import Example, Prediction
from lmvisor.programs.fields import InputField
from lmvisor.programs.lm import LM
from lmvisor.programs.lm_invoker import LMInvoker
from lmvisor.programs.module import Module, Parameter
from lmvisor.programs.settings import current_settings
from lmvisor.programs.signature import Signature, ensure_signature
from lmvisor.programs.streaming import stream_receiver
from lmvisor.programs.trace import record_trace

__all__ = ["Predict"]

_DEFAULT_ADAPTER = ChatAdapter()
_CALL_OPTIONS = frozenset({"config", "demos", "lm", "signature"})
_NO_CONFIG: Mapping[str, Any] = MappingProxyType({})
_Options = tuple[
    Sequence[Example | Mapping[str, Any]] | None,
    Mapping[str, Any],
    LM | None,
    str | type[Signature] | None,
]
# A call with inputs only (the usual one) reads its options from here: no dict pops.
_NO_OPTIONS: _Options = (None, _NO_CONFIG, None, None)
_HINT_FIELD = "hint_"
_SAMPLING_TEMPERATURE = 0.7


class Predict(Module, Parameter):
    """Predict the outputs of a signature from its inputs with one LM call.

    Args:
        signature: a Signature class or a string ("question -> answer").
        callbacks: hooks for this predictor's calls.
        **config: generation options sent with every call (temperature, n, max_tokens...).

    Attributes:
        demos: examples shown to the LM before the request (Examples or dicts).
        lm: an LM for this predictor only (overrides the settings' LM).
        lm_params: generation settings restored from a saved `lm` block
            (`load(..., lm_settings=True)`), sent under `config`.
        adapter: an adapter for this predictor only (overrides the settings' adapter).
    """

    def __init__(
        self,
        signature: str | type[Signature],
        *,
        callbacks: Sequence[Callback] = (),
        **config: Any,
    ) -> None:
        super().__init__(callbacks=callbacks)
        self.signature: type[Signature] = ensure_signature(signature)
        self.config: dict[str, Any] = dict(config)
        self.demos: list[Example | Mapping[str, Any]] = []
        self.lm: LM | None = None
        self.lm_params: dict[str, Any] = {}
        self.saved_model: str | None = None
        self.adapter: Adapter | None = None
        self.traces: list[Any] = []
        self.train: list[Any] = []

    def __repr__(self) -> str:
        return f"Predict({self.signature!r})"

    def reset(self) -> None:
        """Forget demos, traces and the per-predictor LM."""
        self.lm = None
        self.demos = []
        self.traces = []
        self.train = []

    async def forward(self, **kwargs: Any) -> Prediction:
        """Call the LM once and parse every completion.

        Keyword arguments are the signature's inputs, plus optionally `demos=`, `config=`,
        `lm=` and `signature=` for this call only.

        Raises:
            LMNotConfigured: no LM anywhere.
            ValueError: a required input is missing.
            AdapterParseError: the completion does not fit the signature.
            LmvisorError: whatever the LM raises.
        """
        demos, config, call_lm, signature = (
            _NO_OPTIONS if _CALL_OPTIONS.isdisjoint(kwargs) else _pop_options(kwargs)
        )
        signature = self.signature if signature is None else ensure_signature(signature)
        settings = current_settings()
        lm = call_lm or self.lm or settings.lm
        if lm is None:
            raise LMNotConfigured(module=f"Predict({signature.signature})")
        _check_inputs(signature, kwargs)
        hint = current_hint(self)
        if hint is not None:
            signature = _with_hint(signature)
            kwargs[_HINT_FIELD] = hint
        params = {**settings.lm_params, **self.lm_params, **self.config, **config}
        if "n" in params and _needs_sampling_temperature(params):
            params["temperature"] = _SAMPLING_TEMPERATURE
        adapter = self.adapter or settings.adapter or _DEFAULT_ADAPTER
        own = self.callbacks  # active_callbacks(), with the settings already read
        hooks = (*settings.callbacks, *own) if own else settings.callbacks
        stream = stream_receiver(self, adapter)
        invoke = LMInvoker(lm, hooks, settings.history, stream=stream)
        shown = self.demos if demos is None else demos
        values, _ = await adapter.run(
            invoke,
            signature,
            _plain_demos(shown) if shown else (),
            kwargs,
            params=params,
            capabilities=lm.capabilities,
            callbacks=hooks,
        )
        prediction = Prediction.from_completions(values)
        record_trace(self, kwargs, prediction)
        return prediction

    def dump_state(self) -> dict[str, Any]:
        """DSPy's predictor state: demos, signature (instructions, fields), lm."""
        model = self.lm.model if self.lm is not None else self.saved_model
        return {
            "traces": [],
            "train": [],
            "demos": [
                d.to_dict() if isinstance(d, Example) else Example(d).to_dict() for d in self.demos
            ],
            "signature": self.signature.dump_state(),
            "lm": None
            if model is None and not self.lm_params
            else {"model": model, **self.lm_params},
        }

    def load_state(
        self, state: Mapping[str, Any], *, where: str = "self", lm_settings: bool = False
    ) -> Predict:
        """Restore demos, instructions and field descriptions (lmvisor's or DSPy's format).

        With `lm_settings`, the saved `lm` block's generation settings are restored too.

        Raises:
            StateError: the state is malformed (and nothing was changed).
        """
        self.prepare_state(state, where=where, lm_settings=lm_settings)()
        return self

    def prepare_state(
        self, state: Mapping[str, Any], *, where: str = "self", lm_settings: bool = False
    ) -> Callable[[], None]:
        """Check `state` fully; return the change that applies it (which cannot fail).

        Raises:
            StateError: the state is malformed.
        """
        saved = read_predictor_state(state, where=where, lm_settings=lm_settings)
        # What the state leaves out stays as it is (DSPy keeps a missing `demos` too; it
        # requires `signature` and `lm`, which lmvisor does not).
        demos = None if saved.demos is None else [Example(d) for d in saved.demos]
        signature = self.signature
        if saved.signature is not None:
            signature = signature.load_state(saved.signature)

        def apply() -> None:
            if demos is not None:
                self.demos = list(demos)
            self.signature = signature
            if saved.has_lm:
                self.saved_model = saved.model
                if lm_settings:
                    self.lm_params = dict(saved.lm_params)

        return apply


def _pop_options(kwargs: dict[str, Any]) -> _Options:
    """This call's `demos=`, `config=`, `lm=` and `signature=`, taken out of the inputs."""
    return (
        kwargs.pop("demos", None),
        kwargs.pop("config", None) or _NO_CONFIG,
        kwargs.pop("lm", None),
        kwargs.pop("signature", None),
    )


def _check_inputs(signature: type[Signature], inputs: Mapping[str, Any]) -> None:
    if inputs.keys() >= signature._inputs.keys():
        return  # every input given (the usual call): one set comparison, no loop
    for name, field in signature._inputs.items():
        if name not in inputs and not is_optional(field.annotation):
            raise ValueError(f"missing input {name!r} for signature {signature.signature!r}")


def _needs_sampling_temperature(params: Mapping[str, Any]) -> bool:
    # n completions at (near-)zero temperature would all be the same one, so DSPy raises it.
    n, temperature = params.get("n"), params.get("temperature")
    if not isinstance(n, int) or n <= 1:
        return False
    return temperature is None or (isinstance(temperature, int | float) and temperature <= 0.15)


def _plain_demos(demos: Sequence[Example | Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    if not demos:
        return ()
    return [dict(d.items()) if isinstance(d, Example) else d for d in demos]


def _with_hint(signature: type[Signature]) -> type[Signature]:
    key = ("hint",)
    cached = signature._cache.get(key)
    if cached is None:
        cached = signature._cache[key] = signature.append(
            _HINT_FIELD, InputField(desc="A hint to the module from an earlier run")
        )
    return cast("type[Signature]", cached)
