"""Tests for lmvisor.server.cli_config: `lmvisor config set` / `config get`, end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from lmvisor.server.cli import app
from lmvisor.server.cli_config import parse_value
from tests.server.conftest import DaemonProcess

_BREAKER = "infrastructure.circuit_breakers.default"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CLI runner in an empty directory with no LMVISOR_ settings or vendor keys."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("LMVISOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield CliRunner()


class TestParseValue:
    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("500", 500),
            ("true", True),
            ("null", None),
            ('{"a": [1]}', {"a": [1]}),
            ("sk-1", "sk-1"),
            ("NaN", "NaN"),
            ("-Infinity", "-Infinity"),
        ],
    )
    def test_json_when_it_parses_else_the_string(self, text: str, value: object) -> None:
        """VALUE is JSON when it parses as JSON, else the text given."""
        assert parse_value(text) == value

    def test_flags_force_one_reading(self) -> None:
        """--string keeps a numeric-looking text a string; --json-value refuses text (it is
        not quoted)."""
        assert parse_value("12345", as_string=True) == "12345"
        with pytest.raises(typer.BadParameter, match=r"^is not valid JSON \(--json-value\)$"):
            parse_value("sk-secret", as_json=True)
        with pytest.raises(typer.BadParameter, match=r"^give --json-value or --string, not both$"):
            parse_value("1", as_json=True, as_string=True)


class TestConfigSetAndGet:
    def test_against_a_daemon(
        self, runner: CliRunner, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """set changes a live setting and prints it (a secret masked); get reads it back."""
        daemon = spawn_daemon(LMVISOR_SERVER__TOKEN="cli-cfg-token")
        url = ["--url", daemon.url, "--token", "cli-cfg-token"]
        threshold = f"{_BREAKER}.failure_threshold"
        changed = runner.invoke(app, ["config", "set", threshold, "7", *url])
        read = runner.invoke(app, ["config", "get", _BREAKER, *url])
        key = runner.invoke(
            app, ["config", "set", "providers.openai.api_key", "sk-cli-0a1b2c3d", *url]
        )
        assert (changed.exit_code, changed.stdout) == (0, f"{threshold} = 7\n")
        assert read.exit_code == 0
        assert (
            read.stdout.startswith(f"{_BREAKER} = {{\n") and '"failure_threshold": 7' in read.stdout
        )
        assert (key.exit_code, key.stdout) == (0, 'providers.openai.api_key = "**********"\n')
        shown = httpx.get(
            daemon.url + "/v1/config",
            params={"path": threshold},
            headers={"Authorization": "Bearer cli-cfg-token"},
        )
        assert shown.json() == 7

    def test_refusals_and_exit_codes(
        self, runner: CliRunner, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """A refused setting and a missing token exit 2 with one line; no daemon exits 1."""
        daemon = spawn_daemon(LMVISOR_SERVER__TOKEN="cli-cfg-token")
        refused = runner.invoke(
            app,
            [
                "config",
                "set",
                "data_dir",
                "/tmp/x",
                "--url",
                daemon.url,
                "--token",
                "cli-cfg-token",
            ],
        )
        anonymous = runner.invoke(app, ["config", "set", "cache.l1_size", "5", "--url", daemon.url])
        daemon.stop()
        gone = runner.invoke(app, ["config", "set", "cache.l1_size", "5", "--url", daemon.url])
        assert refused.exit_code == 2
        assert refused.stderr.startswith("error: ") and "data_dir: is read at start only" in (
            refused.stderr
        )
        assert "/tmp/x" not in refused.stderr
        assert anonymous.exit_code == 2 and "--token or LMVISOR_TOKEN" in anonymous.stderr
        assert gone.exit_code == 1

    def test_set_needs_a_url_and_get_reads_a_file(self, runner: CliRunner, tmp_path: Path) -> None:
        """set without --url is a usage error; get without it reads the local file, masked."""
        config = tmp_path / "lmvisor.toml"
        config.write_text('[providers.openai]\napi_key = "sk-file-secret"\nrpm = 40\n')
        no_url = runner.invoke(app, ["config", "set", "cache.l1_size", "5"])
        rpm = runner.invoke(app, ["config", "get", "providers.openai.rpm", "--config", str(config)])
        key = runner.invoke(app, ["config", "get", "providers.openai", "--config", str(config)])
        unknown = runner.invoke(app, ["config", "get", "providers.nope", "--config", str(config)])
        assert no_url.exit_code == 2 and "--url" in no_url.stderr
        assert (rpm.exit_code, rpm.stdout) == (0, "providers.openai.rpm = 40\n")
        assert '"api_key": "**********"' in key.stdout and "sk-file-secret" not in key.stdout
        assert unknown.exit_code == 2
        assert unknown.stderr == ("error: invalid configuration: providers.nope: no such setting\n")
