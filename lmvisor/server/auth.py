"""Bearer-token authentication: the daemon's token set, and the rule for non-loopback binds.

Tokens are kept only as SHA-256 digests from start-up on. A presented token
is hashed and compared with every digest by `hmac.compare_digest`, without
stopping at the first match, so the time taken says nothing about which
token (or how much of one) matched. A daemon bound beyond loopback without a
token refuses to start (`check_bind`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from typing import final

from lmvisor.config.schema import ServerConfig
from lmvisor.server.errors import InsecureBind, Unauthorized

__all__ = ["TokenSet", "check_bind", "hash_token", "is_loopback"]


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of `token` (what `server.token_sha256` lists)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or the name `localhost`.

    Any other name counts as not loopback: it may resolve anywhere.
    """
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(config: ServerConfig) -> None:
    """Refuse a bind beyond loopback when no token is configured.

    Raises:
        InsecureBind: `config.host` is not loopback and authentication is off.
    """
    if not is_loopback(config.host) and not config.auth_enabled:
        raise InsecureBind(host=config.host)


@final
class TokenSet:
    """The accepted tokens, as digests; empty means authentication is off."""

    __slots__ = ("_digests",)

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = tuple(bytes.fromhex(digest) for digest in digests)

    @classmethod
    def from_config(cls, config: ServerConfig) -> TokenSet:
        """Every token `config` names: `token`, `tokens` and `token_sha256`."""
        secrets = [*([config.token] if config.token is not None else []), *config.tokens]
        digests = [hash_token(secret.get_secret_value()) for secret in secrets]
        return cls([*digests, *config.token_sha256])

    @property
    def enabled(self) -> bool:
        """Whether any token is configured."""
        return bool(self._digests)

    def verify(self, token: str) -> bool:
        """Whether `token` is one of the set, in time independent of which one."""
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(presented, digest)
        return found

    def check_header(self, authorization: str | None) -> None:
        """Accept an `Authorization: Bearer <token>` value naming a known token.

        Messages avoid "bearer" before a word: the log redactor would hide it.

        Raises:
            Unauthorized: the header is missing, not a bearer token, or unknown.
        """
        if authorization is None:
            raise Unauthorized(problem="missing Authorization header: a token is required")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(problem="the Authorization header's scheme must be Bearer")
        if not self.verify(token.strip()):
            raise Unauthorized(problem="unknown token")

    def __repr__(self) -> str:
        return f"TokenSet({len(self._digests)} token(s))"
