"""The query options a Redis URL may carry: each one redis-py hands to a connection, checked.

redis-py reads `?socket_timeout=abc` only when the cache opens L2, and passes an
option it does not know (`?foo=1`) to the connection class, which fails every
operation with a TypeError. Checked here, a bad option is a `ConfigError` naming
`cache.l2_redis_url` when the setting is loaded or updated, not a cache that
cannot start (and, after a live update, an application that stops). Messages
name the option, never its value: the URL may hold a password.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qs, urlsplit

__all__ = ["check_redis_options"]

_TRUE_OR_FALSE: Final = frozenset({"0", "f", "false", "n", "no", "1", "t", "true", "y", "yes"})


def _integer(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _seconds(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number > 0


def _boolean(value: str) -> bool:
    return value.lower() in _TRUE_OR_FALSE


def _text(value: str) -> bool:
    return True


_Check = Callable[[str], bool]

_COMMON: Final[dict[str, tuple[_Check, str]]] = {
    "db": (_integer, "an integer"),
    "socket_timeout": (_seconds, "a positive finite number of seconds"),
    "socket_connect_timeout": (_seconds, "a positive finite number of seconds"),
    "socket_read_size": (_integer, "an integer"),
    "retry_on_timeout": (_boolean, "a boolean"),
    "max_connections": (_integer, "an integer"),
    "health_check_interval": (_integer, "an integer"),
    "protocol": (_integer, "an integer"),
    "client_name": (_text, ""),
    "username": (_text, ""),
    "password": (_text, ""),
    "lib_name": (_text, ""),
    "lib_version": (_text, ""),
}
_TCP: Final[dict[str, tuple[_Check, str]]] = {"socket_keepalive": (_boolean, "a boolean")}
_TLS: Final[dict[str, tuple[_Check, str]]] = {
    "ssl_check_hostname": (_boolean, "a boolean"),
    "ssl_min_version": (_integer, "an integer"),
    **{
        name: (_text, "")
        for name in (
            "ssl_keyfile",
            "ssl_certfile",
            "ssl_cert_reqs",
            "ssl_ca_certs",
            "ssl_ca_path",
            "ssl_ciphers",
            "ssl_password",
        )
    },
}


def check_redis_options(url: str) -> None:
    """Refuse a query option of `url` that a redis-py connection would not take or read.

    Raises:
        ValueError: an option is unknown for the URL's scheme, or its value is not of
            the option's kind; the message names the option, not the value.
    """
    parts = urlsplit(url)
    known = dict(_COMMON)
    if parts.scheme in ("redis", "rediss"):
        known |= _TCP
    if parts.scheme == "rediss":
        known |= _TLS
    for name, values in parse_qs(parts.query).items():
        found = known.get(name)
        if found is None:
            raise ValueError(
                f"has the option {name!r}, which a {parts.scheme}:// URL does not take"
            )
        check, kind = found
        if not check(values[0]):
            raise ValueError(f"has the option {name!r}, which must be {kind}")
