"""Tests for lmvisor.server.cli_programs: `lmvisor run` and `lmvisor optimize`, embedded and
against a daemon, through typer's runner and as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from lmvisor.server.cli import app
from lmvisor.server.cli_programs import load_job_spec, parse_inputs, program_ref
from lmvisor.server.cli_support import exit_code_for
from lmvisor.server.client import DaemonClient
from lmvisor.server.errors import DaemonSilent
from lmvisor.services.errors import ServiceInputError, UnknownModule
from tests.server.conftest import ROOT, DaemonProcess, LMProcess, daemon_env

LMVISOR = str(Path(sys.executable).parent / "lmvisor")
COT = {"module": "ChainOfThought", "signature": "question -> answer"}
METRIC = "tests.server._metrics:answered"
LOOPBACK = ("--loopback-lm", "always")


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CLI runner in an empty directory with no LMVISOR_ settings or vendor keys."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("LMVISOR_") or n.endswith("_API_KEY")]:
        monkeypatch.delenv(name)
    yield CliRunner()


def _spec_file(tmp_path: Path, spec: object = COT, name: str = "qa.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def _job_files(tmp_path: Path, program: str = '"qa"', optimizer: str = "LabeledFewShot") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    rows = [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(4)]
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'optimizer = "{optimizer}"\nprogram = {program}\ntrainset = "data/train.jsonl"\n'
        f'input_keys = ["question"]\nmetric = "{METRIC}"\ndeploy = true\n',
        encoding="utf-8",
    )
    return spec


class TestHelpers:
    def test_program_ref_from_an_id_or_a_file(self, tmp_path: Path) -> None:
        """An id stays an id; a spec file gets an id from its name and content."""
        assert program_ref("qa").spec is None
        path = _spec_file(tmp_path, name="My QA.json")
        ref = program_ref(str(path))
        assert ref.spec == COT and ref.id.startswith("my-qa-") and len(ref.id) == len("my-qa-") + 8
        assert program_ref(str(path)).id == ref.id
        body = _spec_file(
            tmp_path, {"id": "named", "program": COT, "options": {"lm": None}}, "b.json"
        )
        assert (program_ref(str(body)).id, program_ref(str(body)).spec) == ("named", COT)

    def test_bad_files_are_usage_errors(self, tmp_path: Path) -> None:
        """A missing or non-object JSON file is a usage error naming PROGRAM."""
        with pytest.raises(typer.BadParameter, match=r"^cannot read 'nope.json'"):
            program_ref("nope.json")
        with pytest.raises(typer.BadParameter, match=r"is not a JSON object$"):
            program_ref(str(_spec_file(tmp_path, [1, 2])))

    @pytest.mark.parametrize("argument", ["a/b", "../x", "..", "a b", "Qa", "x" * 129])
    def test_an_argument_neither_an_id_nor_a_file_is_a_usage_error(self, argument: str) -> None:
        """PROGRAM that is no file and no id a daemon takes is refused before any request."""
        with pytest.raises(
            typer.BadParameter,
            match=r"^'.*' is neither a JSON file nor a program id \(a-z, 0-9, `_-\.`, at most 128"
            r" characters\)$",
        ):
            program_ref(argument)

    def test_a_10_kb_argument_is_cut_short_in_the_message(self) -> None:
        """A 10 kB PROGRAM (too long to be a path) is named by its start and its length."""
        with pytest.raises(typer.BadParameter) as caught:
            program_ref("x" * 10_000)
        message = str(caught.value)
        assert message.startswith(f"'{'x' * 200}'... (10000 characters) is neither")
        assert len(message) < 400

    def test_a_bad_jsonl_row_is_named_by_its_line_in_the_file(self, tmp_path: Path) -> None:
        """A dataset with one bad row in the middle names that row's line (blank lines count)."""
        spec = _job_files(tmp_path)
        (tmp_path / "data" / "train.jsonl").write_text('{"a": 1}\n\n{"a": oops}\n{"a": 2}\n')
        with pytest.raises(
            typer.BadParameter, match=r"^trainset '.*train\.jsonl' line 3: not JSON \(Expecting"
        ):
            load_job_spec(spec, inline=True)

    def test_only_regular_files_of_bounded_size_are_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A FIFO, a device, a directory or a file over the limit is refused before it is
        read (`/dev/zero` named as a spec used to be read until memory ran out)."""
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        (tmp_path / "dir.json").mkdir()
        (tmp_path / "zero.json").symlink_to("/dev/zero")
        for name in (str(fifo), str(tmp_path / "zero.json"), str(tmp_path / "dir.json")):
            with pytest.raises(typer.BadParameter, match=r"^cannot read '.*': not a regular file$"):
                program_ref(name)
            with pytest.raises(typer.BadParameter, match=r"^cannot read '.*': not a regular file$"):
                load_job_spec(Path(name), inline=False)
        job = _job_files(tmp_path)
        for dataset in ("/dev/zero", str(fifo), str(tmp_path), str(tmp_path / "nope.jsonl")):
            job.write_text(job.read_text().replace("data/train.jsonl", dataset))
            for inline in (False, True):
                with pytest.raises(typer.BadParameter, match=r"^trainset '.*': (not a re|No such)"):
                    load_job_spec(job, inline=inline)
            job.write_text(job.read_text().replace(dataset, "data/train.jsonl"))
        monkeypatch.setattr("lmvisor.server.cli_programs.MAX_PROGRAM_BYTES", 10)
        with pytest.raises(typer.BadParameter, match=r"^cannot read '.*': larger than 10 bytes$"):
            program_ref(str(_spec_file(tmp_path)))

    def test_inputs_as_text_or_json(self) -> None:
        """`k=v` is text, `k:=JSON` a JSON value; anything else is a usage error."""
        assert parse_inputs(["q=a=b", "n:=3", 'ctx:=["x"]']) == {"q": "a=b", "n": 3, "ctx": ["x"]}
        with pytest.raises(typer.BadParameter, match=r"^'q' is not k=v or k:=JSON$"):
            parse_inputs(["q"])
        with pytest.raises(typer.BadParameter, match=r"^'n:=\{': the value is not JSON \("):
            parse_inputs(["n:={"])
        for value, problem in [("NaN", "NaN is not"), ("-Infinity", "-Infinity is not"),
                               ("[1e309]", "1e309 is out of")]:  # fmt: skip
            with pytest.raises(
                typer.BadParameter, match=rf"^'n:=.*': the value is not JSON \({problem}"
            ):
                parse_inputs([f"n:={value}"])

    def test_job_datasets_resolve_against_the_spec(self, tmp_path: Path) -> None:
        """Dataset paths are read relative to the spec: absolute, or inline for a daemon."""
        spec = _job_files(tmp_path)
        local = load_job_spec(spec, inline=False)
        inline = load_job_spec(spec, inline=True)
        assert local["trainset"] == str(tmp_path / "data" / "train.jsonl")
        assert inline["trainset"][0] == {"question": "q0?", "answer": "a0"}

    def test_a_jsonl_row_may_hold_u2028(self, tmp_path: Path) -> None:
        """A dataset row whose text holds U+2028 unescaped (ensure_ascii=False) is one row."""
        spec = _job_files(tmp_path)
        row = {"question": "q\u2028?", "answer": "a"}
        (tmp_path / "data" / "train.jsonl").write_text(json.dumps(row, ensure_ascii=False))
        assert load_job_spec(spec, inline=True)["trainset"] == [row]

    def test_hostile_json_is_a_usage_error(self, tmp_path: Path) -> None:
        """JSON nested past the decoder's depth, in a file, an input or a dataset, is bad JSON."""
        deep = "[" * 100_000
        spec = tmp_path / "deep.json"
        spec.write_text(deep)
        with pytest.raises(typer.BadParameter, match=r"^cannot read '.*': JSON nested too deeply$"):
            program_ref(str(spec))
        with pytest.raises(typer.BadParameter, match=r"not JSON \(JSON nested too deeply\)$"):
            parse_inputs([f"n:={deep}"])
        (tmp_path / "rows.jsonl").write_text(deep + "\n")
        job = tmp_path / "job.json"
        job.write_text(json.dumps({"trainset": "rows.jsonl"}))
        with pytest.raises(
            typer.BadParameter, match=r"^trainset '.*' line 1: not JSON \(JSON nested too deeply\)$"
        ):
            load_job_spec(job, inline=True)
        job.write_text(deep)
        with pytest.raises(typer.BadParameter, match=r"^cannot read '.*': JSON nested too deeply$"):
            load_job_spec(job, inline=False)
        toml = tmp_path / "job.toml"
        toml.write_text("a = " + deep)
        with pytest.raises(typer.BadParameter, match=r"^cannot read '.*': TOML nested too deeply$"):
            load_job_spec(toml, inline=False)

    def test_embedded_errors_exit_like_the_daemons_4xx(self) -> None:
        """Errors the daemon answers with a 4xx exit 2 when run embedded."""
        assert exit_code_for(UnknownModule(module_id="x")) == 2
        assert exit_code_for(ServiceInputError(field="inputs", problem="bad")) == 2
        assert exit_code_for(typer.BadParameter("bad")) == 2


