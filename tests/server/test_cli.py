"""Tests for lmvisor.server.cli: every command, embedded and against a daemon, and as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime.errors import EventsFileUnavailable, StartError
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.cli import app, exit_code_for, main, one_line
from lmvisor.server.client import SILENT_HEARTBEATS
from lmvisor.server.errors import DaemonRefused
from lmvisor.server.host import DAEMON_NAMESPACE
from tests.server.conftest import APP_TREE, ROOT, DaemonProcess, daemon_env

LMVISOR = str(Path(sys.executable).parent / "lmvisor")
# A test run started in the background (`make test &`, a CI step) ignores SIGINT, and a
# child inherits an ignored signal through exec, so it would never see Ctrl-C. This runs
# a command with SIGINT's default action, as a terminal starts it.
WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
    " os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CLI runner in an empty directory with no LMVISOR_ settings or vendor keys."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in list(__import__("os").environ) if n.startswith("LMVISOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    yield CliRunner()


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lmvisor.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestVersion:
    def test_prints_the_version(self, runner: CliRunner) -> None:
        """`lmvisor version` prints lmvisor's and Python's versions."""
        result = runner.invoke(app, ["version"])
        assert result.exit_code == 0
        assert result.stdout.startswith("lmvisor 0.1.0 (Python 3.")

    def test_with_a_daemon(self, runner: CliRunner, shared_daemon: DaemonProcess) -> None:
        """With --url it also prints the daemon's version."""
        result = runner.invoke(app, ["version", "--url", shared_daemon.url, "--json"])
        assert result.exit_code == 0
        data = json.loads(result.stdout)
        assert data["daemon"] == {"url": shared_daemon.url, "version": "0.1.0"}

    def test_a_password_in_the_daemon_url_is_not_printed(
        self, runner: CliRunner, shared_daemon: DaemonProcess
    ) -> None:
        """`version` and `config check` against a URL with a password print the URL with
        the password hidden, as text and as JSON."""
        url = shared_daemon.url.replace("http://", "http://me:hunter2@")
        for args in (["version"], ["version", "--json"], ["config", "check"]):
            result = runner.invoke(app, [*args, "--url", url])
            assert result.exit_code == 0, result.output
            assert "hunter2" not in result.output and "me:[REDACTED]@" in result.output


