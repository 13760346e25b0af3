"""Tests for lmvisor.config.loading: source layering, error collection, path access."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmvisor.config.errors import ConfigError
from lmvisor.config.loading import get_value, load_config, replace_value
from lmvisor.config.schema import LmvisorConfig, ServerConfig


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lmvisor.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestSources:
    def test_defaults_only(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no file, empty environment and no arguments, the defaults come back."""
        monkeypatch.chdir(tmp_path)
        assert load_config(env={}) == LmvisorConfig()

    def test_precedence_file_env_arguments(self, tmp_path: Path) -> None:
        """Arguments beat environment, which beats the file, which beats defaults."""
        path = _write(
            tmp_path,
            "[server]\nport = 1000\nhost = '0.0.0.0'\n[modules]\ncache_ttl = 5\n",
        )
        env = {"LMVISOR_SERVER__PORT": "2000", "LMVISOR_MODULES__CACHE_TTL": "6"}
        config = load_config(path, env=env, modules__cache_ttl=7)
        assert config.server.host == "0.0.0.0"
        assert config.server.port == 2000
        assert config.modules.cache_ttl == 7

    def test_default_file_in_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """./lmvisor.toml is read when no path is given."""
        _write(tmp_path, "[cache]\nl1_size = 3\n")
        monkeypatch.chdir(tmp_path)
        assert load_config(env={}).cache.l1_size == 3

    def test_nested_merge_keeps_sibling_fields(self, tmp_path: Path) -> None:
        """Setting one provider field keeps the provider's other defaults."""
        path = _write(tmp_path, "[providers.openai]\nrpm = 500\n")
        openai = load_config(path, env={}).providers["openai"]
        assert openai.rpm == 500
        assert openai.base_url == "https://api.openai.com/v1"
        assert openai.kind == "openai"

    def test_empty_table_changes_nothing(self, tmp_path: Path) -> None:
        """An empty [providers] table does not wipe the default providers."""
        path = _write(tmp_path, "[providers]\n")
        assert sorted(load_config(path, env={}).providers) == ["anthropic", "local", "openai"]

    def test_new_named_entries(self, tmp_path: Path) -> None:
        """Named breakers, limiters and providers can be added from any source."""
        path = _write(tmp_path, "[infrastructure.rate_limiters.openai]\nlimit = 10\nscale = 1\n")
        env = {
            "LMVISOR_INFRASTRUCTURE__CIRCUIT_BREAKERS__OPENAI__FAILURE_THRESHOLD": "2",
            "LMVISOR_PROVIDERS__OLLAMA__BASE_URL": "http://127.0.0.1:11434/v1",
        }
        config = load_config(path, env=env)
        assert config.infrastructure.rate_limiters["openai"].limit == 10
        assert config.infrastructure.circuit_breakers["openai"].failure_threshold == 2
        assert config.providers["ollama"].kind == "openai_compatible"

    def test_vendor_key_variables(self) -> None:
        """OPENAI_API_KEY and ANTHROPIC_API_KEY fill the providers' secret keys."""
        env = {"OPENAI_API_KEY": "sk-one", "ANTHROPIC_API_KEY": "sk-ant-two"}
        providers = load_config(env=env, path=None).providers
        assert providers["openai"].api_key is not None
        assert providers["openai"].api_key.get_secret_value() == "sk-one"
        assert providers["anthropic"].api_key is not None
        assert providers["anthropic"].api_key.get_secret_value() == "sk-ant-two"

    def test_prefixed_variable_beats_vendor_variable(self) -> None:
        """LMVISOR_PROVIDERS__OPENAI__API_KEY wins over OPENAI_API_KEY."""
        env = {"OPENAI_API_KEY": "sk-low", "LMVISOR_PROVIDERS__OPENAI__API_KEY": "sk-high"}
        key = load_config(env=env).providers["openai"].api_key
        assert key is not None and key.get_secret_value() == "sk-high"

    def test_json_table_in_variable(self) -> None:
        """A JSON object in a variable sets a whole table."""
        config = load_config(env={"LMVISOR_SERVER": '{"port": 9}'})
        assert config.server.port == 9

    def test_model_argument(self) -> None:
        """A pydantic model is accepted as an explicit argument."""
        config = load_config(env={}, server=ServerConfig(port=0))
        assert config.server.port == 0


