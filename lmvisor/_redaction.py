"""Secret redaction shared by every signal that leaves the process: logs, events, error bodies.

A leaf module (it imports nothing from lmvisor and no third-party package) so
the root error (`lmvisor._error`) and the runtime's log chain use one
`Redactor`. It replaces values under secret-looking keys (api_key,
authorization, token, password, secret, ...), any object holding a secret
(`get_secret_value()`, as pydantic's `SecretStr`), and credential-looking text
inside any value (`sk-...`, `Bearer ...`, `api_key=...`, the password of a
`scheme://user:password@host` URL), at any depth; it also cuts long strings.
`url_without_password` shows one URL with its password hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Final, final
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "DEFAULT_SECRET_KEYS",
    "DEFAULT_SECRET_PATTERNS",
    "REDACTED",
    "Redactor",
    "clipped",
    "safe_repr",
    "url_without_password",
]

REDACTED: Final = "[REDACTED]"
DEFAULT_SECRET_KEYS: Final = (
    "api_key",
    "apikey",
    "authorization",
    "token",
    "password",
    "passwd",
    "secret",
    "cookie",
    "credential",
    "private_key",
    "access_key",
)
"""Key fragments marking a secret value. `token` matches whole words only, so
`access_token` is secret but `max_tokens` is not."""

# A secret-named key and its separator, in any text: `api_key=v`, `"password": "v"`,
# `x-api-key: v`, `Authorization: Token v`, a repr's `api_key='v'`. Token counts
# (`max_tokens: 5`) are not keys: `token` must end the name. The match starts at
# the secret word (text before it is left alone) and the name's tail is bounded,
# so scanning stays linear in the text.
_SECRET_NAME: Final = (
    r"(?:api[_-]?key|authorization|password|passwd|secret|credential|private[_-]?key"
    r"|access[_-]?key|cookie)[\w-]{0,40}|token"
)
_KEY_VALUE: Final = (
    rf"(?i:(?P<keep>(?:{_SECRET_NAME})[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:bearer|basic|token) +)?)"
    r"[^\s&\"',;})\]]+)"
)

# The password of a URL's userinfo (`://user:password@`); the match starts at "://" and
# its parts are bounded, so scanning stays linear in the text.
_URL_PASSWORD: Final = r"(?P<keep_url>://[^/\s:@]{0,256}:)[^/\s@]{1,256}(?=@)"

DEFAULT_SECRET_PATTERNS: Final = (
    r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{7,}",
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/\-]+=*",
    r"(?i:\bbasic\s+)[A-Za-z0-9+/]{8,}=*",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bxox[abpr]-[A-Za-z0-9\-]{10,}",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    _KEY_VALUE,
    _URL_PASSWORD,
)
"""Regexes for credential-looking text inside any string value. Text a match
captures in a group whose name starts with `keep` stays (the `api_key=` before a value)."""

# Every default pattern needs one of these (lowercased) in the text: a string with
# none of them is clean without running the pattern, the common case by far.
_DEFAULT_MARKERS: Final = (
    "key", "auth", "pass", "secret", "credential", "cookie", "token", "sk-", "bearer",
    "basic", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "aiza", "://",
)  # fmt: skip

_UNTRUNCATED: Final = frozenset({"exception", "stack"})
_MAX_DEPTH: Final = 8
_KEY_CACHE_SIZE: Final = 4096
_WORD = re.compile(r"[^a-z0-9]+")


@final
class Redactor:
    """Replace secrets with `[REDACTED]` and cut long values, at any depth.

    Also a structlog processor: called with an event dict, it redacts every
    value in place (the `exception` and `stack` texts are redacted, never cut).

    Args:
        keys: key fragments that mark a value secret (see `DEFAULT_SECRET_KEYS`).
        patterns: regexes of credential-looking text (see `DEFAULT_SECRET_PATTERNS`).
        max_length: longer strings are cut, with a note of how much went.

    Raises:
        ValueError: if `max_length` < 16.
    """

    __slots__ = ("_key_cache", "_keys", "_markers", "_pattern", "max_length")

    def __init__(
        self,
        *,
        keys: Sequence[str] = DEFAULT_SECRET_KEYS,
        patterns: Sequence[str] = DEFAULT_SECRET_PATTERNS,
        max_length: int = 2000,
    ) -> None:
        if max_length < 16:
            raise ValueError(f"max_length must be >= 16, got {max_length!r}")
        self._keys = tuple(key.lower() for key in keys)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns))
        self._markers = _DEFAULT_MARKERS if tuple(patterns) == DEFAULT_SECRET_PATTERNS else None
        self._key_cache: dict[str, bool] = {}
        self.max_length = max_length

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            if self.is_secret_key(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self.redact(value, cut=key not in _UNTRUNCATED)
        return event_dict

    def is_secret_key(self, key: object) -> bool:
        """Whether a value stored under `key` must be hidden."""
        if not isinstance(key, str):
            return False
        known = self._key_cache.get(key)
        if known is None:
            known = self._judge_key(key)
            if len(self._key_cache) < _KEY_CACHE_SIZE:
                # field names repeat line after line; judging each once keeps logging cheap
                self._key_cache[key] = known
        return known

    def _judge_key(self, key: str) -> bool:
        lowered = _WORD.sub("_", key.lower())
        words = lowered.split("_")
        for fragment in self._keys:
            if fragment == "token":
                if "token" in words or lowered.endswith("token"):
                    return True
            elif fragment in lowered:
                return True
        return False

    def redact(self, value: Any, *, cut: bool = True, depth: int = 0) -> Any:
        """`value` with secrets replaced and long strings cut; containers are copied.

        Other objects are returned as they are unless their `repr` holds a
        secret, in which case the redacted repr is returned instead.
        """
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self._text(value, cut)
        if callable(getattr(value, "get_secret_value", None)):
            return REDACTED
        if depth >= _MAX_DEPTH:
            return "[...]"
        if isinstance(value, Mapping):
            return {
                k: REDACTED if self.is_secret_key(k) else self.redact(v, cut=cut, depth=depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            if len(value) == 2 and isinstance(value, list | tuple) and self.is_secret_key(value[0]):
                # A (name, value) pair, as in a raw header list.
                return [value[0], REDACTED]
            return [self.redact(item, cut=cut, depth=depth + 1) for item in value]
        if isinstance(value, bytes):
            return self._text(value.decode("utf-8", "replace"), cut)
        try:
            text = repr(value)
        except Exception:
            # a repr that raises would break the renderer after us: hand it a safe one
            return safe_repr(value)
        cleaned = self._text(text, cut)
        return value if cleaned == text else cleaned

    def _text(self, text: str, cut: bool) -> str:
        if self._may_hold_secret(text) and self._pattern.search(text):
            text = self._pattern.sub(_replace, text)
        return clipped(text, self.max_length) if cut else text

    def _may_hold_secret(self, text: str) -> bool:
        markers = self._markers
        if markers is None:
            return True
        lowered = text.lower()
        return any(marker in lowered for marker in markers)

    def __repr__(self) -> str:
        return f"Redactor(keys={len(self._keys)}, max_length={self.max_length})"


def clipped(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and a note of how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more chars]"


def safe_repr(value: object) -> str:
    """`repr(value)`, or a note naming its type when that repr raises."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} object (repr failed: {type(exc).__name__})>"


def _replace(match: re.Match[str]) -> str:
    # Group names are unique in one pattern: each kept prefix has its own `keep...` name.
    kept = [text for name, text in match.groupdict().items() if name.startswith("keep") and text]
    return "".join(kept) + REDACTED


def url_without_password(url: str, mask: str = REDACTED) -> str:
    """`url` with its password (`scheme://user:password@host`, or a `password=` query
    parameter) shown as `mask`; a URL without one is returned as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can split: hide whatever follows a user name
        return re.sub(_URL_PASSWORD, lambda m: m.group("keep_url") + mask, url)
    shown = url
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        shown = shown.replace(parts.netloc, f"{userinfo.partition(':')[0]}:{mask}@{host}", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(key.lower() == "password" for key, _ in pairs):
        hidden = [(k, mask if k.lower() == "password" else v) for k, v in pairs]
        shown = shown.replace(f"?{parts.query}", f"?{urlencode(hidden, safe='*[]')}", 1)
    return shown
