"""`PATCH /v1/config`: change the daemon's settings while it runs, through its config service.

The body is one change `{"path": "providers.openai.api_key", "value": "..."}` or a
list of them, applied in order and all or none: the changes are merged into the
setting at their deepest common path and sent to the config service as one
update, so either every change is in force or none is (the first refusal is the
answer). Changes in one request must therefore share a top-level section
(`providers`, `cache`, ...); a request spanning several is refused, 422, before
anything changes. PATCH rather than `PUT /v1/config/{path}`: a request is a
partial change of the one configuration resource, possibly several settings at
once, and a dotted path stays in the body rather than being escaped into the URL.

A value is written as a JSON merge patch (RFC 7386): a table is merged into the
table there, the settings it leaves out keep their values, and a `null` inside it
removes that entry (`{"path": "providers", "value": {"extra": null}}` removes a
vendor). The mask `GET /v1/config` shows for a secret (`**********`) keeps the
secret in force, so a setting read, edited and sent back never writes the mask as
a key; any other text holding the mask (an edited masked URL) is refused.

The answer is the paths changed and the whole configuration now in force, every
secret masked as `GET /v1/config` shows it. A refused value (a setting nothing
running applies, such as `data_dir`; an unknown path; a value of the wrong type)
is the config service's `ConfigError`: 422 naming the field, nothing changed.

Authentication: the daemon's token is required whenever one is configured,
even when `/v1/config` is one of `server.open_paths` (opening the read must not
open the write; the auth middleware checks it before the body is read). Without
any token the route is as open as every other route; the daemon then listens on
loopback only (`auth.check_bind`).

Values never leave the request: the access log names the method and path, the
`config.changed` event and log line the setting's path, error messages the
field and the problem only.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, final

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from lmvisor.config.errors import ConfigError, ConfigProblem
from lmvisor.config.schema import SECRET_MASK
from lmvisor.runtime.config_service import CONFIG_SERVICE_NAME, update_config
from lmvisor.server.context import ServerContext, server_context

__all__ = [
    "CONFIG_PATH_PATTERN",
    "MAX_CHANGES",
    "ConfigChange",
    "ConfigUpdated",
    "masked_setting",
    "merge_changes",
    "patch_config",
    "router",
]

CONFIG_PATH_PATTERN: Final = r"^[^.]+(\.[^.]+)*$"
"""A setting's dotted path: non-empty names separated by single dots."""
MAX_CHANGES: Final = 64
"""The most changes one request may carry."""
_MAX_PATH: Final = 512
_PATH_FIELD: Final = "path"

router = APIRouter()
_Context = Annotated[ServerContext, Depends(server_context)]