class TestErrors:
    def test_every_bad_field_listed(self, tmp_path: Path) -> None:
        """One ConfigError lists every bad field with its dotted path and source."""
        path = _write(tmp_path, "[server]\nport = 'high'\n[optimization.copro]\nbreadth = 1\n")
        env = {"LMVISOR_PROVIDERS__OPENAI__RPM": "-1", "LMVISOR_CACHE__L1_SIZEE": "3"}
        with pytest.raises(ConfigError) as info:
            load_config(path, env=env, modules__default_adapter="xml")
        problems = {p.path: p for p in info.value.problems}
        assert set(problems) == {
            "server.port",
            "optimization.copro.breadth",
            "providers.openai.rpm",
            "cache.l1_sizee",
            "modules.default_adapter",
        }
        assert problems["server.port"].source == f"file {path}"
        assert problems["providers.openai.rpm"].source == "env LMVISOR_PROVIDERS__OPENAI__RPM"
        assert problems["modules.default_adapter"].source == "argument modules__default_adapter"
        assert "Extra inputs are not permitted" in problems["cache.l1_sizee"].reason

    def test_bad_values_are_not_echoed(self) -> None:
        """A rejected value (maybe a secret) never appears in the error message."""
        with pytest.raises(ConfigError) as info:
            load_config(env={"LMVISOR_SERVER__PORT": "sk-secret-value-123"})
        assert "sk-secret-value-123" not in str(info.value)
        assert "sk-secret-value-123" not in repr(info.value.to_dict())

    def test_invalid_toml(self, tmp_path: Path) -> None:
        """A file that is not TOML is reported against the file."""
        path = _write(tmp_path, "[server\nport = 1\n")
        with pytest.raises(ConfigError, match="<file>: invalid TOML") as info:
            load_config(path, env={})
        assert info.value.problems[0].source == f"file {path}"

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("a = " + "[" * 100_000, "invalid TOML: nested too deeply"),
            ("a = " + "{b = " * 5_000, "invalid TOML: nested too deeply"),
            ("a = " + "1" * 5_000, "invalid TOML: a number is too long"),
        ],
    )
    def test_hostile_toml(self, tmp_path: Path, text: str, reason: str) -> None:
        """A file nested past the parser's depth, or with an endless number, is bad TOML."""
        with pytest.raises(ConfigError) as info:
            load_config(_write(tmp_path, text), env={})
        assert [(p.path, p.reason) for p in info.value.problems] == [("<file>", reason)]

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("[" * 100_000, "JSON nested too deeply"),
            ('{"port": ' + "9" * 5_000 + "}", "JSON with a number too long to convert"),
        ],
    )
    def test_hostile_json_variable(self, value: str, reason: str) -> None:
        """A variable's JSON that cannot be decoded is reported by name, its value unshown."""
        with pytest.raises(ConfigError) as info:
            load_config(env={"LMVISOR_SERVER": value})
        assert [(p.path, p.reason) for p in info.value.problems] == [("LMVISOR_SERVER", reason)]
        assert value[:50] not in str(info.value)

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            (b"a = '\xe9'\n", "cannot read: UnicodeDecodeError"),
            (bytes(range(256)) * 16, "cannot read: UnicodeDecodeError"),
            (b"#" * (1024 * 1024) + b"\n", "larger than 1,048,576 bytes"),
            (("[" + ".".join(["a"] * 5_000) + "]\n").encode(), "nested deeper than 32 levels"),
            (("a." * 40 + "b = 1\n").encode(), "nested deeper than 32 levels"),
        ],
    )
    def test_hostile_file(self, tmp_path: Path, content: bytes, reason: str) -> None:
        """A file that is not UTF-8, too large or nested too deep is one problem naming it."""
        path = tmp_path / "lmvisor.toml"
        path.write_bytes(content)
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        [problem] = info.value.problems
        assert (problem.reason, problem.source) == (reason, f"file {path}")

    def test_a_byte_order_mark_is_read_past(self, tmp_path: Path) -> None:
        """A file saved with a UTF-8 byte-order mark loads (it failed at line 1, column 1)."""
        path = tmp_path / "lmvisor.toml"
        path.write_bytes(b"\xef\xbb\xbf[server]\nport = 9123\n")
        assert load_config(path, env={}).server.port == 9123

    def test_directory_as_file(self, tmp_path: Path) -> None:
        """A directory named as the file is a problem naming it, not an IsADirectoryError."""
        with pytest.raises(ConfigError, match=r"<file>: not a regular file \(from file"):
            load_config(tmp_path, env={})

    def test_endless_file_refused_unread(self) -> None:
        """A device that never ends (/dev/zero) is refused before it is read."""
        with pytest.raises(ConfigError, match=r"<file>: not a regular file \(from file"):
            load_config("/dev/zero", env={})

    def test_fifo_refused_without_waiting(self, tmp_path: Path) -> None:
        """A FIFO named as the file is refused at once: a plain open waited for a writer."""
        path = tmp_path / "lmvisor.toml"
        os.mkfifo(path)
        with pytest.raises(ConfigError, match=r"<file>: not a regular file \(from file"):
            load_config(path, env={})

    def test_missing_explicit_file(self, tmp_path: Path) -> None:
        """An explicitly named file must exist."""
        with pytest.raises(ConfigError, match="<file>: file not found"):
            load_config(tmp_path / "nope.toml", env={})

    def test_bad_variable_shape(self) -> None:
        """A variable with an empty level is reported by name."""
        with pytest.raises(ConfigError, match="LMVISOR_SERVER____PORT: a variable is"):
            load_config(env={"LMVISOR_SERVER____PORT": "1"})

    def test_value_where_a_table_is_needed(self, tmp_path: Path) -> None:
        """A scalar overwritten by a nested variable is reported, not crashed on."""
        path = _write(tmp_path, "modules = 5\n")
        with pytest.raises(ConfigError, match=r"modules: is not a table \(from env"):
            load_config(path, env={"LMVISOR_MODULES__CACHE_TTL": "1"})