class TestConfigCheck:
    def test_valid_file_prints_masked_config(
        self, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A valid file prints the effective config as JSON with every secret masked."""
        path = _toml(tmp_path, '[server]\nport = 9100\ntoken = "file-secret-1"\n')
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret-123456")
        result = runner.invoke(app, ["config", "check", str(path), "--json"])
        assert result.exit_code == 0
        data = json.loads(result.stdout)
        assert data["server"]["port"] == 9100
        assert data["server"]["token"] == "**********"
        assert data["providers"]["openai"]["api_key"] == "**********"
        assert "file-secret-1" not in result.output and "sk-env-secret" not in result.output

    def test_invalid_file_is_one_line_and_exit_2(self, runner: CliRunner, tmp_path: Path) -> None:
        """Every bad field is named on one line; the exit code is 2."""
        path = _toml(tmp_path, "[server]\nport = 'high'\ndrain_timeout = -1\n")
        result = runner.invoke(app, ["config", "check", str(path)])
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("error: invalid configuration: server.port: ")
        assert "server.drain_timeout: Input should be greater than 0" in result.stderr

    def test_public_host_without_token_fails_the_check(
        self, runner: CliRunner, tmp_path: Path
    ) -> None:
        """A config the daemon would refuse to start with fails the check (exit 2)."""
        path = _toml(tmp_path, "[server]\nhost = '0.0.0.0'\n")
        result = runner.invoke(app, ["config", "check", str(path)])
        assert result.exit_code == 2
        assert "refusing to listen on '0.0.0.0'" in result.stderr

    def test_path_and_url_together_is_a_usage_error(self, runner: CliRunner) -> None:
        """PATH and --url are exclusive: a usage error, exit 2."""
        result = runner.invoke(app, ["config", "check", "x.toml", "--url", "http://127.0.0.1:1"])
        assert result.exit_code == 2

    def test_daemon_config(self, runner: CliRunner, shared_daemon: DaemonProcess) -> None:
        """With --url the daemon's configuration is checked and printed."""
        result = runner.invoke(app, ["config", "check", "--url", shared_daemon.url, "--json"])
        assert result.exit_code == 0
        assert json.loads(result.stdout)["server"]["access_log"] is False


class TestTree:
    def test_embedded(self, runner: CliRunner) -> None:
        """Without --url the tree of an embedded runtime is rendered."""
        result = runner.invoke(app, ["tree"])
        assert result.exit_code == 0
        assert "event_store" in result.stdout and "running" in result.stdout

    def test_daemon_json(self, runner: CliRunner, shared_daemon: DaemonProcess) -> None:
        """With --url (here from LMVISOR_URL) the daemon's tree is printed as JSON."""
        result = runner.invoke(app, ["tree", "--json"], env={"LMVISOR_URL": shared_daemon.url})
        assert result.exit_code == 0
        assert [c["id"] for c in json.loads(result.stdout)["children"]] == [*APP_TREE, "fragile"]

    def test_unreachable_daemon_exits_1(self, runner: CliRunner) -> None:
        """No daemon at the URL: one line, exit 1."""
        result = runner.invoke(app, ["tree", "--url", "http://127.0.0.1:9"])
        assert result.exit_code == 1
        assert result.stderr.startswith("error: no daemon answered at http://127.0.0.1:9: ")

    def test_a_password_in_the_url_is_not_shown(self, runner: CliRunner) -> None:
        """An unreachable daemon's URL is shown with its password replaced."""
        result = runner.invoke(app, ["tree", "--url", "http://me:hunter2@127.0.0.1:9"])
        assert result.exit_code == 1
        assert result.stderr.startswith(
            "error: no daemon answered at http://me:[REDACTED]@127.0.0.1:9: "
        )
        assert "hunter2" not in result.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--url", "http://me:hunter2@127.0.0.1:port"], "Invalid value for --url: must be an"),
            (["--url", "ftp://me:hunter2@127.0.0.1"], "Invalid value for --url: must be an"),
            (["--url", "http://127.0.0.1:9", "--token", "t\u00f6ken-hunter2"], "--token: must be"),
            (["--url", "http://127.0.0.1:9", "--token", "a\nhunter2"], "--token: must be"),
            (
                ["--url", "http://me:hunter2@127.0.0.1:9", "--token", "t-hunter2"],
                "--url: holds a user and password and --token",
            ),
        ],
    )
    def test_bad_url_or_token_is_a_usage_error(
        self, runner: CliRunner, args: list[str], message: str
    ) -> None:
        """A URL that is not http(s) or a token no header can carry exits 2, unquoted."""
        result = runner.invoke(app, ["tree", *args])
        assert result.exit_code == 2
        assert message in result.stderr and "hunter2" not in result.stderr

    def test_debug_adds_the_traceback(self, runner: CliRunner) -> None:
        """--debug prints the traceback before the one-line error."""
        result = runner.invoke(app, ["--debug", "tree", "--url", "http://127.0.0.1:9"])
        assert result.exit_code == 1
        assert "Traceback (most recent call last)" in result.stderr