class TestRunEmbedded:
    def test_a_spec_file_runs(self, runner: CliRunner, tmp_path: Path) -> None:
        """A spec file is registered and run; the outputs and accounting are printed."""
        path = _spec_file(tmp_path)
        result = runner.invoke(app, ["run", str(path), "-i", "question=What is DSPy?", *LOOPBACK])
        assert result.exit_code == 0, result.output
        assert "answer" in result.stdout and "reasoning" in result.stdout
        assert "tokens" in result.stdout and "correlation id" in result.stdout

    def test_json_output(self, runner: CliRunner, tmp_path: Path) -> None:
        """--json prints the same object as the daemon's /run answer."""
        path = _spec_file(tmp_path)
        result = runner.invoke(app, ["run", str(path), "-i", "question=q", "--json", *LOOPBACK])
        data = json.loads(result.stdout)
        assert set(data) >= {"outputs", "usage", "cost_usd", "cached", "correlation_id"}

    def test_an_id_needs_the_app_hook(self, runner: CliRunner) -> None:
        """An id is found when the --app hook registers it (then kept under .lmvisor/);
        before that, exit 2."""
        hook = ("--app", "tests.server._daemon_app:register_qa")
        missing = runner.invoke(app, ["run", "qa", "-i", "question=q", *LOOPBACK])
        found = runner.invoke(app, ["run", "qa", "-i", "question=q", *hook, *LOOPBACK])
        assert found.exit_code == 0, found.output
        assert missing.exit_code == 2
        assert missing.stderr == "error: no program is registered as 'qa'\n"

    def test_bad_inputs_exit_2(self, runner: CliRunner, tmp_path: Path) -> None:
        """A missing input and a malformed --input are one-line usage errors."""
        path = str(_spec_file(tmp_path))
        missing = runner.invoke(app, ["run", path, *LOOPBACK])
        malformed = runner.invoke(app, ["run", path, "-i", "question", *LOOPBACK])
        assert (missing.exit_code, malformed.exit_code) == (2, 2)
        assert missing.stderr.startswith("error: inputs.question: missing input 'question'")
        assert malformed.stderr.startswith("error: Invalid value for --input: ")

    @pytest.mark.parametrize("seconds", ["inf", "1e308", "86400.5", "nan", "0", "1e-300", "-1"])
    def test_a_timeout_must_be_from_a_millisecond_to_a_day(
        self, runner: CliRunner, tmp_path: Path, seconds: str
    ) -> None:
        """--timeout inf or 1e308 (which ran unbounded embedded), NaN, 1e-300, zero or less
        is a usage error naming the option, before anything starts."""
        path = str(_spec_file(tmp_path))
        result = runner.invoke(
            app, ["run", path, "-i", "question=q", "--timeout", seconds, *LOOPBACK]
        )
        assert result.exit_code == 2, result.output
        shown = repr(float(seconds))
        assert result.stderr == (
            "error: Invalid value for --timeout: must be from 0.001 to 86400 seconds,"
            f" got {shown}\n"
        )

    def test_without_a_vendor_or_loopback_it_says_so(
        self, runner: CliRunner, tmp_path: Path
    ) -> None:
        """With no key and the loopback not chosen, the unknown vendor is a usage error."""
        result = runner.invoke(app, ["run", str(_spec_file(tmp_path)), "-i", "question=q"])
        assert result.exit_code == 2
        assert "names provider 'openai', which is not configured" in result.stderr