class TestPaths:
    def test_get_value(self) -> None:
        """get_value reads leaves and subtrees by dotted path."""
        config = LmvisorConfig()
        assert get_value(config, "optimization.copro.breadth") == 10
        assert get_value(config, "providers.openai.kind") == "openai"
        assert get_value(config, "server") == ServerConfig()

    def test_get_unknown_path(self) -> None:
        """An unknown path is a ConfigError naming it."""
        with pytest.raises(ConfigError, match=r"server\.nope: no such setting"):
            get_value(LmvisorConfig(), "server.nope")

    def test_replace_value_returns_new_tree(self) -> None:
        """replace_value returns an updated copy and leaves the original alone."""
        config = LmvisorConfig()
        updated = replace_value(config, "server.port", 9000)
        assert updated.server.port == 9000
        assert config.server.port == 8750

    def test_replace_value_validates(self) -> None:
        """An invalid update raises ConfigError naming the path."""
        with pytest.raises(ConfigError, match=r"server\.port: Input should be less than"):
            replace_value(LmvisorConfig(), "server.port", 70000)

    def test_replace_value_keeps_secrets(self) -> None:
        """Secrets survive an unrelated update."""
        config = LmvisorConfig.model_validate({"providers": {"openai": {"api_key": "sk-x"}}})
        key = replace_value(config, "server.port", 1).providers["openai"].api_key
        assert key is not None and key.get_secret_value() == "sk-x"

    def test_empty_path(self) -> None:
        """An empty path is refused."""
        with pytest.raises(ConfigError, match="a path is dot-separated non-empty names"):
            replace_value(LmvisorConfig(), "", 1)


class TestBooleans:
    _SETTINGS = ("modules.cache_enabled", "server.gc_tuning", "server.access_log")

    @pytest.mark.parametrize("text", ['"yes"', '"true"', '"0"', "1"])
    def test_a_file_gives_real_booleans(self, tmp_path: Path, text: str) -> None:
        """A string or number in a TOML file where a boolean belongs is an error naming the
        field and the file (pydantic's lax mode read "yes" as true), for every bool setting."""
        server = f"[server]\ngc_tuning = {text}\naccess_log = {text}\n"
        path = _write(tmp_path, f"[modules]\ncache_enabled = {text}\n{server}")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        problems = {p.path: p for p in info.value.problems}
        assert set(problems) == set(self._SETTINGS)
        for problem in problems.values():
            assert (problem.reason, problem.source) == (
                "Input should be a valid boolean",
                f"file {path}",
            )

    def test_real_booleans_in_a_file(self, tmp_path: Path) -> None:
        """TOML's true and false are read as they are."""
        path = _write(tmp_path, "[modules]\ncache_enabled = false\n[server]\naccess_log = true\n")
        config = load_config(path, env={})
        assert (config.modules.cache_enabled, config.server.access_log) == (False, True)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("true", True),
            ("False", False),
            ("1", True),
            ("0", False),
            ("YES", True),
            ("off", False),
        ],
    )
    def test_variables_keep_pydantics_spellings(self, raw: str, expected: bool) -> None:
        """An environment variable (always a string) takes pydantic's boolean spellings."""
        env = {"LMVISOR_MODULES__CACHE_ENABLED": raw, "LMVISOR_SERVER__GC_TUNING": raw}
        config = load_config(env=env)
        assert config.modules.cache_enabled is expected and config.server.gc_tuning is expected

    def test_a_variable_that_is_no_boolean(self) -> None:
        """A variable spelling no boolean is named with its source, its value not echoed."""
        with pytest.raises(ConfigError) as info:
            load_config(env={"LMVISOR_SERVER__ACCESS_LOG": "sk-maybe"})
        [problem] = info.value.problems
        assert (problem.path, problem.source) == (
            "server.access_log",
            "env LMVISOR_SERVER__ACCESS_LOG",
        )
        assert problem.reason == "must be a boolean: true/false, 1/0, yes/no, on/off (any case)"
        assert "sk-maybe" not in str(info.value)

    def test_arguments_updates_and_json_tables_are_strict(self) -> None:
        """Python arguments, a JSON table in a variable and an update have real booleans too."""
        with pytest.raises(ConfigError, match=r"modules\.cache_enabled: Input should be a valid"):
            load_config(env={}, modules__cache_enabled="yes")
        with pytest.raises(ConfigError, match=r"server\.gc_tuning: Input should be a valid"):
            load_config(env={"LMVISOR_SERVER": '{"gc_tuning": "yes"}'})
        with pytest.raises(ConfigError, match=r"server\.access_log: Input should be a valid"):
            replace_value(LmvisorConfig(), "server.access_log", "no")
        assert replace_value(LmvisorConfig(), "server.access_log", False).server.access_log is False
        assert load_config(env={}, server={"gc_tuning": False}).server.gc_tuning is False
