"""Signatures: class and string forms, types, operations, equality, composition, errors."""

from __future__ import annotations

import enum
from typing import Literal, Optional

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmvisor.programs.errors import SignatureError
from lmvisor.programs.fields import InputField, OutputField, infer_prefix
from lmvisor.programs.signature import Signature, compose_signatures, ensure_signature


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Person(pydantic.BaseModel):
    name: str
    age: int


class QA(Signature):
    """Answer the question with a short factoid."""

    context: list[str] = InputField(desc="facts that may help")
    question: str = InputField()
    answer: str = OutputField(desc="often between 1 and 5 words")
    confidence: float = OutputField()
    kind: Literal["fact", "opinion"] = OutputField()


class TestClassForm:
    def test_fields_and_instructions(self) -> None:
        """Fields keep declaration order, split by kind; the docstring is the instructions."""
        assert list(QA.input_fields) == ["context", "question"]
        assert list(QA.output_fields) == ["answer", "confidence", "kind"]
        assert QA.instructions == "Answer the question with a short factoid."
        assert QA.fields["context"].annotation == list[str]
        assert QA.fields["kind"].annotation == Literal["fact", "opinion"]

    def test_default_description_and_prefix(self) -> None:
        """A field without desc gets DSPy's "${name}" placeholder and an inferred prefix."""
        field = QA.fields["question"]
        assert field.desc == "${question}"
        assert not field.has_description
        assert field.prefix == "Question:"
        assert QA.fields["context"].desc == "facts that may help"

    def test_default_instructions(self) -> None:
        """Without a docstring the instructions name the inputs and outputs, as DSPy does."""

        class NoDoc(Signature):
            question: str = InputField()
            answer: str = OutputField()

        assert NoDoc.instructions == "Given the fields `question`, produce the fields `answer`."

    def test_annotation_without_field_is_an_error(self) -> None:
        """An annotated attribute that is not an InputField/OutputField is rejected."""
        with pytest.raises(SignatureError, match=r"field 'x' must be declared with InputField"):

            class Bad(Signature):
                x: int
                answer: str = OutputField()

    def test_field_without_annotation_is_str(self) -> None:
        """A declared field with no annotation is a str field."""

        class Loose(Signature):
            question = InputField()
            answer = OutputField()

        assert Loose.fields["question"].annotation is str

    def test_supported_types(self) -> None:
        """Enum, Optional, dict and pydantic models are accepted as field types."""

        class Typed(Signature):
            color: Color = InputField()
            note: Optional[str] = InputField()  # noqa: UP045
            person: Person = OutputField()
            scores: dict[str, float] = OutputField()
            flag: bool = OutputField()
            count: int = OutputField()

        assert Typed.fields["person"].annotation is Person
        assert Typed.fields["color"].annotation is Color

    def test_cannot_instantiate(self) -> None:
        """A signature class is a type, never instantiated."""
        with pytest.raises(
            TypeError, match=r"^QA is a signature class; it cannot be instantiated$"
        ):
            QA()

    def test_subclass_inherits_fields(self) -> None:
        """A subclass keeps the parent's fields and adds its own."""

        class More(QA):
            source: str = OutputField()

        assert list(More.output_fields) == ["answer", "confidence", "kind", "source"]


