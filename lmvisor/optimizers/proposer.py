"""MIPROv2's instruction proposer: a dataset summary, a program description, then one
grounded instruction per (predictor, demo set), written by the prompt model.

The signatures and the text they are given follow DSPy 3.4.1's grounded proposer, so a
DSPy user sees the same prompts: a summary of the trainset from `DatasetDescriptor` (10
examples at a time, at most 10 calls) and `ObservationSummarizer`; per proposal,
`DescribeProgram` and `DescribeModule` when program-aware, then an instruction from a
signature holding only the enabled inputs (dataset description, program, task demos,
basic instruction, tip).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

from lmvisor.programs.example import Example
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.signature import Signature, make_signature

__all__ = [
    "TIPS",
    "DatasetDescriptor",
    "DatasetDescriptorWithPriorObservations",
    "DescribeModule",
    "DescribeProgram",
    "ObservationSummarizer",
    "ProposalPlan",
    "dspy_repr",
    "example_string",
    "instruction_signature",
    "program_code",
    "strip_prefix",
]

TIPS: Mapping[str, str] = {
    "none": "",
    "creative": "Don't be afraid to be creative when creating the new instruction!",
    "simple": "Keep the instruction clear and concise.",
    "description": "Make sure your instruction is very informative and descriptive.",
    "high_stakes": "The instruction should include a high stakes scenario in which the LM must solve the task!",  # noqa: E501
    "persona": 'Include a persona that is relevant to the task in the instruction (ie. "You are a ...")',  # noqa: E501
}
"""Prompting tips, one drawn at random per proposal ("none" adds no tip field)."""

_PREFIX = re.compile(r"^[\*\s]*(([\w\'\-]+\s+){0,4}[\w\'\-]+):\s*")


class DatasetDescriptor(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. Some areas you may consider in your observations: topics, content, syntax, conciseness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""  # noqa: E501

    examples: str = InputField(desc="Sample data points from the dataset")
    observations: str = OutputField(
        desc="Somethings that holds true for most or all of the data you observed"
    )


class DatasetDescriptorWithPriorObservations(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. I will also provide you with a few observations I have already made.  Please add your own observations or if you feel the observations are comprehensive say 'COMPLETE' Some areas you may consider in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""  # noqa: E501

    examples: str = InputField(desc="Sample data points from the dataset")
    prior_observations: str = InputField(desc="Some prior observations I made about the data")
    observations: str = OutputField(
        desc="Somethings that holds true for most or all of the data you observed or COMPLETE if you have nothing to add"  # noqa: E501
    )


class ObservationSummarizer(Signature):
    """Given a series of observations I have made about my dataset, please summarize them into a brief 2-3 sentence summary which highlights only the most important details."""  # noqa: E501

    observations: str = InputField(desc="Observations I have made about my dataset")
    summary: str = OutputField(
        desc="Two to Three sentence summary of only the most significant highlights of my observations"  # noqa: E501
    )


class DescribeProgram(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe what type of task this program appears to be designed to solve, and how it appears to work."""  # noqa: E501

    program_code: str = InputField(
        desc="Pseudocode for a language model program designed to solve a particular task."
    )
    program_example: str = InputField(desc="An example of the program in use.")
    program_description: str = OutputField(
        desc="Describe what task the program is designed to solve, and how it goes about solving this task."  # noqa: E501
    )


class DescribeModule(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe the purpose of one of the specified module in this pipeline."""  # noqa: E501

    program_code: str = InputField(
        desc="Pseudocode for a language model program designed to solve a particular task."
    )
    program_example: str = InputField(desc="An example of the program in use.")
    program_description: str = InputField(
        desc="Summary of the task the program is designed to solve, and how it goes about solving it."  # noqa: E501
    )
    module: str = InputField(desc="The module in the program that we want to describe.")
    module_description: str = OutputField(
        desc="Description of the module's role in the broader program."
    )


_INSTRUCTION_TEXT = "Use the information below to learn about a task that we are trying to solve using calls to an LM, then generate a new instruction that will be used to prompt a Language Model to better solve the task."  # noqa: E501
_INSTRUCTION_INPUTS: tuple[tuple[str, str, str], ...] = (
    ("dataset_description", "summary", "A description of the dataset that we are using."),
    ("program_code", "program", "Language model program designed to solve a particular task."),
    (
        "program_description",
        "program",
        "Summary of the task the program is designed to solve, and how it goes about solving it.",
    ),
    ("module", "program", "The module to create an instruction for."),
    ("module_description", "program", "Description of the module to create an instruction for."),
    ("task_demos", "always", "Example inputs/outputs of our module."),
    ("basic_instruction", "always", "Basic instruction."),
    ("tip", "tip", "A suggestion for how to go about generating the new instruction."),
)


def instruction_signature(*, summary: bool, program: bool, tip: bool) -> type[Signature]:
    """The instruction-writing signature with only the enabled inputs, in DSPy's order."""
    enabled = {"summary": summary, "program": program, "tip": tip, "always": True}
    fields: dict[str, Any] = {
        name: (str, InputField(desc=desc))
        for name, group, desc in _INSTRUCTION_INPUTS
        if enabled[group]
    }
    fields["proposed_instruction"] = (
        str,
        OutputField(
            desc="Propose an instruction that will be used to prompt a Language Model to perform this task."  # noqa: E501
        ),
    )
    return make_signature(fields, _INSTRUCTION_TEXT, name="GenerateSingleModuleInstruction")


def strip_prefix(text: str) -> str:
    """Drop a leading "Label:" (up to five words) and surrounding quotes, as DSPy does."""
    return _PREFIX.sub("", text).strip('"')


def dspy_repr(examples: Sequence[Example]) -> str:
    """The examples as DSPy prints a list of them (input keys sorted)."""
    parts = []
    for example in examples:
        keys = example.input_keys
        marked = "None" if keys is None else "{" + ", ".join(repr(k) for k in sorted(keys)) + "}"
        parts.append(f"Example({dict(example.items())!r}) (input_keys={marked})")
    return "[" + ", ".join(parts) + "]"


def example_string(signature: type[Signature], example: Mapping[str, Any] | Example) -> str:
    """One demo as the proposer shows it: each field's prefix and value, one per line."""
    get = example.get
    return "\n".join(f"{f.prefix} {get(name)}" for name, f in signature.fields.items())


def program_code(module: Module) -> str:
    """Pseudo-code of a program for the proposer: its predictors' signatures and its class
    source (built-in Predict and ChainOfThought show no source), as DSPy builds it."""
    header: list[str] = []
    base = ""
    if type(module).__name__ not in ("Predict", "ChainOfThought"):
        try:
            base = inspect.getsource(type(module))
        except (OSError, TypeError):
            base = ""
    seen: set[str] = set()
    for value in module.__dict__.values():
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, Predict):
                text = repr(item.signature)
                if text not in seen:
                    header.append(text)
                    seen.add(text)
            if isinstance(item, Module):
                code = program_code(item).strip()
                if code not in seen:
                    header.append(code)
                    seen.add(code)
    return "\n\n".join(header) + "\n\n" + base


@final
@dataclass(frozen=True, slots=True)
class ProposalPlan:
    """One proposal to write: which predictor, which demo set, which tip (RNG-drawn)."""

    predictor: int
    demo_set: int
    tip: str
    rollout: int