@final
class ConfigChange(BaseModel):
    """One setting to change: its dotted `path` and the new `value` (any JSON, null included)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        pattern=CONFIG_PATH_PATTERN,
        max_length=_MAX_PATH,
        description="Dotted path of the setting (`providers.openai.api_key`).",
    )
    value: Any = Field(description="The new value, as the configuration file would give it.")


@final
class ConfigUpdated(BaseModel):
    """What an accepted update changed, and the configuration now in force (secrets masked)."""

    changed: list[str]
    config: dict[str, Any]


_Changes = Annotated[
    ConfigChange | Annotated[list[ConfigChange], Field(min_length=1, max_length=MAX_CHANGES)],
    Body(description="One change, or a list applied in order as one update (all or none)."),
]


@router.patch(
    "/v1/config",
    response_model=ConfigUpdated,
    tags=["observe"],
    summary="Change settings while the daemon runs",
)
async def patch_config(request: Request, context: _Context, body: _Changes) -> ConfigUpdated:
    """Apply the changes as one update of the config service (see the module docstring).

    Raises:
        Unauthorized: a token is configured and the request has none known (401).
        ConfigError: a change is refused; nothing changed (422, naming the field).
    """
    changes = [body] if isinstance(body, ConfigChange) else body
    async with _update_lock(request):
        path, value = merge_changes(
            context.runtime.config.model_dump(), [(c.path, c.value) for c in changes]
        )
        updated = await update_config(context.runtime.via(CONFIG_SERVICE_NAME), path, value)
    config: dict[str, Any] = updated.model_dump(mode="json")  # this update's tree, no later one
    return ConfigUpdated(changed=list(dict.fromkeys(c.path for c in changes)), config=config)


def _update_lock(request: Request) -> asyncio.Lock:
    """One lock per app: a merged update reads the tree, then writes it back, and two
    requests doing so at once must not lose one's change (writers in the daemon's own
    code are not serialized by it)."""
    state = request.app.state
    lock = getattr(state, "config_update_lock", None)
    if not isinstance(lock, asyncio.Lock):
        lock = state.config_update_lock = asyncio.Lock()
    return lock


def merge_changes(tree: Mapping[str, Any], changes: Sequence[tuple[str, Any]]) -> tuple[str, Any]:
    """The one `(path, value)` update that makes every change of `changes`, in order.

    `tree` is the configuration dumped in Python mode (secrets still `SecretStr`, so
    the settings beside a change keep their real values). The path is the changes'
    deepest common one; the value is the setting there with each change written in.

    Raises:
        ConfigError: no changes, changes under different top-level sections, or a
            change that goes through a setting that is not a table.
    """
    if not changes:
        raise _refused("", "no changes given")
    split = [path.split(".") for path, _ in changes]
    common = split[0]
    for keys in split[1:]:
        common = common[: _shared(common, keys)]
    if not common:
        raise _refused(
            changes[1][0] if len(changes) > 1 else changes[0][0],
            "changes in one request must share a top-level section (they are applied as"
            " one update); send one request per section",
        )
    value: Any = _subtree(tree, common)
    for keys, (path, new) in zip(split, changes, strict=True):
        value = _written(value, keys[len(common) :], new, path)
    return ".".join(common), value


def _shared(a: Sequence[str], b: Sequence[str]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def _subtree(tree: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """A deep copy of the setting at `keys` (an empty table where none is set yet)."""
    node: Any = tree
    for key in keys:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return copy.deepcopy(node)


def _written(node: Any, keys: Sequence[str], value: Any, path: str) -> Any:
    """`node` with `value` patched in at `keys` (see `_patched`)."""
    if not keys:
        return _patched(node, value, path)
    if not isinstance(node, dict):
        raise _refused(path, "goes through a setting that is not a table")
    node[keys[0]] = _written(node.get(keys[0], {}), keys[1:], value, path)
    return node


def _patched(current: Any, new: Any, path: str) -> Any:
    """`new` written over `current` as a JSON merge patch (RFC 7386): a table is merged
    into the table there (a `null` in it removes that entry; the settings it leaves out
    keep their values), anything else replaces it. The mask `GET /v1/config` shows for
    a secret keeps the secret in force (a setting read, edited and sent back must not
    write the mask as the key); any other text holding the mask is refused.

    Raises:
        ConfigError: a text holds the mask beside other characters (a masked URL).
    """
    if isinstance(new, str) and SECRET_MASK in new:
        if new == SECRET_MASK:
            return current
        raise _refused(path, "holds a masked secret: send the whole value, or leave it out")
    if not isinstance(new, Mapping):
        return new
    merged = dict(current) if isinstance(current, Mapping) else {}
    for key, item in new.items():
        if item is None:
            merged.pop(key, None)
        else:
            merged[key] = _patched(merged.get(key), item, f"{path}.{key}")
    return merged


def _refused(path: str, problem: str) -> ConfigError:
    return ConfigError(problems=[ConfigProblem(path or _PATH_FIELD, problem)], action="update")


def masked_setting(config: Mapping[str, Any], path: str) -> Any:
    """The setting at dotted `path` of a masked dump (`model_dump(mode="json")`).

    Raises:
        ConfigError: no setting lives at `path`.
    """
    node: Any = config
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise ConfigError(problems=[ConfigProblem(path, "no such setting")], action="get")
        node = node[key]
    return node