class TestStringForm:
    def test_typed_string(self) -> None:
        """Types written in the string are parsed without eval."""
        sig = Signature("context: list[str], question -> answer: str, confidence: float")
        assert sig.fields["context"].annotation == list[str]
        assert sig.fields["question"].annotation is str
        assert sig.fields["confidence"].annotation is float
        assert sig.signature == "context, question -> answer, confidence"

    def test_complex_types(self) -> None:
        """Literal, Optional, unions, dicts and nested generics parse."""
        sig = Signature(
            "a: Literal['x', \"y\"], b: Optional[int], c: int | None, d: dict[str, list[int]]"
            " -> e: bool, f: tuple[int, str]"
        )
        assert sig.fields["a"].annotation == Literal["x", "y"]
        assert sig.fields["b"].annotation == Optional[int]  # noqa: UP045
        assert sig.fields["c"].annotation == Optional[int]  # noqa: UP045
        assert sig.fields["d"].annotation == dict[str, list[int]]
        assert sig.fields["f"].annotation == tuple[int, str]

    def test_custom_types(self) -> None:
        """Custom types are resolved through `custom_types`."""
        from lmvisor.programs.signature import make_signature

        sig = make_signature("q -> p: Person", custom_types={"Person": Person})
        assert sig.fields["p"].annotation is Person

    def test_instructions_argument(self) -> None:
        """A second argument sets the instructions."""
        sig = Signature("q -> a", "Be brief.")
        assert sig.instructions == "Be brief."

    def test_no_inputs_allowed(self) -> None:
        """A signature may have no inputs, but needs an output."""
        sig = Signature(" -> a")
        assert list(sig.input_fields) == []

    @pytest.mark.parametrize(
        ("text", "pattern"),
        [
            ("question answer", r"missing '->' \(at 'question answer'\)"),
            ("a -> b -> c", r"more than one '->'"),
            ("a -> ", r"no output field"),
            ("a, a -> b", r"duplicate field name 'a' \(at 'a'\)"),
            ("a -> a", r"duplicate field name 'a'"),
            ("a, -> b", r"empty field \(at ','\)"),
            ("1a -> b", r"'1a' is not a valid field name \(at '1a'\)"),
            ("a -> b: lst[str]", r"unknown type 'lst' \(at 'b: lst\[str\]'\)"),
            ("a -> b: list[", r"not a type expression"),
            ("a -> b:", r"missing type after ':' \(at 'b:'\)"),
            ("a -> b: Literal[x]", r"Literal takes constants"),
            ("a -> class", r"'class' is not a valid field name"),
        ],
    )
    def test_malformed(self, text: str, pattern: str) -> None:
        """A malformed string raises SignatureError pointing at the offending part."""
        with pytest.raises(SignatureError, match=pattern) as info:
            Signature(text)
        assert info.value.signature == text
        assert isinstance(info.value, ValueError)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [*"ab:,->[]()|'\" \x00", "list", "int", "Literal", "None", "->", "dict"]
            ),
            max_size=20,
        ).map("".join)
    )
    def test_never_crashes(self, text: str) -> None:
        """Any string either builds a signature or raises SignatureError."""
        try:
            sig = Signature(text)
        except SignatureError:
            return
        assert sig.output_fields

    def test_deep_nesting(self) -> None:
        """Pathologically nested types are a SignatureError, not a crash."""
        with pytest.raises(SignatureError):
            Signature("a -> b: " + "list[" * 5000 + "str" + "]" * 5000)

    @pytest.mark.parametrize(
        "text",
        [
            "a -> b: " + "list[" * 10_000 + "str" + "]" * 10_000,
            "1" * 100_000 + " -> b",
            "a -> b: " + "x" * 100_000,
        ],
    )
    def test_huge_signature_is_not_echoed_whole(self, text: str) -> None:
        """A huge malformed signature's message shows a clipped piece and its length, once."""
        with pytest.raises(SignatureError) as info:
            Signature(text)
        assert info.value.signature == text
        assert len(str(info.value)) < 1_000
        assert f"...[{len(text) - 200} more chars]" in str(info.value)

    def test_ensure_signature(self) -> None:
        """ensure_signature accepts classes and strings, rejects anything else."""
        assert ensure_signature(QA) is QA
        assert ensure_signature("q -> a") == Signature("q -> a")
        with pytest.raises(TypeError, match=r"^signature must be a str or a Signature subclass$"):
            ensure_signature(3)  # type: ignore[arg-type]


