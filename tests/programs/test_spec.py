"""Tests for lmvisor.programs.spec: JSON program specs, the modules they build, and back."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from lmvisor.programs import GENERATION_OPTIONS, ChainOfThought, Predict
from lmvisor.programs.adapters import Adapter, ChatAdapter, TwoStepAdapter, XMLAdapter
from lmvisor.programs.adapters.json_adapter import JSONAdapter
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.dspy_compat import read_predictor_state
from lmvisor.programs.errors import StateError
from lmvisor.programs.example import Example
from lmvisor.programs.settings import context
from lmvisor.programs.spec import (
    ProgramSpecError,
    build_program,
    parse_program_spec,
    program_spec,
)
from lmvisor.testing import ScriptedLM

_COT = {
    "module": "ChainOfThought",
    "signature": "context: list[str], question -> answer: str, kind: Literal['a', 'b'] | None",
    "instructions": "Answer briefly.",
    "descriptions": {"context": "facts that may help"},
    "config": {"temperature": 0.1, "max_tokens": 50},
    "adapter": "json",
    "lm": "openai/gpt-4o-mini",
}


class TestBuildProgram:
    def test_builds_the_described_module(self) -> None:
        """A spec builds its module type with signature, instructions, descriptions and config."""
        module = build_program(_COT)
        assert isinstance(module, ChainOfThought)
        signature = module.predict.signature
        assert list(signature.input_fields) == ["context", "question"]
        assert list(signature.output_fields) == ["reasoning", "answer", "kind"]
        assert signature.instructions == "Answer briefly."
        assert signature.input_fields["context"].desc == "facts that may help"
        assert module.predict.config == {"temperature": 0.1, "max_tokens": 50}
        assert isinstance(module.predict.adapter, JSONAdapter)

    def test_field_object_form(self) -> None:
        """`signature` may be an object of typed inputs and outputs."""
        spec = {
            "module": "Predict",
            "signature": {"inputs": {"a": "int", "b": "int"}, "outputs": {"total": "int"}},
        }
        module = build_program(spec)
        assert isinstance(module, Predict)
        assert module.signature.output_fields["total"].annotation is int

    async def test_state_restores_demos(self) -> None:
        """Saved state in the spec restores demos, which reach the LM's prompt."""
        donor = Predict("question -> answer")
        donor.demos = [Example(question="2+2?", answer="4")]
        spec = {"module": "Predict", "signature": "question -> answer"}
        module = build_program({**spec, "state": donor.dump_state()})
        lm = ScriptedLM(["[[ ## answer ## ]]\n6\n\n[[ ## completed ## ]]"])
        with context(lm=lm):
            result = await module(question="3+3?")
        assert result.answer == "6"
        assert "2+2?" in json.dumps(lm.requests[0].messages)


class TestRoundTrip:
    @pytest.mark.parametrize("module_type", ["Predict", "ChainOfThought"])
    def test_spec_of_a_built_module_rebuilds_it(self, module_type: str) -> None:
        """program_spec(build_program(s)) is stable, and survives JSON."""
        first = program_spec(build_program({**_COT, "module": module_type}), lm=_COT["lm"])
        again = program_spec(build_program(json.loads(json.dumps(first.to_dict()))), lm=_COT["lm"])
        assert again == first
        assert first.signature.startswith("context: list[str], question: str -> ")
        assert first.descriptions == {"context": "facts that may help"}

    def test_demos_travel_in_state(self) -> None:
        """A module's demos are in its spec's state and come back on rebuild."""
        module = ChainOfThought("question -> answer")
        module.predict.demos = [Example(question="q", reasoning="r", answer="a")]
        rebuilt = build_program(program_spec(module).to_dict())
        assert isinstance(rebuilt, ChainOfThought)
        assert [dict(d) for d in rebuilt.predict.demos] == [
            {"question": "q", "reasoning": "r", "answer": "a"}
        ]

    def test_other_modules_have_no_spec(self) -> None:
        """Only built-in single-signature modules can be written as a spec."""
        from lmvisor.programs import MultiHop

        with pytest.raises(TypeError, match=r"^only Predict and ChainOfThought have specs"):
            program_spec(MultiHop())


