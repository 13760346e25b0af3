"""XMLAdapter answers for the loopback LM: every output field between its tags.

A DSPy XMLAdapter prompt shows each output field in its system text as
`<name>\\n{name}\\n</name>`, or, for a list, dict or model output, as a one-line skeleton of
nested tags (`<items><item>...</item></items>`). `is_xml_prompt` recognises such a prompt;
`xml_adapter_answer` writes the fields in the layout the adapter writes its demos in:

- a scalar field's value on its own line between its tags (text escaped for XML);
- a nested field as nested XML: built from its declared type where the type is one of
  Python's own (`list[str]`, `dict[str, int]`...), else the prompt's skeleton with each
  `...` leaf filled in. A model's leaf types are not in the prompt, so a leaf gets a small
  number, which reads as text, a number or a boolean alike.

Deterministic, like every loopback answer: the same request gets the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from lmvisor.testing._lm_answers import OutputField, field_value, render_value, stable_hash

__all__ = ["is_xml_prompt", "xml_adapter_answer"]

_CHAT_MARKER: Final = "[[ ## completed ## ]]"
_LEAF: Final = re.compile(r"<([A-Za-z_][\w.-]*)>\.\.\.</\1>")
_QUOTED: Final = re.compile(r"'[^']*'|\"[^\"]*\"")
_NAME: Final = re.compile(r"[A-Za-z_][\w.]*")
_PYTHON_TYPES: Final = frozenset(
    {"str", "int", "float", "bool", "None", "NoneType", "Any", "Optional", "Union", "Literal",
     "list", "List", "set", "Set", "tuple", "Tuple", "Sequence", "dict", "Dict", "Mapping",
     "typing"}
)  # fmt: skip


def is_xml_prompt(system: str, fields: Sequence[OutputField]) -> bool:
    """Whether `system` is an XMLAdapter system text for these output fields."""
    if not fields or _CHAT_MARKER in system:
        return False
    return all(f"<{f.name}>" in system for f in fields)


def xml_adapter_answer(
    fields: Sequence[OutputField], *, system: str, seed: str, snippet: str, choice: int = 0
) -> str:
    """Every field between its tags, in order, separated by blank lines."""
    kw: dict[str, Any] = {"seed": seed, "snippet": snippet, "choice": choice}
    return "\n\n".join(_field_xml(spec, system, **kw) for spec in fields)


def _field_xml(spec: OutputField, system: str, **kw: Any) -> str:
    skeleton = _skeleton(system, spec.name)
    if skeleton is None:
        text = render_value(field_value(spec, **kw))
        return f"<{spec.name}>\n{_escape(text)}\n</{spec.name}>"
    if _python_type(spec.type):
        return _nested(spec.name, field_value(spec, **kw))
    return _filled(skeleton, spec.name, seed=kw["seed"], choice=kw["choice"])


def _skeleton(system: str, name: str) -> str | None:
    """The one-line nested skeleton the prompt shows for `name`, if it shows one."""
    tag = re.escape(name)
    found = re.search(rf"^<{tag}><.*</{tag}>$", system, flags=re.MULTILINE)
    return None if found is None else found.group(0)


def _python_type(type_text: str) -> bool:
    """True when every name in the type text is a builtin or typing name (no model)."""
    names = _NAME.findall(_QUOTED.sub("", type_text))
    return all(name.rsplit(".", 1)[-1] in _PYTHON_TYPES for name in names)


def _nested(tag: str, value: Any, key: str | None = None) -> str:
    """`value` as nested XML, as XMLAdapter writes a structured value."""
    attrs = "" if key is None else f' key="{_escape(key).replace(chr(34), "&quot;")}"'
    if isinstance(value, list):
        items = "".join(_nested("item", item) for item in value)
        return f"<{tag}{attrs}>{items}</{tag}>" if items else f"<{tag}{attrs} />"
    if isinstance(value, dict):
        children = "".join(
            _nested(str(k), v) if str(k).isidentifier() else _nested("entry", v, str(k))
            for k, v in value.items()
        )
        return f"<{tag}{attrs}>{children}</{tag}>"
    if value is None:
        return f"<{tag}{attrs} />"
    return f"<{tag}{attrs}>{_escape(render_value(value))}</{tag}>"


def _filled(skeleton: str, name: str, *, seed: str, choice: int) -> str:
    """The skeleton with each `...` leaf replaced by a small stable number."""

    def leaf(match: re.Match[str]) -> str:
        tag = match.group(1)
        number = int(stable_hash(seed, name, tag, str(choice)), 16) % 100 + 1
        return f"<{tag}>{number}</{tag}>"

    return _LEAF.sub(leaf, skeleton)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")