class TestRunAgainstADaemon:
    def test_a_file_registers_once(
        self, runner: CliRunner, shared_daemon: DaemonProcess, tmp_path: Path
    ) -> None:
        """Running the same file twice registers it once and runs it twice."""
        path = str(_spec_file(tmp_path))
        args = ["run", path, "-i", "question=remote?", "--url", shared_daemon.url, "--json"]
        first = runner.invoke(app, args)
        again = runner.invoke(app, args)
        assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
        one, two = json.loads(first.stdout), json.loads(again.stdout)
        assert one["module_id"] == two["module_id"] and two["cached"] is True

    def test_daemon_errors_exit_2(self, runner: CliRunner, shared_daemon: DaemonProcess) -> None:
        """An unknown id on the daemon is its 404, shown on one line, exit 2."""
        result = runner.invoke(app, ["run", "nothing-here", "--url", shared_daemon.url])
        assert result.exit_code == 2
        assert result.stderr.startswith("error: daemon answered 404 unknown_module: ")


class TestRunAgainstSilence:
    def test_a_host_that_never_answers_gives_up(
        self, runner: CliRunner, silent_host: Callable[[str], str]
    ) -> None:
        """`run --url` (no --timeout) at a port that accepts and never answers ends with
        exit 1 after the client's timeout, not a wait without end."""
        url = silent_host("lmvisor.server.cli_programs")
        result = runner.invoke(app, ["run", "qa", "--url", url])
        assert result.exit_code == 1
        assert result.stderr.startswith(f"error: no daemon answered at {url}: ")