class TestEvents:
    def test_embedded_reads_the_configured_store(self, runner: CliRunner, tmp_path: Path) -> None:
        """Embedded, events come from the configured SQLite store (a daemon's included)."""
        db = tmp_path / "events.db"

        async def record() -> None:
            config = LmvisorConfig.model_validate({"events": {"sqlite_path": str(db)}})
            async with Runtime.open(config, namespace=DAEMON_NAMESPACE) as rt:
                rt.events.emit("job.done", {"score": 0.9})

        asyncio.run(record())
        path = _toml(tmp_path, f"[events]\nsqlite_path = '{db}'\n")
        result = runner.invoke(app, ["events", "--config", str(path), "--type", "job.*", "--json"])
        assert result.exit_code == 0, result.output
        assert [e["data"] for e in json.loads(result.stdout)] == [{"score": 0.9}]

    def test_no_events(self, runner: CliRunner) -> None:
        """No match says so on stderr and exits 0."""
        result = runner.invoke(app, ["events", "--type", "nothing.*"])
        assert result.exit_code == 0
        assert "no matching events" in result.stderr

    def test_daemon_table(self, runner: CliRunner, shared_daemon: DaemonProcess) -> None:
        """With --url the daemon's events are rendered as a table."""
        result = runner.invoke(
            app, ["events", "--url", shared_daemon.url, "--type", "server.ready"]
        )
        assert result.exit_code == 0
        assert "server.ready" in result.stdout

    def test_refused_request_exits_2(self, runner: CliRunner, shared_daemon: DaemonProcess) -> None:
        """A 4xx from the daemon is a usage error: its code and field on one line, exit 2."""
        args = ["run", "anything", "--timeout", "5000", "--url", shared_daemon.url]
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert result.stderr.startswith("error: daemon answered 422 invalid_input: timeout: ")
        assert result.stderr.rstrip().endswith("(field timeout)")

    def test_follow_a_host_that_never_answers_gives_up(
        self, runner: CliRunner, silent_host: Callable[[str], str]
    ) -> None:
        """`events --follow --url` at a port that accepts and never answers ends with
        exit 1 after the client's timeout, not a wait without end."""
        url = silent_host("lmvisor.server.cli")
        result = runner.invoke(app, ["events", "--follow", "--url", url])
        assert result.exit_code == 1
        assert result.stderr.startswith(f"error: no daemon answered at {url}: ")

    def test_follow_a_daemon_until_it_drains(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """`events --follow --url` prints events live and exits 0 when the daemon drains."""
        daemon = spawn_daemon()
        follower = subprocess.Popen(
            [LMVISOR, "events", "--follow", "--json", "--url", daemon.url],
            cwd=ROOT,
            env=daemon_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            first = json.loads(follower.stdout.readline())
            assert first["data"]["type"] == "server.ready"
            daemon.signal(signal.SIGTERM)
            rest = [json.loads(line) for line in follower.stdout]
            assert follower.wait(30) == 0
        finally:
            follower.kill()
            follower.communicate()
        assert "server.draining" in [item["data"]["type"] for item in rest]

    def test_follow_a_daemon_that_goes_silent_gives_up_typed(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """The daemon states its heartbeat interval; a follower outlives a quiet stream
        (more than 3 intervals with no event, only heartbeats), but once the daemon sends
        nothing at all (stopped) it gives up after 3 intervals: DaemonSilent, exit 1."""
        daemon = spawn_daemon(LMVISOR_SERVER__SSE_HEARTBEAT="0.1")
        follower = subprocess.Popen(
            [LMVISOR, "events", "--follow", "--json", "--url", daemon.url, "--type", "none.*"],
            cwd=ROOT,
            env=daemon_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            params = {"follow": "true", "type": "none.*"}
            with httpx.stream("GET", daemon.url + "/v1/events", params=params) as watch:
                assert watch.headers["X-SSE-Heartbeat"] == "0.1"
                beats = 0
                for line in watch.iter_lines():
                    beats += line == ": keep-alive"
                    if beats == 2 * SILENT_HEARTBEATS:
                        break
            assert follower.poll() is None  # heartbeats alone keep it following
            daemon.signal(signal.SIGSTOP)
            try:
                code = follower.wait(30)
            finally:
                daemon.signal(signal.SIGCONT)
            _, stderr = follower.communicate()
        finally:
            follower.kill()
            follower.communicate()
        assert code == 1
        assert stderr == (
            f"error: the daemon at {daemon.url} sent nothing on GET /v1/events for 0.3s,"
            " not even a heartbeat: it stalled or the connection is gone\n"
        )

    def test_follow_embedded_stops_on_ctrl_c(self, tmp_path: Path) -> None:
        """Embedded `events --follow` says what it follows and exits 0 on SIGINT."""
        follower = subprocess.Popen(
            [sys.executable, "-c", WITH_CTRL_C, LMVISOR, "events", "--follow"],
            cwd=tmp_path,
            env=daemon_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stderr is not None
            assert "following an embedded runtime" in follower.stderr.readline()
            follower.send_signal(signal.SIGINT)
            assert follower.wait(30) == 0
        finally:
            follower.kill()
            follower.communicate()


class TestProcess:
    def test_help_from_the_console_script(self) -> None:
        """The installed `lmvisor` script prints help naming every command."""
        done = subprocess.run([LMVISOR, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        for command in ("serve", "tree", "events", "config", "version"):
            assert command in done.stdout

    def test_ctrl_c_during_an_embedded_start_is_130(self, tmp_path: Path) -> None:
        """Ctrl-C while an embedded `run` starts (its `--app` hook still running) exits 130
        with one line and no traceback."""
        hook = "tests.server._daemon_app:register_stalled"
        running = subprocess.Popen(
            [sys.executable, "-c", WITH_CTRL_C, LMVISOR, "run", "qa", "--app", hook],
            cwd=tmp_path,
            env=daemon_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert running.stderr is not None
            assert running.stderr.readline() == "hook started\n"
            running.send_signal(signal.SIGINT)
            out, err = running.communicate(timeout=30)
        finally:
            running.kill()
        assert (running.returncode, out, err) == (130, "", "interrupted\n")

    def test_python_m_lmvisor_into_a_closed_pipe_is_quiet(self) -> None:
        """`python -m lmvisor` runs the command; writing into a pipe nobody reads (`| head`)
        ends it with exit 1 and nothing on stderr."""
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "lmvisor", "version", "--json"],
                stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, env=daemon_env(),
            )  # fmt: skip
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (1, "")

    def test_unknown_command_is_usage_error(self) -> None:
        """An unknown command exits 2."""
        done = subprocess.run([LMVISOR, "frobnicate"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("args", "line"),
        [
            (
                ["run", "qa", "--timeout", "abc"],
                "error: Invalid value for '--timeout': Input should be a valid number, unable to"
                " parse string as a number (see 'lmvisor run --help')",
            ),
            (["run"], "error: Missing argument 'program'. (see 'lmvisor run --help')"),
            (["frobnicate"], "error: No such command 'frobnicate'. (see 'lmvisor --help')"),
            (["tree", "--bogus"], "error: No such option: --bogus (see 'lmvisor tree --help')"),
        ],
    )
    def test_a_usage_error_is_one_line_and_exit_2(
        self, args: list[str], line: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """typer's own usage errors read like every other error: one line on stderr, exit 2."""
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 2
        assert capsys.readouterr().err == line + "\n"

    def test_no_arguments_shows_the_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`lmvisor` alone prints the help and exits 2, as before."""
        with pytest.raises(SystemExit) as exited:
            main([])
        assert exited.value.code == 2
        assert "Usage: lmvisor [OPTIONS] COMMAND" in capsys.readouterr().out

    @pytest.mark.parametrize("since", ["nan", "inf", "-inf", "1e309"])
    def test_events_since_must_be_finite(self, runner: CliRunner, since: str) -> None:
        """`--since nan` (or an infinity) is a usage error, not an empty answer."""
        result = runner.invoke(app, ["events", "--since", since])
        assert result.exit_code == 2
        assert result.stderr.startswith("error: Invalid value for --since: must be a finite epoch")

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--correlation-id", "x" * 129], "--correlation-id: must be 1 to 128 of"),
            (["--correlation-id", "a b"], "--correlation-id: must be 1 to 128 of"),
            (["--type", "../x"], "--type: at most 32, each 1 to 200 of"),
            (["--type", ""], "--type: at most 32, each 1 to 200 of"),
            ([arg for _ in range(33) for arg in ("-t", "a")], "--type: at most 32, each"),
        ],
    )
    def test_embedded_events_refuse_what_a_daemon_refuses(
        self, runner: CliRunner, args: list[str], message: str
    ) -> None:
        """Embedded, a filter a daemon answers 422 for is a usage error too, not "no events"."""
        result = runner.invoke(app, ["events", *args])
        assert result.exit_code == 2
        assert result.stderr.startswith(f"error: Invalid value for {message}")

    def test_ctrl_c_in_a_command_is_130_and_one_line(
        self, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A KeyboardInterrupt inside a command exits 130 with `interrupted`, no traceback."""

        def interrupted(path: object) -> object:
            raise KeyboardInterrupt

        monkeypatch.setattr("lmvisor.server.embedded.embedded_tree", interrupted)
        result = runner.invoke(app, ["tree"])
        assert (result.exit_code, result.stderr) == (130, "interrupted\n")


class TestHelpers:
    def test_exit_codes(self) -> None:
        """Config and start-up errors and a daemon's 4xx are 2; anything else is 1."""
        assert exit_code_for(DaemonRefused(status=401, error_code="u", message="m")) == 2
        assert exit_code_for(DaemonRefused(status=503, error_code="u", message="m")) == 1
        assert exit_code_for(RuntimeError("x")) == 1

    def test_a_401_says_how_to_give_the_token(self) -> None:
        """A daemon's 401 names the flag and the variable that carry the token."""
        refused = DaemonRefused(status=401, error_code="unauthorized", message="unknown token")
        assert one_line(refused) == (
            "daemon answered 401 unauthorized: unknown token: give the daemon's token with"
            " --token or LMVISOR_TOKEN"
        )

    def test_one_line_joins_lines(self) -> None:
        """A message with line breaks becomes one line."""
        assert one_line(RuntimeError("a\n  b")) == "a b"

    def test_one_line_names_the_child_path_and_the_cause_of_a_start_failure(self) -> None:
        """Nested start failures read as the path of children and the innermost cause's message."""
        cause = EventsFileUnavailable(path="/d/events.db", problem="file is not a database")
        inner = StartError(supervisor="S<2>", child_id="event_store", reason=cause)
        outer = StartError(supervisor="S<1>", child_id="system", reason=inner)
        assert one_line(outer) == (
            "cannot start system/event_store: events file '/d/events.db' cannot be used: "
            "file is not a database (move the file aside, or set events.sqlite_path to another "
            "file)"
        )
        odd = StartError(supervisor="S<1>", child_id="jobs", reason="max_children")
        assert one_line(odd) == "cannot start jobs: 'max_children'"
