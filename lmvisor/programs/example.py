"""`Example` (a record of named values, some marked as inputs) and `Prediction`
(a module's result: its values, every completion, and the usage of its LM calls).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, final

from lmvisor.programs.lm import Usage

__all__ = ["Completions", "Example", "Prediction"]

_NO_USAGE: Final = Usage()  # frozen: one shared zero for every prediction not yet paid for
_UNPAID: Final = (_NO_USAGE, None, False)
_set = object.__setattr__


class Example:
    """A record of named values; `with_inputs` marks which keys are inputs.

    Values are read as attributes (`ex.question`) or items (`ex["question"]`).
    Keys starting with "_" are reserved.
    """

    __slots__ = ("_input_keys", "_store")
    _input_keys: frozenset[str] | None
    _store: dict[str, Any]

    def __init__(self, base: Mapping[str, Any] | Example | None = None, **values: Any) -> None:
        store: dict[str, Any] = {}
        input_keys: frozenset[str] | None = None
        if isinstance(base, Example):
            store.update(base._store)
            input_keys = base._input_keys
        elif base is not None:
            store.update(base)
        store.update(values)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_input_keys", input_keys)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)
        try:
            return self._store[key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            raise AttributeError(f"cannot set reserved attribute {key!r}")
        self._store[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Example):
            return NotImplemented
        return self._store == other._store and self._input_keys == other._input_keys

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._store.items())))

    def __repr__(self) -> str:
        inputs = "" if self._input_keys is None else f", input_keys={sorted(self._input_keys)}"
        return f"{type(self).__name__}({self._store!r}{inputs})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Example:
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for klass in type(self).__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if hasattr(self, slot):
                    object.__setattr__(new, slot, copy.deepcopy(getattr(self, slot), memo))
        return new

    def keys(self) -> list[str]:
        """The field names."""
        return list(self._store)

    def values(self) -> list[Any]:
        """The field values."""
        return list(self._store.values())

    def items(self) -> list[tuple[str, Any]]:
        """(name, value) pairs."""
        return list(self._store.items())

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`, or `default`."""
        return self._store.get(key, default)

    @property
    def input_keys(self) -> frozenset[str] | None:
        """The keys marked as inputs, or None when `with_inputs` was never called."""
        return self._input_keys

    def with_inputs(self, *keys: str) -> Example:
        """A copy with `keys` marked as the inputs."""
        copy = self.copy()
        object.__setattr__(copy, "_input_keys", frozenset(keys))
        return copy

    def inputs(self) -> Example:
        """The input fields only.

        Raises:
            ValueError: `with_inputs` was never called.
        """
        if self._input_keys is None:
            raise ValueError("inputs() needs with_inputs(...) to be called first")
        picked = {k: v for k, v in self._store.items() if k in self._input_keys}
        return Example(picked).with_inputs(*self._input_keys)

    def labels(self) -> Example:
        """The fields that are not inputs."""
        keys = self._input_keys or frozenset()
        return Example({k: v for k, v in self._store.items() if k not in keys})

    def copy(self, **changes: Any) -> Example:
        """A shallow copy, with `changes` applied."""
        new = type(self).__new__(type(self))
        object.__setattr__(new, "_store", {**self._store, **changes})
        object.__setattr__(new, "_input_keys", self._input_keys)
        if isinstance(self, Prediction) and isinstance(new, Prediction):
            object.__setattr__(new, "_completions", self._completions)
            object.__setattr__(new, "_account", self._account)
        return new

    def without(self, *keys: str) -> Example:
        """A copy without `keys`."""
        new = self.copy()
        for key in keys:
            new._store.pop(key, None)
        return new

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the values (pydantic models dumped to JSON-ready data)."""
        return {k: _plain(v) for k, v in self._store.items()}

    toDict = to_dict


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, Example):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@final
class Completions:
    """Every completion of one LM call (`n` of them), each a dict of output values.

    `completions.answer` lists the `answer` of each completion; `completions[i]` is the
    i-th completion's dict.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._items = [dict(item) for item in items]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._items[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._items)

    def __getattr__(self, key: str) -> list[Any]:
        if key.startswith("_"):
            raise AttributeError(key)
        if self._items and key in self._items[0]:
            return [item.get(key) for item in self._items]
        raise AttributeError(f"completions have no field {key!r}")

    def __repr__(self) -> str:
        return f"Completions({self._items!r})"


@final
class Prediction(Example):
    """A module's result: the first completion's values, every completion, and usage."""

    # Usage, cost and "all cached" in one slot: written once per call, in one step.
    __slots__ = ("_account", "_completions")
    _account: tuple[Usage, float | None, bool]
    _completions: Completions

    def __init__(self, base: Mapping[str, Any] | Example | None = None, **values: Any) -> None:
        super().__init__(base, **values)
        _set(self, "_completions", Completions([dict(self._store)]))
        _set(self, "_account", _UNPAID)

    @classmethod
    def from_completions(
        cls, completions: Iterable[Mapping[str, Any]], *, usage: Usage | None = None
    ) -> Prediction:
        """A prediction whose values are the first completion's.

        Raises:
            ValueError: `completions` is empty.
        """
        items = Completions(completions)
        if not len(items):
            raise ValueError("completions must not be empty")
        # Built slot by slot: `cls(items[0])` would copy the values into completions again.
        pred = cls.__new__(cls)
        _set(pred, "_store", dict(items[0]))
        _set(pred, "_input_keys", None)
        _set(pred, "_completions", items)
        _set(pred, "_account", _UNPAID if usage is None else (usage, None, False))
        return pred

    @property
    def completions(self) -> Completions:
        """Every completion of the call that produced this prediction."""
        return self._completions

    @property
    def usage(self) -> Usage:
        """Tokens of every LM call made while producing this prediction."""
        return self._account[0]

    @property
    def cost(self) -> float | None:
        """US dollars of those calls, when every LM reported a cost."""
        return self._account[1]

    @property
    def cached(self) -> bool:
        """True when a cache answered every LM call behind this prediction (none was paid)."""
        return self._account[2]

    def set_usage(self, usage: Usage, cost: float | None = None, *, cached: bool = False) -> None:
        """Record the usage (and cost) of the calls that produced this prediction."""
        _set(self, "_account", (usage, cost, cached))

    def get_lm_usage(self) -> dict[str, int]:
        """DSPy's name: the usage as a dict."""
        return self._account[0].to_dict()