class TestAdapters:
    @pytest.mark.parametrize(
        ("adapter", "kind"),
        [("chat", ChatAdapter), ("json", JSONAdapter), ("xml", XMLAdapter)],
    )
    def test_each_adapter_by_name(self, adapter: str, kind: type[Adapter]) -> None:
        """Every adapter of the programs layer can be named; the spec gives its name back."""
        module = build_program({"module": "Predict", "signature": "a -> b", "adapter": adapter})
        assert type(module.adapter) is kind
        assert program_spec(module).adapter == adapter

    def test_options_round_trip(self) -> None:
        """Options that differ from the adapter's defaults are written and rebuilt."""
        spec = {
            "module": "ChainOfThought",
            "signature": "a -> b",
            "adapter": {
                "name": "xml",
                "use_native_function_calling": True,
                "use_json_adapter_fallback": False,
            },
        }
        module = build_program(spec)
        adapter = module.predict.adapter
        assert isinstance(adapter, XMLAdapter)
        assert adapter.use_native_function_calling and not adapter.use_json_adapter_fallback
        assert program_spec(module).adapter == spec["adapter"]
        default = build_program({**spec, "adapter": {"name": "xml", "parallel_tool_calls": None}})
        assert program_spec(default).adapter == "xml"

    async def test_two_step_resolves_its_extraction_model(self) -> None:
        """two_step names its extraction model; lm_for resolves it; the spec writes it back."""
        extractor = ScriptedLM(model="openai/gpt-4o-mini")
        asked: list[str] = []

        def lm_for(model: str) -> ScriptedLM:
            asked.append(model)
            return extractor

        spec = {
            "module": "Predict",
            "signature": "question -> answer",
            "adapter": {"name": "two_step", "extraction_lm": "openai/gpt-4o-mini"},
        }
        module = build_program(spec, lm_for=lm_for)
        assert isinstance(module.adapter, TwoStepAdapter)
        assert module.adapter.extraction_model is extractor and asked == ["openai/gpt-4o-mini"]
        assert program_spec(module).to_dict()["adapter"] == spec["adapter"]
        with context(lm=ScriptedLM(["The answer is 4."])):
            await module(question="2+2?")
        assert len(extractor.requests) == 1

    def test_adapters_a_spec_cannot_hold(self) -> None:
        """Adapters with callbacks, or of one's own class, have no spec."""

        class Mine(ChatAdapter):
            pass

        for adapter in (Mine(), ChatAdapter(callbacks=[Callback()])):
            module = Predict("a -> b")
            module.adapter = adapter
            with pytest.raises(ProgramSpecError, match=r"^invalid program spec at adapter: "):
                program_spec(module)


class TestGenerationOptions:
    def test_one_list_for_specs_and_saved_programs(self) -> None:
        """A spec's config and a restored DSPy lm block accept the same options."""
        config = dict.fromkeys(sorted(GENERATION_OPTIONS), None)
        config["logit_bias"] = {"50256": -100}
        spec = parse_program_spec({"module": "Predict", "signature": "a -> b", "config": config})
        assert set(spec.config) == GENERATION_OPTIONS
        state = {"demos": [], "lm": {"model": "openai/x", "api_key": "sk", **config}}
        restored = read_predictor_state(state, lm_settings=True)
        assert set(restored.lm_params) == {"logit_bias"}  # None values are not restored


