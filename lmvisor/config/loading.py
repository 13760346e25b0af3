"""Loading settings from their sources, and reading or replacing one setting by path.

Sources, lowest precedence first:

1. the schema's defaults;
2. a TOML file: the `path` given, else `./lmvisor.toml` when it exists;
3. vendor key variables: OPENAI_API_KEY and ANTHROPIC_API_KEY fill
   `providers.openai.api_key` and `providers.anthropic.api_key`;
4. `LMVISOR_`-prefixed variables, `__` separating levels
   (`LMVISOR_PROVIDERS__OPENAI__RPM=500` sets `providers.openai.rpm`); a boolean
   setting takes pydantic's spellings ("true"/"false", "1"/"0", "yes"/"no",
   "on"/"off"...), read here: everywhere else booleans are strict (see `schema`);
5. explicit keyword arguments (`server={"port": 0}` or `server__port=0`).

Mappings merge key by key, so setting one field of a provider keeps the
others (and an empty table changes nothing). Every problem in every source
is collected into one `ConfigError` naming each field by dotted path and the
source it came from.
"""

from __future__ import annotations

import json
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter, ValidationError

from lmvisor._files import read_regular_file
from lmvisor.config.errors import ConfigError, ConfigProblem
from lmvisor.config.schema import LmvisorConfig

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "config_from_tree",
    "get_value",
    "load_config",
    "replace_value",
]

DEFAULT_CONFIG_FILE = "lmvisor.toml"
ENV_PREFIX = "LMVISOR_"
_VENDOR_KEYS = {"OPENAI_API_KEY": "openai", "ANTHROPIC_API_KEY": "anthropic"}
_MAX_FILE_BYTES = 1024 * 1024
"""A config file is a few kilobytes: past this it is refused unparsed (not read whole)."""
_MAX_DEPTH = 32
"""Levels a source may nest: the schema needs four; merging deeper ones recursed to a crash."""

_Path = tuple[str, ...]
_ENV_BOOL: Final = TypeAdapter(bool)
"""pydantic's lax booleans: the spellings an environment variable may use."""
_NOT_A_BOOL = "must be a boolean: true/false, 1/0, yes/no, on/off (any case)"


class _Layers:
    """The merged raw tree plus, for each path set by a source, that source's name."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.tree = base
        self.origins: dict[_Path, str] = {}
        self.problems: list[ConfigProblem] = []

    def set(self, path: _Path, value: Any, source: str) -> None:
        node = self.tree
        for depth, key in enumerate(path[:-1]):
            child = node.get(key)
            if not isinstance(child, dict):
                if child is not None and not isinstance(child, Mapping):
                    self.problems.append(
                        ConfigProblem(".".join(path[: depth + 1]), "is not a table", source)
                    )
                    return
                child = dict(child or {})
                node[key] = child
            node = child
        node[path[-1]] = value
        self.origins[path] = source

    def merge(self, path: _Path, value: Any, source: str) -> None:
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if isinstance(value, Mapping):
            if len(path) >= _MAX_DEPTH:
                reason = f"nested deeper than {_MAX_DEPTH} levels"
                self.problems.append(ConfigProblem(".".join(path[:3]) + "...", reason, source))
                return
            # An empty table changes nothing: it must not wipe defaults such as providers.
            for key, item in value.items():
                self.merge((*path, str(key)), item, source)
        else:
            self.set(path, value, source)

    def source_of(self, path: _Path) -> str | None:
        for end in range(len(path), 0, -1):
            found = self.origins.get(path[:end])
            if found is not None:
                return found
        return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> LmvisorConfig:
    """Build the configuration from defaults, TOML, environment and arguments.

    Args:
        path: a TOML file to read; it must exist. When None, `./lmvisor.toml`
            is read if present.
        env: the variables to read instead of `os.environ` (tests pass a dict).
        **overrides: top-level settings (`cache={"l1_size": 10}`), or nested
            ones with `__` (`cache__l1_size=10`); pydantic models are accepted.

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: listing every unreadable file, bad variable and invalid
            field, each with its dotted path and source. Values are never
            echoed, since they may be secrets.
    """
    layers = _Layers(LmvisorConfig().model_dump())
    _read_toml(layers, path)
    environ = os.environ if env is None else env
    _read_vendor_keys(layers, environ)
    _read_env(layers, environ)
    for key, value in overrides.items():
        layers.merge(tuple(key.split("__")), value, f"argument {key}")
    return _validate(layers, action="load")


def get_value(config: LmvisorConfig, path: str) -> Any:
    """The setting at a dotted `path` (`"providers.openai.rpm"`), or a subtree.

    Raises:
        ConfigError: if no setting lives at `path`.
    """
    node: Any = config
    for key in _split(path, "get"):
        if isinstance(node, BaseModel) and key in type(node).model_fields:
            node = getattr(node, key)
        elif isinstance(node, Mapping) and key in node:
            node = node[key]
        else:
            raise ConfigError(problems=[ConfigProblem(path, "no such setting")], action="get")
    return node


def replace_value(config: LmvisorConfig, path: str, value: Any) -> LmvisorConfig:
    """A new configuration equal to `config` but with `value` at the dotted `path`.

    The whole tree is validated again, so a value that breaks a cross-field
    rule is refused too. `config` itself is never changed. A path through a
    mapping may name a new entry (`"providers.ollama.base_url"`).

    Raises:
        ConfigError: if the path names no setting or the value is invalid.
    """
    layers = _Layers(config.model_dump())
    layers.set(_split(path, "update"), value, "update")
    return _validate(layers, action="update")


def _split(path: str, action: str) -> _Path:
    keys = tuple(path.split("."))
    if not path or any(not key for key in keys):
        raise ConfigError(
            problems=[ConfigProblem(path, "a path is dot-separated non-empty names")],
            action=action,
        )
    return keys


def config_from_tree(
    tree: Mapping[str, Any], *, source: str, action: str = "load"
) -> LmvisorConfig:
    """Validate a whole settings tree (nested mappings) that came from `source`.

    Raises:
        ConfigError: listing every invalid field with its dotted path and `source`;
            values are never echoed, since they may be secrets.
    """
    try:
        return LmvisorConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(problems=_problems(exc, lambda loc: source), action=action) from None


def _validate(layers: _Layers, *, action: str) -> LmvisorConfig:
    problems = list(layers.problems)
    if not problems:
        try:
            return LmvisorConfig.model_validate(layers.tree)
        except ValidationError as exc:
            problems += _problems(exc, layers.source_of)
    raise ConfigError(problems=problems, action=action)


def _problems(
    exc: ValidationError, source_of: Callable[[_Path], str | None]
) -> list[ConfigProblem]:
    """pydantic's errors as problems: each field's dotted path and message, not its value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        problems.append(ConfigProblem(".".join(loc), error["msg"], source_of(loc)))
    return problems