class TestOptimize:
    def test_embedded_job_with_progress_and_table(self, runner: CliRunner, tmp_path: Path) -> None:
        """An embedded job runs to its end; the result table says completed; exit 0."""
        spec = _job_files(tmp_path)
        hook = ("--app", "tests.server._daemon_app:register_qa")
        result = runner.invoke(app, ["optimize", str(spec), *hook, *LOOPBACK])
        assert result.exit_code == 0, result.output
        assert "completed" in result.stdout and "LabeledFewShot" in result.stdout
        assert "deployed as version" in result.stdout

    def test_a_job_refused_at_once_is_one_line(self, runner: CliRunner, tmp_path: Path) -> None:
        """A job refused before any progress prints its error alone (no progress bar's blank
        line above it)."""
        spec = _job_files(tmp_path)
        spec.write_text(spec.read_text().replace(METRIC, "nope.nowhere:metric"))
        result = runner.invoke(app, ["optimize", str(spec), *LOOPBACK])
        assert result.exit_code == 2
        assert result.stderr.startswith("error: metric 'nope.nowhere:metric': cannot import")
        assert result.stderr.count("\n") == 1

    def test_ctrl_c_while_following_a_daemons_job_is_one_line(
        self, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl-C while following a daemon's job exits 130 with one line saying the job runs
        on and how to cancel it."""

        def daemon(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/events"):
                raise KeyboardInterrupt
            return httpx.Response(202, json={"id": "j1"}, headers={"x-correlation-id": "c"})

        def fake(url: str, token: str | None) -> DaemonClient:
            return DaemonClient(url, transport=httpx.MockTransport(daemon))

        monkeypatch.setattr("lmvisor.server.cli_programs.client", fake)
        url = "http://me:pw@127.0.0.1:9"
        result = runner.invoke(app, ["optimize", str(_job_files(tmp_path)), "--url", url])
        assert (result.exit_code, result.stderr) == (
            130,
            "interrupted: stopped following; job j1 runs on (cancel: POST"
            " http://me:[REDACTED]@127.0.0.1:9/v1/optimizations/j1/cancel)\n",
        )

    def test_a_silent_daemon_while_following_names_the_job_left_running(
        self, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A daemon gone silent while its job is followed exits 1 with the error and a
        line naming the job left running and how to cancel it."""

        def daemon(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/events"):
                raise DaemonSilent(url="http://127.0.0.1:9", request="GET /events", seconds=3.0)
            return httpx.Response(202, json={"id": "j1"}, headers={"x-correlation-id": "c"})

        def fake(url: str, token: str | None) -> DaemonClient:
            return DaemonClient(url, transport=httpx.MockTransport(daemon))

        monkeypatch.setattr("lmvisor.server.cli_programs.client", fake)
        result = runner.invoke(
            app, ["optimize", str(_job_files(tmp_path)), "--url", "http://127.0.0.1:9"]
        )
        assert result.exit_code == 1
        assert result.stderr.startswith(
            "the daemon went silent; job j1 runs on (cancel: POST"
            " http://127.0.0.1:9/v1/optimizations/j1/cancel)\n"
        )

    def test_json_and_failure_exit_1(self, runner: CliRunner, tmp_path: Path) -> None:
        """A job that fails prints its status (here as JSON) and exits 1."""
        spec = _job_files(tmp_path, program='"not-registered"')
        result = runner.invoke(app, ["optimize", str(spec), "--json", *LOOPBACK])
        assert result.exit_code == 1, result.output
        status = json.loads(result.stdout)
        assert (status["status"], status["error"]["code"]) == ("failed", "unknown_module")

    def test_against_a_daemon(
        self,
        runner: CliRunner,
        spawn_daemon: Callable[..., DaemonProcess],
        lm_process: LMProcess,
        tmp_path: Path,
    ) -> None:
        """Against a daemon the rows go inline, progress streams, the table shows the end."""
        daemon = spawn_daemon(
            "--app",
            "tests.server._daemon_app:register_qa",
            LMVISOR_SERVER__METRICS=json.dumps([METRIC]),
            **lm_process.env(),
        )
        spec = _job_files(tmp_path, optimizer="BootstrapFewShot")
        result = runner.invoke(app, ["optimize", str(spec), "--url", daemon.url])
        detached = runner.invoke(app, ["optimize", str(spec), "--url", daemon.url, "--detach"])
        assert result.exit_code == 0, result.output
        assert "completed" in result.stdout and "BootstrapFewShot" in result.stdout
        assert detached.exit_code == 0 and "running" in detached.stdout

    def test_detach_needs_a_daemon(self, runner: CliRunner, tmp_path: Path) -> None:
        """--detach without --url is a usage error."""
        result = runner.invoke(app, ["optimize", str(_job_files(tmp_path)), "--detach"])
        assert result.exit_code == 2


class TestProcesses:
    def test_run_and_optimize_as_processes(
        self, spawn_daemon: Callable[..., DaemonProcess], lm_process: LMProcess, tmp_path: Path
    ) -> None:
        """The installed script runs a program and an optimization against a daemon."""
        daemon = spawn_daemon(
            "--app",
            "tests.server._daemon_app:register_qa",
            LMVISOR_SERVER__METRICS=json.dumps([METRIC]),
            **lm_process.env(),
        )
        env = daemon_env(LMVISOR_URL=daemon.url)
        ran = subprocess.run(
            [LMVISOR, "run", "qa", "-i", "question=from a process", "--json"],
            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
        )  # fmt: skip
        optimized = subprocess.run(
            [LMVISOR, "optimize", str(_job_files(tmp_path)), "--json"],
            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["module_id"] == "qa"
        assert optimized.returncode == 0, optimized.stderr
        assert json.loads(optimized.stdout)["status"] == "completed"

    def test_help_names_the_new_commands(self) -> None:
        """`lmvisor --help` lists run and optimize."""
        done = subprocess.run([LMVISOR, "--help"], capture_output=True, text=True, timeout=60)
        assert "run" in done.stdout and "optimize" in done.stdout
