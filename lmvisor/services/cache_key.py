"""The cache key of an LM request, and the request the vendor sees.

The key is the sha256 (hex) of the request's canonical JSON: orjson with keys
sorted at every level, no whitespace, UTF-8. What enters it:

- `model`, as the program named it ("openai/gpt-4o-mini");
- `messages`, exactly as they would be sent;
- every param (temperature, n, max_tokens, stop, tools, tool_choice,
  response_format, seed...) except:
  * transport-only params, which change how an answer travels, not what it
    says (`TRANSPORT_PARAMS`: stream, stream_options, timeout, headers...);
  * secrets (`SECRET_PARAMS`: api_key, authorization...), so no key ever
    reaches a cache key's preimage or a shared cache;
  * `cache`, the caller's per-call opt-out (`cache=False` neither reads nor
    writes the cache).
- `rollout_id` enters the key, so a request repeated with another rollout id
  gets its own answer (as in DSPy), but it is never sent to the vendor.

As in DSPy, `n > 1` and `temperature > 0` requests are cached like any other:
the same request answers the same way until it expires. A request whose
params are not JSON data (say, a Python object) has no key and is not cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

from lmvisor.programs.lm import LMRequest

__all__ = [
    "CONTROL_PARAMS",
    "SECRET_PARAMS",
    "TRANSPORT_PARAMS",
    "cache_wanted",
    "request_key",
    "vendor_request",
]

CONTROL_PARAMS: Final = frozenset({"cache", "rollout_id"})
"""Params the cache reads and the vendor never sees."""
TRANSPORT_PARAMS: Final = frozenset(
    {
        "stream",
        "stream_options",
        "timeout",
        "request_timeout",
        "max_retries",
        "num_retries",
        "headers",
        "extra_headers",
        "api_base",
        "base_url",
    }
)
"""Params that shape the transport, not the answer: left out of the key."""
SECRET_PARAMS: Final = frozenset(
    {"api_key", "authorization", "access_token", "client_secret", "password", "secret"}
)
"""Credentials: never part of a key."""

_NOT_IN_KEY: Final = TRANSPORT_PARAMS | SECRET_PARAMS | {"cache"}
_SORTED: Final = orjson.OPT_SORT_KEYS
# An empty sha256, only ever copied, never updated: copying it skips OpenSSL's digest
# lookup and context set-up, about a quarter of a key's cost (same digest).
_EMPTY_SHA256: Final = hashlib.sha256()


def request_key(request: LMRequest) -> str | None:
    """The cache key of `request` (see the module docstring), or None when it has none."""
    params: Mapping[str, Any] = request.params
    if params and not _NOT_IN_KEY.isdisjoint(params):
        params = {k: v for k, v in params.items() if k not in _NOT_IN_KEY}
    elif not isinstance(params, dict):
        params = dict(params)
    try:
        text = orjson.dumps(
            {"model": request.model, "messages": request.messages, "params": params},
            option=_SORTED,
        )
    except TypeError:
        return None
    digest = _EMPTY_SHA256.copy()
    digest.update(text)
    return digest.hexdigest()


def cache_wanted(request: LMRequest) -> bool:
    """False when the caller opted out of the cache for this call (`cache=False`)."""
    return request.params.get("cache", True) is not False


def vendor_request(request: LMRequest) -> LMRequest:
    """`request` without the cache's control params (the same object when it has none)."""
    params = request.params
    if "cache" not in params and "rollout_id" not in params:  # CONTROL_PARAMS, spelled out
        return request
    kept = {k: v for k, v in params.items() if k not in CONTROL_PARAMS}
    return dataclasses.replace(request, params=kept)