def _read_toml(layers: _Layers, path: str | os.PathLike[str] | None) -> None:
    file = Path(DEFAULT_CONFIG_FILE) if path is None else Path(path)
    if path is None and not file.is_file():
        return
    source = f"file {file}"
    try:
        raw = read_regular_file(file, _MAX_FILE_BYTES)  # never /dev/zero or a FIFO
    except FileNotFoundError:
        layers.problems.append(ConfigProblem("<file>", "file not found", source))
        return
    except OSError as exc:
        reason = f"cannot read: {type(exc).__name__}"
        layers.problems.append(ConfigProblem("<file>", reason, source))
        return
    except ValueError as exc:  # not a regular file, or too large
        layers.problems.append(ConfigProblem("<file>", str(exc), source))
        return
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))  # a leading BOM (Notepad's) is dropped
    except UnicodeDecodeError as exc:
        reason = f"cannot read: {type(exc).__name__}"
        layers.problems.append(ConfigProblem("<file>", reason, source))
        return
    except tomllib.TOMLDecodeError as exc:
        layers.problems.append(ConfigProblem("<file>", f"invalid TOML: {exc}", source))
        return
    except RecursionError:
        layers.problems.append(ConfigProblem("<file>", "invalid TOML: nested too deeply", source))
        return
    except ValueError:  # an integer too long to convert, past Python's digit limit
        reason = "invalid TOML: a number is too long"
        layers.problems.append(ConfigProblem("<file>", reason, source))
        return
    layers.merge((), data, source)


def _read_vendor_keys(layers: _Layers, environ: Mapping[str, str]) -> None:
    for variable, vendor in _VENDOR_KEYS.items():
        value = environ.get(variable)
        if value:
            layers.set(("providers", vendor, "api_key"), value, f"env {variable}")


def _read_env(layers: _Layers, environ: Mapping[str, str]) -> None:
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        source = f"env {variable}"
        keys = tuple(variable[len(ENV_PREFIX) :].lower().split("__"))
        if any(not key for key in keys):
            reason = f"a variable is {ENV_PREFIX}NAME or {ENV_PREFIX}NAME__SUBNAME..."
            layers.problems.append(ConfigProblem(variable, reason, source))
            continue
        try:
            value = _env_value(environ[variable])
        except ValueError as exc:
            layers.problems.append(ConfigProblem(variable, str(exc), source))
            continue
        if isinstance(value, str) and _is_bool_setting(keys):
            try:
                value = _ENV_BOOL.validate_python(value)
            except ValidationError:
                layers.problems.append(ConfigProblem(".".join(keys), _NOT_A_BOOL, source))
                continue
        layers.set(keys, value, source)


def _is_bool_setting(keys: _Path) -> bool:
    """Whether `keys` names a boolean setting (a mapping's entry, such as a provider's, too)."""
    node: Any = LmvisorConfig
    for key in keys:
        node = _unwrap_optional(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(key)
            if field is None:
                return False
            node = field.annotation
        elif typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]
        else:
            return False
    return _unwrap_optional(node) is bool


def _unwrap_optional(annotation: Any) -> Any:
    """`X` for `X | None`; any other annotation as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        present = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(present) == 1:
            return present[0]
    return annotation


def _env_value(raw: str) -> Any:
    """A JSON object or array is parsed (for whole tables); anything else stays a string.

    Raises:
        ValueError: it is JSON no one can read (nested too deeply, a number too long);
            the message does not show the value, which may be a secret.
    """
    if raw[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        except ValueError:
            raise ValueError("JSON with a number too long to convert") from None
    return raw