# A value of the wrong JSON type for each option, and the problem it is refused with.
_WRONG_TYPES: dict[str, tuple[object, str]] = {
    "temperature": ([[0.5]], "must be a number"),
    "top_p": ("0.9", "must be a number"),
    "presence_penalty": (True, "must be a number"),
    "frequency_penalty": ({"x": 1}, "must be a number"),
    "max_tokens": ({"limit": 10}, "must be a whole number from 1 to 2147483647"),
    "max_completion_tokens": (100.0, "must be a whole number from 1 to 2147483647"),
    "n": ("2", "must be a whole number from 1 to 128"),
    "top_logprobs": (True, "must be a whole number from 0 to 20"),
    "seed": (1.5, "must be a whole number"),
    "stop": (["a", 1], "must be a string or a list of strings"),
    "logit_bias": ({"50256": "-100"}, "must be an object of token ids to numbers"),
    "logprobs": (1, "must be true or false"),
    "reasoning_effort": (["low"], "must be a string"),
}
_GOOD_VALUES: dict[str, list[object]] = {
    "temperature": [0, 0.7, None],
    "top_p": [1, 0.95],
    "presence_penalty": [-0.5],
    "frequency_penalty": [2],
    "max_tokens": [1, 4096],
    "max_completion_tokens": [2048],
    "n": [1, 128],
    "top_logprobs": [0, 20],
    "seed": [-7, 42],
    "stop": ["###", [], ["\n\n", "END"]],
    "logit_bias": [{}, {"50256": -100, "11": 0.5}],
    "logprobs": [True, False],
    "reasoning_effort": ["low"],
}


class TestGenerationOptionTypes:
    def test_every_option_is_covered(self) -> None:
        """Each generation option lmvisor knows has a wrong-type and a valid case below."""
        assert set(_WRONG_TYPES) == set(_GOOD_VALUES) == GENERATION_OPTIONS

    @pytest.mark.parametrize("key", sorted(_WRONG_TYPES))
    def test_a_value_of_the_wrong_type_is_refused_at_parse_time(self, key: str) -> None:
        """A value of the wrong JSON type (a bool counting as no number) is a
        ProgramSpecError naming the option and the problem, not a vendor's 400 later."""
        value, problem = _WRONG_TYPES[key]
        spec = {"module": "Predict", "signature": "a -> b", "config": {key: value}}
        message = rf"^invalid program spec at config\.{key}: {re.escape(problem)}$"
        with pytest.raises(ProgramSpecError, match=message):
            parse_program_spec(spec)

    @pytest.mark.parametrize("key", sorted(_GOOD_VALUES))
    def test_values_of_the_right_type_pass(self, key: str) -> None:
        """Values of the option's JSON type are kept as written."""
        for value in _GOOD_VALUES[key]:
            config = {key: value}
            spec = parse_program_spec(
                {"module": "Predict", "signature": "a -> b", "config": config}
            )
            assert spec.config == config

    def test_a_saved_programs_settings_are_checked_alike(self) -> None:
        """A DSPy lm block restored with lm_settings=True refuses a wrong type the same way."""
        state = {"demos": [], "lm": {"model": "openai/x", "temperature": [0.5]}}
        with pytest.raises(StateError, match=r"\.lm\.temperature: must be a number$"):
            read_predictor_state(state, lm_settings=True)


