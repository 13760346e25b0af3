"""Tests for lmvisor._redaction.Redactor: secret keys, secret text, truncation, depth."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from lmvisor._redaction import DEFAULT_SECRET_PATTERNS, REDACTED, Redactor, url_without_password

PLAIN_SECRET = "correct-horse-battery-staple"


@dataclass
class _Creds:
    """An object whose repr names its secret field."""

    api_key: str


class TestRedactor:
    @pytest.mark.parametrize(
        "value",
        [
            f"failed with {{'api_key': '{PLAIN_SECRET}'}}",
            f'body {{"password":"{PLAIN_SECRET}"}}',
            f"x-api-key: {PLAIN_SECRET}",
            f"Authorization: Token {PLAIN_SECRET}",
            f"authorization={PLAIN_SECRET}",
            _Creds(api_key=PLAIN_SECRET),
            ValueError(f"refused api_key='{PLAIN_SECRET}'"),
            [("x-api-key", PLAIN_SECRET), ("Content-Type", "application/json")],
        ],
    )
    def test_secret_named_values_in_text_and_pairs(self, value: object) -> None:
        """A value after a secret-named key in text, a repr or a header pair is hidden."""
        redacted = repr(Redactor().redact(value))
        assert PLAIN_SECRET not in redacted
        assert REDACTED in redacted

    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            (f"connect to http://u:{PLAIN_SECRET}@h:80/v1 failed", "http://u:[REDACTED]@h:80/v1"),
            (f"redis://:{PLAIN_SECRET}@127.0.0.1:6379/0", "redis://:[REDACTED]@127.0.0.1:6379/0"),
            (f"at http://u:{PLAIN_SECRET}@/v1", "http://u:[REDACTED]@/v1"),
        ],
    )
    def test_a_url_password_is_hidden(self, text: str, shown: str) -> None:
        """The password of a URL's userinfo is hidden wherever the URL sits in the text; the
        user name and the rest of the URL stay."""
        redacted = Redactor().redact(text)
        assert PLAIN_SECRET not in redacted and shown in redacted

    def test_url_without_password(self) -> None:
        """One URL shown with its password (userinfo or `password=` query) as the mask given;
        a URL without one comes back as it is."""
        assert url_without_password("http://u:pw@h/v1") == "http://u:[REDACTED]@h/v1"
        assert url_without_password("redis://h/0?password=pw&db=1", "***") == (
            "redis://h/0?password=***&db=1"
        )
        assert url_without_password("http://u@h/v1") == "http://u@h/v1"
        assert url_without_password("http://u:pw@[::1/v1") == "http://u:[REDACTED]@[::1/v1"

    def test_benign_keys_are_kept(self) -> None:
        """Token counts and ordinary fields are not mistaken for secrets."""
        redactor = Redactor()
        assert not redactor.is_secret_key("max_tokens")
        assert not redactor.is_secret_key("prompt_tokens")
        assert redactor.is_secret_key("accessToken")
        assert redactor.is_secret_key("x-api-key")
        assert redactor.redact({"max_tokens": 5, "model": "gpt"}) == {
            "max_tokens": 5,
            "model": "gpt",
        }
        text = "max_tokens: 5, prompt_tokens=10, token_count: 4"
        assert redactor.redact(text) == text

    def test_long_values_are_cut(self) -> None:
        """Strings over max_length are truncated with a note; exception text is not."""
        redactor = Redactor(max_length=20)
        cut = redactor.redact("x" * 50)
        assert cut == "x" * 20 + "...[30 more chars]"
        event = redactor(None, "info", {"exception": "y" * 50, "v": ["z" * 30]})
        assert event["exception"] == "y" * 50
        assert event["v"] == ["z" * 20 + "...[10 more chars]"]

    def test_deep_nesting_is_bounded(self) -> None:
        """Very deep structures are cut off rather than recursed forever."""
        value: list[object] = []
        value.append(value)
        assert "[...]" in repr(Redactor().redact(value))

    def test_max_length_must_be_sane(self) -> None:
        """A tiny max_length is refused."""
        with pytest.raises(ValueError, match=r"^max_length must be >= 16, got 3$"):
            Redactor(max_length=3)

    def test_secret_holders_are_hidden(self) -> None:
        """Anything with get_secret_value() (pydantic's SecretStr) is replaced whole."""
        assert Redactor().redact({"k": SecretStr(PLAIN_SECRET)}) == {"k": REDACTED}

    def test_key_verdicts_are_remembered_and_bounded(self) -> None:
        """Judging a key twice gives one answer; a flood of distinct keys stays bounded."""
        redactor = Redactor()
        for n in range(10_000):
            redactor.is_secret_key(f"field_{n}")
        assert redactor.is_secret_key("api_key") is True
        assert redactor.is_secret_key("field_9999") is False
        assert len(redactor._key_cache) <= 4096


_FRAGMENTS = [
    "sk-proj-Abc123def456",
    "Bearer abc.def",
    "BASIC QWxhZGRpbjpvcGVu",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_" + "a" * 24,
    "xoxb-1234567890ab",
    "AIza" + "b" * 35,
    "api_key=zzz",
    "Api-Key: zzz",
    "PASSWORD='p'",
    "token: t",
    "Cookie=c",
    "private-key=k",
    "http://u:pw@h",
    "://",
    "@",
    "hello",
    " ",
    "=",
    ":",
    "'",
    "key",
    "tok",
]


class TestScreen:
    @given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=8), max_size=8))
    @settings(max_examples=300, deadline=None)
    def test_the_marker_screen_never_skips_a_secret(self, parts: list[str]) -> None:
        """The cheap marker screen agrees with always running the patterns, on any text."""
        text = "".join(parts)
        screened = Redactor()
        unscreened = Redactor(patterns=[*DEFAULT_SECRET_PATTERNS, r"(?!x)x"])
        assert unscreened._markers is None
        assert screened.redact(text) == unscreened.redact(text)