class TestOperations:
    def test_with_instructions(self) -> None:
        """with_instructions returns a new signature and leaves the original alone."""
        new = QA.with_instructions("Be terse.")
        assert new.instructions == "Be terse."
        assert QA.instructions == "Answer the question with a short factoid."
        assert new.fields == QA.fields

    def test_append_prepend_insert(self) -> None:
        """Fields are added at the end, the start or an index among their kind."""
        sig = Signature("q -> a")
        assert list(sig.append("b", OutputField()).output_fields) == ["a", "b"]
        assert list(sig.prepend("r", OutputField()).output_fields) == ["r", "a"]
        assert list(sig.prepend("c", InputField(), list[str]).input_fields) == ["c", "q"]
        three = sig.append("b", OutputField()).insert(1, "m", OutputField(), int)
        assert list(three.output_fields) == ["a", "m", "b"]
        assert three.fields["m"].annotation is int
        assert list(sig.output_fields) == ["a"]

    def test_insert_errors(self) -> None:
        """Inserting a duplicate name, a non-field or at a bad index fails clearly."""
        sig = Signature("q -> a")
        with pytest.raises(SignatureError, match=r"duplicate field name 'a'"):
            sig.append("a", OutputField())
        with pytest.raises(TypeError, match=r"^field must be InputField\(\.\.\.\) or OutputField"):
            sig.append("b", "x")
        with pytest.raises(ValueError, match=r"^index 5 out of range for 1 output fields$"):
            sig.insert(5, "b", OutputField())

    def test_delete(self) -> None:
        """delete removes a field; an unknown name is a KeyError."""
        sig = QA.delete("confidence")
        assert list(sig.output_fields) == ["answer", "kind"]
        with pytest.raises(KeyError, match="no field 'nope'"):
            QA.delete("nope")

    def test_with_updated_fields(self) -> None:
        """with_updated_fields changes a field's type and description."""
        sig = QA.with_updated_fields("answer", type_=int, desc="a number")
        assert sig.fields["answer"].annotation is int
        assert sig.fields["answer"].desc == "a number"
        with pytest.raises(TypeError, match=r"^unknown field attribute 'bogus'$"):
            QA.with_updated_fields("answer", bogus=1)

    def test_equality_and_hash(self) -> None:
        """Signatures with the same instructions and fields are equal and hash alike."""
        a = Signature("q: int -> a")
        b = Signature("q: int -> a")
        assert a == b
        assert hash(a) == hash(b)
        assert a != Signature("q -> a")
        assert a != a.with_instructions("other")

    def test_dump_and_load_state(self) -> None:
        """State holds instructions and each field's prefix/description, restored by position."""
        state = QA.with_instructions("New.").dump_state()
        assert state["fields"][0] == {"prefix": "Context:", "description": "facts that may help"}
        restored = QA.load_state(state)
        assert restored.instructions == "New."
        assert restored == QA.with_instructions("New.")


class TestCompose:
    def test_union_of_fields(self) -> None:
        """Composition keeps every field once and joins instructions."""
        a = Signature("q -> a", "First.")
        b = Signature("q, ctx -> b", "Second.")
        sig = compose_signatures(a, b)
        assert list(sig.input_fields) == ["q", "ctx"]
        assert list(sig.output_fields) == ["a", "b"]
        assert sig.instructions == "First.\n\nSecond."

    def test_conflict(self) -> None:
        """A field declared with another kind or type is a conflict naming both."""
        with pytest.raises(SignatureError, match=r"field 'a' conflicts: output str vs input str"):
            compose_signatures(Signature("q -> a"), Signature("a -> b"))
        with pytest.raises(SignatureError, match=r"field 'q' conflicts: input str vs input int"):
            compose_signatures(Signature("q -> a"), Signature("q: int -> b"))

    def test_needs_one(self) -> None:
        """At least one signature is needed."""
        with pytest.raises(ValueError, match=r"^compose_signatures needs at least one signature$"):
            compose_signatures()


class TestInferPrefix:
    @pytest.mark.parametrize(
        ("name", "prefix"),
        [("question", "Question"), ("someField", "Some Field"), ("hop_2_query", "Hop 2 Query")],
    )
    def test_prefix(self, name: str, prefix: str) -> None:
        """Names split at underscores, case changes and digits, as DSPy does."""
        assert infer_prefix(name) == prefix