class TestBadSpecs:
    @pytest.mark.parametrize(
        ("spec", "field", "problem"),
        [
            ([], "<root>", "a program spec must be a JSON object"),
            ({"module": "X", "signature": "a -> b"}, "module", "must be one of"),
            ({"module": "Predict", "signature": "a b"}, "signature", "missing '->'"),
            ({"module": "Predict", "signature": ""}, "signature", "must be a non-empty"),
            ({"module": "Predict", "signature": "a -> b", "extra": 1}, "extra", "unknown key"),
            (
                {"module": "Predict", "signature": "a -> b", "config": {"api_key": "sk-x"}},
                "config.api_key",
                "not a generation option",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "config": {"temperature": math.nan}},
                "config.temperature",
                "numbers must be finite",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "config": {"max_tokens": math.inf}},
                "config.max_tokens",
                "numbers must be finite",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "config": {"logit_bias": {"1": -math.inf}},
                },
                "config.logit_bias",
                "numbers must be finite",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "config": {"max_tokens": 10**29}},
                "config.max_tokens",
                "must be a whole number from 1 to 2147483647",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "config": {"n": 0}},
                "config.n",
                "must be a whole number from 1 to 128",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "config": {"top_logprobs": "5"}},
                "config.top_logprobs",
                "must be a whole number from 0 to 20",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "config": {"seed": 2**64}},
                "config.seed",
                "whole numbers must fit 64 bits",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "config": {"logit_bias": {"1": 10**29}},
                },
                "config.logit_bias",
                "whole numbers must fit 64 bits",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "descriptions": {"z": "?"}},
                "descriptions.z",
                "no such field",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "instructions": "x\ud800"},
                "instructions",
                "holds a lone surrogate",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "state": {"demos": [{"a": ["\udfff"]}]},
                },
                "state.demos[0].a[0]",
                "holds a lone surrogate",
            ),
            ({"module": "Predict", "signature": "a -> b", "lm": "gpt"}, "lm", "must be 'vendor/"),
            ({"module": "Predict", "signature": "a -> b", "adapter": "xml2"}, "adapter", "must be"),
            (
                {"module": "Predict", "signature": "a -> b", "adapter": {"name": "yaml"}},
                "adapter.name",
                "must be one of chat, json, xml, two_step",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "adapter": "two_step"},
                "adapter.extraction_lm",
                "two_step needs the model that extracts",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "adapter": {"name": "json", "use_json_adapter_fallback": False},
                },
                "adapter.use_json_adapter_fallback",
                "not an option of json",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "adapter": {"name": "chat", "parallel_tool_calls": "yes"},
                },
                "adapter.parallel_tool_calls",
                "must be true, false or null",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "adapter": {"name": "two_step", "extraction_lm": "gpt"},
                },
                "adapter.extraction_lm",
                "must be 'vendor/model'",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "lm": "openai/" + "x" * 100_000},
                "lm",
                "must be at most 256 characters, got 100007",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "adapter": {"name": "two_step", "extraction_lm": "a/" + "b" * 300},
                },
                "adapter.extraction_lm",
                "must be at most 256 characters, got 302",
            ),
            (
                {
                    "module": "Predict",
                    "signature": "a -> b",
                    "adapter": {"name": "two_step", "extraction_lm": "openai/gpt-4o-mini"},
                },
                "adapter.extraction_lm",
                "needs an LM resolver",
            ),
            (
                {"module": "Predict", "signature": "a -> b", "state": {"demos": 5}},
                "state.self.demos",
                "must be a list of JSON objects",
            ),
            (
                {"module": "Predict", "signature": {"inputs": {"a": "int"}, "outputs": {}}},
                "signature.outputs",
                "needs at least one field",
            ),
            (
                {"module": "Predict", "signature": "a: Frobnicate -> b"},
                "signature",
                "unknown type",
            ),
        ],
    )
    def test_names_the_field(self, spec: Any, field: str, problem: str) -> None:
        """Every malformed spec raises ProgramSpecError naming the field and the problem."""
        with pytest.raises(ProgramSpecError) as err:
            build_program(spec)
        assert err.value.field == field
        assert problem in err.value.problem
        assert str(err.value).startswith(f"invalid program spec at {field}: ")
        assert isinstance(err.value, ValueError)

    def test_secrets_never_echoed(self) -> None:
        """A rejected config option's value (a key, say) is not in the error."""
        with pytest.raises(ProgramSpecError) as err:
            parse_program_spec(
                {"module": "Predict", "signature": "a -> b", "config": {"api_key": "sk-secret"}}
            )
        assert "sk-secret" not in str(err.value)
        assert "sk-secret" not in json.dumps(err.value.to_dict())

    def test_a_huge_signature_is_not_echoed_whole(self) -> None:
        """A 50 kB malformed signature's error shows a clipped piece and its length."""
        text = "a: " + "list[" * 10_000 + " -> b"
        with pytest.raises(ProgramSpecError) as info:
            build_program(parse_program_spec({"module": "Predict", "signature": text}))
        assert info.value.field == "signature" and len(info.value.problem) > 50_000
        assert len(str(info.value)) < 400 and str(info.value).endswith(" more chars]")
