"""Tests for lmvisor.server.auth: token digests, constant-time checks, the loopback rule."""

from __future__ import annotations

import hashlib

import pytest

from lmvisor.config.schema import ServerConfig
from lmvisor.server.auth import TokenSet, check_bind, hash_token, is_loopback
from lmvisor.server.errors import InsecureBind, Unauthorized


class TestIsLoopback:
    @pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
    def test_loopback_hosts(self, host: str) -> None:
        """Addresses in 127.0.0.0/8, ::1 and the name localhost are loopback."""
        assert is_loopback(host)

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "example.com", "192.168.1.2"])
    def test_other_hosts(self, host: str) -> None:
        """Wildcards, private and public addresses and other names are not."""
        assert not is_loopback(host)


class TestCheckBind:
    def test_loopback_without_token_is_allowed(self) -> None:
        """The default (127.0.0.1, no token) starts."""
        check_bind(ServerConfig())

    def test_non_loopback_without_token_is_refused(self) -> None:
        """Binding beyond loopback without a token raises InsecureBind naming the host."""
        with pytest.raises(InsecureBind, match=r"^refusing to listen on '0\.0\.0\.0' without"):
            check_bind(ServerConfig(host="0.0.0.0"))

    @pytest.mark.parametrize(
        "auth",
        [{"token": "t0ken-one"}, {"tokens": ["a-token"]}, {"token_sha256": [hash_token("x")]}],
    )
    def test_non_loopback_with_any_token_is_allowed(self, auth: dict[str, object]) -> None:
        """Any configured token (plain or as a digest) allows a public bind."""
        check_bind(ServerConfig.model_validate({"host": "0.0.0.0", **auth}))


class TestTokenSet:
    def test_digest_is_sha256_hex(self) -> None:
        """hash_token gives the SHA-256 hex digest that token_sha256 lists."""
        assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()

    def test_every_source_is_accepted(self) -> None:
        """token, tokens and token_sha256 all name accepted tokens."""
        config = ServerConfig.model_validate(
            {"token": "one", "tokens": ["two", "three"], "token_sha256": [hash_token("four")]}
        )
        tokens = TokenSet.from_config(config)
        assert tokens.enabled
        assert all(tokens.verify(t) for t in ("one", "two", "three", "four"))
        assert not tokens.verify("five")
        assert not tokens.verify("")

    def test_empty_set_is_disabled(self) -> None:
        """No token configured means authentication is off."""
        assert not TokenSet.from_config(ServerConfig()).enabled

    def test_repr_shows_no_secret(self) -> None:
        """The repr counts tokens and shows neither them nor their digests."""
        tokens = TokenSet.from_config(ServerConfig(token="hunter2-secret"))  # type: ignore[arg-type]
        assert repr(tokens) == "TokenSet(1 token(s))"

    @pytest.mark.parametrize(
        ("header", "message"),
        [
            (None, r"^missing Authorization header: a token is required$"),
            ("Basic dXNlcjpwYXNz", r"^the Authorization header's scheme must be Bearer$"),
            ("Bearer ", r"^the Authorization header's scheme must be Bearer$"),
            ("Bearer wrong", r"^unknown token$"),
        ],
    )
    def test_bad_headers_are_refused(self, header: str | None, message: str) -> None:
        """A missing, non-bearer, empty or unknown token raises Unauthorized saying which."""
        tokens = TokenSet([hash_token("right")])
        with pytest.raises(Unauthorized, match=message):
            tokens.check_header(header)

    def test_messages_survive_redaction(self) -> None:
        """Every refusal message reaches the client intact (nothing in it looks like a secret)."""
        from lmvisor.runtime.observe import Redactor

        for header in (None, "Basic x", "Bearer wrong"):
            with pytest.raises(Unauthorized) as caught:
                TokenSet([hash_token("right")]).check_header(header)
            assert Redactor().redact(caught.value.message) == caught.value.message

    def test_bearer_scheme_is_case_insensitive(self) -> None:
        """`bearer right` is accepted like `Bearer right`."""
        TokenSet([hash_token("right")]).check_header("bearer right")
