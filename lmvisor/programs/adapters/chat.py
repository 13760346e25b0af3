"""ChatAdapter: DSPy 3.4.1's `[[ ## field ## ]]` marker format, byte for byte.

The system message lists the fields, shows the structure with type notes and states
the instructions; demos become user/assistant turns; the last user message ends with
"Respond with the corresponding output fields...". A completion that does not parse
is retried once with the JSONAdapter (unless disabled), then `AdapterParseError`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lmvisor.programs._types import allows_none, annotation_name
from lmvisor.programs.adapters._history import history_turns
from lmvisor.programs.adapters._values import (
    field_placeholder,
    format_field_value,
    parse_value,
    type_hint,
)
from lmvisor.programs.adapters.base import Adapter
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.custom_types import custom_types_in, holds_parts, split_content_parts
from lmvisor.programs.errors import ConstraintError
from lmvisor.programs.fields import Field, check_bounds
from lmvisor.programs.history import History
from lmvisor.programs.signature import Signature

__all__ = [
    "ChatAdapter",
    "format_field_description",
    "format_fields",
    "format_task_description",
]

# A header line: optional blanks, `[[ ## name ## ]]`, then the rest of the line and its
# line break. The rest is stripped in Python: a lazy group followed by optional blanks would
# backtrack quadratically over a long run of blanks inside a hostile completion's line.
_HEADER_LINE = re.compile(r"^[^\S\n]*\[\[ ## (\w+) ## \]\]([^\n]*)(?:\n|\Z)", re.MULTILINE)
# The line breaks `str.splitlines` knows besides "\n".
_ODD_BREAK = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class ChatAdapter(Adapter):
    """DSPy's default adapter: marker sections in, marker sections out.

    Args:
        callbacks: adapter-level hooks (format/parse start and end).
        use_native_function_calling: send a `ToolCalls` output's tools natively.
        use_json_adapter_fallback: on a parse failure, retry once with `JSONAdapter`.
        parallel_tool_calls: with native calls, ask for parallel calls (None: vendor default).
    """

    name: ClassVar[str] = "ChatAdapter"

    def __init__(
        self,
        *,
        callbacks: Sequence[Callback] = (),
        use_native_function_calling: bool = False,
        use_json_adapter_fallback: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            parallel_tool_calls=parallel_tool_calls,
        )
        self.use_json_adapter_fallback = use_json_adapter_fallback

    def _fallback(self) -> Adapter | None:
        """JSONAdapter, once, when parsing fails (unless disabled); see `Adapter.run`."""
        if not self.use_json_adapter_fallback:
            return None
        from lmvisor.programs.adapters.json_adapter import JSONAdapter

        return JSONAdapter(
            callbacks=self.callbacks,
            use_native_function_calling=self.use_native_function_calling,
            parallel_tool_calls=self.parallel_tool_calls,
        )

    # --- format ----------------------------------------------------------------------

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """System message, demo turns, conversation history turns, then the request.

        User messages holding images, audio or files become lists of content parts.
        """
        system = self._system_message(signature)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        if demos:
            messages.extend(self.format_demos(signature, demos))
        history_name = _history_field_name(signature)
        if history_name is None:
            content = self.format_user_message_content(signature, inputs, main_request=True)
        else:
            reduced = signature.delete(history_name)
            history = inputs.get(history_name)
            rest = {k: v for k, v in inputs.items() if k != history_name}
            if isinstance(history, History):
                messages.extend(self.format_conversation_history(reduced, history))
            content = self.format_user_message_content(reduced, rest, main_request=True)
        if content:
            messages.append({"role": "user", "content": content})
        if len(messages) <= 2 and not holds_parts(system) and not holds_parts(content):
            return messages  # the usual request: two texts without a marked value
        # The messages are this call's own dicts: one without marked values is kept as is.
        return [m if type(m) is dict else dict(m) for m in map(split_content_parts, messages)]

    def _system_message(self, signature: type[Signature]) -> str:
        key = (type(self), "system")  # the class itself: a same-named subclass has its own
        cached: str | None = signature._cache.get(key)
        if cached is None:
            cached = signature._cache[key] = (
                f"{format_field_description(signature)}\n"
                f"{self.format_field_structure(signature)}\n"
                f"{format_task_description(signature)}"
            )
        return cached

    def format_field_structure(self, signature: type[Signature]) -> str:
        """The "All interactions will be structured..." part with placeholders."""
        parts = [
            "All interactions will be structured in the following way, "
            "with the appropriate values filled in.",
            _sections((f.name, field_placeholder(f)) for f in signature._inputs.values()),
            _sections((f.name, field_placeholder(f)) for f in signature._outputs.values()),
            "[[ ## completed ## ]]\n",
        ]
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        """The "Respond with the corresponding output fields..." line."""
        key = (type(self), "requirements")
        cached: str | None = signature._cache.get(key)
        if cached is None:
            cached = signature._cache[key] = self._output_requirements(signature)
        return cached

    def _output_requirements(self, signature: type[Signature]) -> str:
        order = ", then ".join(
            f"`[[ ## {f.name} ## ]]`{type_hint(f)}" for f in signature._outputs.values()
        )
        return (
            f"Respond with the corresponding output fields, starting with the field {order}, "
            "and then ending with the marker for `[[ ## completed ## ]]`."
        )

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        *,
        prefix: str = "",
        main_request: bool = False,
    ) -> str:
        """The input sections (only those given), plus the output requirements if asked."""
        parts = [prefix]
        for name, field in signature._inputs.items():
            if name in inputs:
                parts.append(f"[[ ## {name} ## ]]\n{format_field_value(field, inputs[name])}")
        if main_request:
            parts.append(self.user_message_output_requirements(signature))
        return "\n\n".join(parts).strip()

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """The output sections of a demo, then the completed marker."""
        body = _sections(
            (f.name, format_field_value(f, outputs.get(f.name, missing_field_message)))
            for f in signature._outputs.values()
        )
        return body + "\n\n[[ ## completed ## ]]\n"

    def format_conversation_history(
        self, signature: type[Signature], history: History
    ) -> list[dict[str, Any]]:
        """Earlier turns: a user turn for each entry with inputs (ending with the reminder),
        then an assistant turn with its outputs; tool calls with their results as native
        `tool_calls` and `tool` messages, or as a results turn (see `_history`), as DSPy
        3.4.1 renders them.

        Raises:
            ValueError: an entry's tool calls or their results cannot be read.
        """
        return history_turns(self, signature, history)

    # --- parse -----------------------------------------------------------------------

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Split the completion at `[[ ## name ## ]]` markers and type each output.

        A missing output whose type allows None parses to None, as in DSPy.

        Raises:
            AdapterParseError: an output section is missing or does not fit its type.
            ConstraintError: an output breaks its field's bound.
        """
        outputs = signature._outputs
        values: dict[str, Any] = {}
        if "[[ ## " in completion:
            # One C-level split at the header lines: [text before, then (name, rest of the
            # header line, the lines up to the next header) per header]. Sections as
            # `splitlines` would cut them: a reply with other line breaks is re-joined
            # with "\n" first (the rare case; its CRLF bodies come out with "\n" as before).
            text = completion
            if _ODD_BREAK.search(text) is not None:
                text = "\n".join(text.splitlines())
            pieces = iter(_HEADER_LINE.split(text))
            next(pieces)
            for name, rest, body in zip(pieces, pieces, pieces, strict=True):
                if name in values or name not in outputs:
                    continue
                rest = rest.strip()
                raw = f"{rest}\n{body}".strip() if rest else body.strip()
                values[name] = self._parse_field(signature, completion, outputs[name], raw, values)
        return self._complete(signature, completion, values)

    def _parse_field(
        self,
        signature: type[Signature],
        completion: str,
        field: Field,
        raw: Any,
        parsed: Mapping[str, Any],
    ) -> Any:
        """One output typed and checked against its bounds.

        Raises:
            AdapterParseError: the value does not fit the field's type.
            ConstraintError: it breaks a bound.
        """
        try:
            value = parse_value(raw, field.annotation)
        except ValueError as exc:
            shown = str(raw) if len(str(raw)) <= 200 else str(raw)[:200] + "..."
            problem = (
                f"field {field.name!r} ({annotation_name(field.annotation)}) cannot be read "
                f"from {shown!r}: {exc}"
            )
            raise self._parse_error(signature, completion, problem, parsed) from None
        return self._checked(signature, completion, field, value, parsed)

    def _checked(
        self,
        signature: type[Signature],
        completion: str,
        field: Field,
        value: Any,
        parsed: Mapping[str, Any],
    ) -> Any:
        """The value, if it keeps the field's bounds.

        Raises:
            ConstraintError: it breaks one.
        """
        if field.bounds:
            broken = check_bounds(field, value)
            if broken is not None:
                raise ConstraintError(
                    adapter=self.name,
                    signature=signature.signature,
                    completion=completion,
                    field=field.name,
                    problem=broken,
                    parsed=parsed,
                )
        return value

    def _complete(
        self, signature: type[Signature], completion: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        """The outputs in signature order, missing optional ones None.

        Raises:
            AdapterParseError: a required output is missing.
        """
        outputs = signature._outputs
        if len(values) == len(outputs):  # `parse` adds outputs only, once each: all are here
            # In signature order already (the usual reply), the dict itself is the answer.
            return values if list(values) == list(outputs) else {n: values[n] for n in outputs}
        done: dict[str, Any] = {}
        missing: list[str] = []
        for name, field in outputs.items():
            if name in values:
                done[name] = values[name]
            elif allows_none(field.annotation):
                done[name] = None
            else:
                missing.append(name)
        if missing:
            problem = f"missing output fields {missing}"
            raise self._parse_error(signature, completion, problem, values)
        return done


def _sections(pairs: Any) -> str:
    return "\n\n".join(f"[[ ## {name} ## ]]\n{text}" for name, text in pairs).strip()


def format_field_description(signature: type[Signature]) -> str:
    """ "Your input fields are: ... Your output fields are: ..." (shared with JSONAdapter)."""
    return (
        f"Your input fields are:\n{format_fields(signature._inputs)}\n"
        f"Your output fields are:\n{format_fields(signature._outputs)}"
    )


def format_fields(fields: Mapping[str, Field]) -> str:
    """The numbered field list of the system message: name, type, description, bounds."""
    lines = []
    for i, field in enumerate(fields.values()):
        line = f"{i + 1}. `{field.name}` ({annotation_name(field.annotation)})"
        desc = field.desc if field.has_description else ""
        for custom in custom_types_in(field.annotation):
            about = custom.description()
            if about:
                desc += f"\n    Type description of {annotation_name(custom)}: {about}"
        line += f": {desc}"
        if field.constraints:
            line += f"\nConstraints: {field.constraints}"
        lines.append(line)
    return "\n".join(lines).strip()


def format_task_description(signature: type[Signature]) -> str:
    """ "In adhering to this structure, your objective is: " and the indented instructions."""
    instructions = textwrap.dedent(signature.instructions)
    objective = ("\n" + " " * 8).join(["", *instructions.splitlines()])
    return f"In adhering to this structure, your objective is: {objective}"


def _history_field_name(signature: type[Signature]) -> str | None:
    key = ("history-field",)
    if key in signature._cache:  # looked up once per signature, as the system message is
        return signature._cache[key]  # type: ignore[no-any-return]
    found = next((n for n, f in signature._inputs.items() if f.annotation is History), None)
    signature._cache[key] = found
    return found
