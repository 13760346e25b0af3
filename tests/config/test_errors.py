"""Tests for lmvisor.config.errors.ConfigError."""

from __future__ import annotations

import pytest

from lmvisor._error import LmvisorError
from lmvisor.config.errors import ConfigError, ConfigProblem
from lmvisor.runtime.correlation import correlation_scope


class TestConfigError:
    def test_is_a_value_error_with_lmvisor_attributes(self) -> None:
        """ConfigError is a ValueError carrying code, retryable, context and to_dict()."""
        error = ConfigError(problems=[ConfigProblem("server.port", "too big", "env X")])
        assert isinstance(error, ValueError)
        assert error.code == "config_error"
        assert error.retryable is False
        assert error.correlation_id is None
        assert error.paths == ("server.port",)
        body = error.to_dict()
        assert body["code"] == "config_error"
        assert body["context"]["problems"] == [
            {"path": "server.port", "reason": "too big", "source": "env X"}
        ]

    def test_message_lists_every_problem(self) -> None:
        """The message has one line per problem with its path, reason and source."""
        error = ConfigError(
            problems=[ConfigProblem("a.b", "bad"), ConfigProblem("c", "worse", "file x.toml")]
        )
        assert str(error) == (
            "invalid configuration (load, 2 problems):\n  a.b: bad\n  c: worse (from file x.toml)"
        )

    def test_needs_problems(self) -> None:
        """An error with no problems is a programming mistake."""
        with pytest.raises(ValueError, match=r"^ConfigError: problems must not be empty$"):
            ConfigError(problems=[])

    def test_is_an_lmvisor_error(self) -> None:
        """`except LmvisorError` catches a config failure, which records its correlation id."""
        with correlation_scope("cfg-1"), pytest.raises(LmvisorError) as info:
            raise ConfigError(problems=[ConfigProblem("server.port", "too big")])
        assert isinstance(info.value, ConfigError)
        assert info.value.correlation_id == "cfg-1"
        assert info.value.to_dict()["correlation_id"] == "cfg-1"

    def test_the_root_error_is_the_runtimes(self) -> None:
        """The leaf root and `lmvisor.LmvisorError` are one class, so config needs no runtime."""
        import lmvisor
        from lmvisor.runtime.errors import LmvisorError as RuntimeRoot

        assert lmvisor.LmvisorError is RuntimeRoot is LmvisorError
