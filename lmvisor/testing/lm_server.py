"""The loopback LM: an HTTP server speaking OpenAI's and Anthropic's wire formats.

`LMServer` listens on 127.0.0.1 (a free port by default) and answers, deterministically
and in the format the request asks for, what the vendors' APIs answer:

- `POST /v1/chat/completions`: OpenAI Chat Completions, plain or SSE (`stream`,
  `stream_options.include_usage`), `n`, `response_format` (json_schema, json_object),
  `tools` / `tool_choice`; bearer auth checked only when `api_key` is set.
- `POST /v1/messages`: Anthropic Messages (needs `x-api-key` and `anthropic-version`;
  `max_tokens` required), plain or SSE with the full event sequence, `tools`.
- `POST /v1/embeddings`: OpenAI embeddings, deterministic unit vectors (`_lm_parts`).
- Content parts (images, audio, files; Anthropic images and documents) are validated
  as the vendors do; `reasoning_effort` / `thinking` add reasoning to the answer.
- `GET /v1/models` and `GET /v1/models/{id}` (OpenAI's shapes; Anthropic's when an
  `anthropic-version` header is sent), `GET /stats` (`LMServerStats` as JSON).
- Control, for a server in another process: `POST /_control/faults` (a FaultRule or a
  list of them as JSON), `DELETE /_control/faults`, `POST /_control/settings`
  (`{"latency": s, "jitter": s}`), `POST /_control/reset-stats`.

Answers depend only on the request (see `_lm_answers`): a DSPy ChatAdapter prompt gets
each output field in its `[[ ## name ## ]]` marker with a value of the declared type,
then `[[ ## completed ## ]]`; an XMLAdapter prompt gets each output field between its
`<name>` tags (nested XML for lists, dicts and models, see `_lm_xml`); a JSON request
gets JSON valid against its schema (or an object of the DSPy output fields); tools get a
call of the first (or the chosen) tool with arguments built from its schema; anything
else gets `"answer <hash8> re: <text>"`.
Usage is about one token per four characters. `max_tokens` cuts the text ("length" /
"max_tokens"); stop sequences cut it too.

Every chat request that passes validation waits `latency` plus a uniform `[0, jitter)`
before its first byte, then may get a fault (see `FaultRule`). Unknown models get the
vendor's 404; a model entry ending in `*` matches by prefix.

Run it alone with `python -m lmvisor.testing.lm_server [--port N] [--latency S] [--lean]`:
the first line printed is its URL; SIGINT or SIGTERM stop it. `--lean` serves OpenAI chat
completions only (plain and SSE, the same answers), over a bare asyncio.Protocol that
spends a third of the CPU per request, for throughput benches (see `_lm_lean`); it has no
faults, no Anthropic API and only the request counters of `/stats`.
"""

from __future__ import annotations

import enum
import itertools
import json
import random
import sys
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self, final

from aiohttp import web

from lmvisor.runtime.clock import Clock, SystemClock
from lmvisor.testing._lm_faults import FaultBook, FaultRule, fault_rule_from_dict
from lmvisor.testing._lm_http import abort, error_response, rejected_response, send_answer
from lmvisor.testing._lm_parts import check_anthropic_blocks, check_openai_parts, embeddings_answer
from lmvisor.testing._lm_requests import (
    Ask,
    Rejected,
    compose,
    parse_anthropic,
    parse_openai,
    tool_call_id,
)
from lmvisor.testing._lm_wire import model_body, models_body

__all__ = ["DEFAULT_MODELS", "FaultRule", "LMServer", "LMServerStats", "main"]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-5-mini",
    "o3-mini",
    "claude-3-5-haiku-latest",
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
    "llama3",
    "gpt-*",
    "o1*",
    "o3*",
    "o4*",
    "claude-*",
    "llama*",
    "qwen*",
    "mistral*",
    "gemma*",
    "phi*",
    "test*",
    "loopback*",
)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_BODY = 64 * 1024 * 1024
_BACKLOG = 4096
_STOP_TIMEOUT = 1.0


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class LMServerStats:
    """What the server has served since it started (or since `reset_stats()`).

    Attributes:
        requests: requests received (reads of `/stats` are never counted anywhere).
        in_flight: requests being handled right now.
        peak_in_flight: the most handled at once.
        by_path: requests per URL path.
        by_status: responses per HTTP status (a dropped connection counts as 0).
        faults_injected: fault rules applied.
        faults_by_kind: fault rules applied, per `FaultRule.kind`.
    """

    requests: int
    in_flight: int
    peak_in_flight: int
    by_path: Mapping[str, int]
    by_status: Mapping[int, int]
    faults_injected: int
    faults_by_kind: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (status keys become strings)."""
        data = asdict(self)
        data["by_path"] = dict(self.by_path)
        data["by_status"] = {str(k): v for k, v in self.by_status.items()}
        data["faults_by_kind"] = dict(self.faults_by_kind)
        return data


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@final
class LMServer:
    """A loopback OpenAI + Anthropic server with deterministic answers and faults.

    Use `async with LMServer() as server:` (or `start()` / `stop()`); `server.url` is
    `"http://127.0.0.1:PORT"`: OpenAI clients take `url + "/v1"` as base URL,
    Anthropic clients take `url`. `latency`, `jitter` and `api_key` may be changed
    while it runs (a request's key is checked when it arrives).

    Args:
        host: interface to bind (loopback only in tests).
        port: TCP port; 0 picks a free one.
        latency: seconds to wait before each chat response's first byte.
        jitter: up to this many seconds more, uniform, from the seeded RNG.
        faults: rules tried in order for every chat request (see `FaultRule`).
        api_key: when set, the only key accepted (OpenAI bearer, Anthropic x-api-key).
        seed: seeds the fault and jitter RNGs.
        models: served model names; an entry ending in `*` matches by prefix.
        clock: sleeps for latency and chunk pacing (tests may pass a `MockClock`).
        chunk_delay: seconds between SSE events (0 sends a stream in one write).
        record: how many request bodies `last_requests()` keeps.

    Raises:
        ValueError: a negative latency, jitter, chunk_delay or record, a port out of
            range, or an empty model list.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        jitter: float = 0.0,
        faults: Sequence[FaultRule] = (),
        api_key: str | None = None,
        seed: int = 0,
        models: Sequence[str] = DEFAULT_MODELS,
        clock: Clock | None = None,
        chunk_delay: float = 0.0,
        record: int = 1000,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"LMServer.port must be in 0..65535, got {port!r}")
        if not models or not all(isinstance(m, str) and m for m in models):
            raise ValueError(f"LMServer.models must be non-empty strings, got {models!r}")
        if record < 0:
            raise ValueError(f"LMServer.record must be >= 0, got {record!r}")
        self._host, self._port = host, port
        self.latency, self.jitter, self.chunk_delay = latency, jitter, chunk_delay
        self._faults = FaultBook(faults, seed=seed)
        self._jitter_rng = random.Random(seed + 1)
        self._api_key = api_key
        self._models = tuple(models)
        self._exact_models = frozenset(m for m in models if not m.endswith("*"))
        self._prefixes = tuple(m[:-1] for m in models if m.endswith("*"))
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._recorded: deque[dict[str, Any]] = deque(maxlen=record)
        self._seq = itertools.count(1)
        self._state = _State.NEW
        self._runner: web.AppRunner | None = None
        self._bound_port = 0
        self._in_flight = 0
        self.reset_stats()

    # -- settings ---------------------------------------------------------------

    @property
    def api_key(self) -> str | None:
        """The only key accepted (None: any); change it to rotate a key as a vendor does."""
        return self._api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self._api_key = value

    @property
    def latency(self) -> float:
        """Seconds every chat response waits before its first byte."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = _non_negative("latency", value)

    @property
    def jitter(self) -> float:
        """Upper bound of the uniform extra wait added to `latency`."""
        return self._jitter

    @jitter.setter
    def jitter(self, value: float) -> None:
        self._jitter = _non_negative("jitter", value)

    @property
    def chunk_delay(self) -> float:
        """Seconds between SSE events (0: the whole stream in one write)."""
        return self._chunk_delay

    @chunk_delay.setter
    def chunk_delay(self, value: float) -> None:
        self._chunk_delay = _non_negative("chunk_delay", value)

    @property
    def models(self) -> tuple[str, ...]:
        """The served model names and prefix patterns."""
        return self._models

    @property
    def faults(self) -> list[FaultRule]:
        """The fault rules not yet spent, in the order they are tried."""
        return self._faults.rules

    def add_fault(self, rule: FaultRule) -> None:
        """Append a fault rule; it applies from the next request on.

        Raises:
            TypeError: `rule` is not a FaultRule.
        """
        self._faults.add(rule)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._faults.clear()

    # -- lifecycle --------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://HOST:PORT` of the running server.

        Raises:
            RuntimeError: the server has not been started.
        """
        if self._state is _State.NEW:
            raise RuntimeError("LMServer.url: the server is not started")
        return f"http://{self._host}:{self._bound_port}"

    @property
    def port(self) -> int:
        """The bound TCP port (0 before `start()`)."""
        return self._bound_port

    async def start(self) -> None:
        """Bind and start serving; returns once the port accepts connections.

        Raises:
            RuntimeError: the server was already started.
            OSError: the port could not be bound.
        """
        if self._state is not _State.NEW:
            raise RuntimeError(f"LMServer.start: the server is {self._state.value}")
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[self._track])
        self._routes(app)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_STOP_TIMEOUT
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, backlog=_BACKLOG)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])
        self._state = _State.RUNNING

    async def stop(self) -> None:
        """Stop listening and close every connection (in-flight requests get up to 1 s).

        Idempotent: stopping a stopped (or never started) server does nothing.
        """
        runner, self._runner = self._runner, None
        if self._state is _State.RUNNING:
            self._state = _State.STOPPED
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- observation ------------------------------------------------------------

    def stats(self) -> LMServerStats:
        """A snapshot of the counters."""
        return LMServerStats(
            requests=self._requests,
            in_flight=self._in_flight,
            peak_in_flight=self._peak,
            by_path=dict(self._by_path),
            by_status=dict(self._by_status),
            faults_injected=sum(self._faults_by_kind.values()),
            faults_by_kind=dict(self._faults_by_kind),
        )

    def reset_stats(self) -> None:
        """Zero the counters (the peak restarts from the current in-flight count)."""
        self._requests = 0
        self._peak = self._in_flight
        self._by_path: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._faults_by_kind: Counter[str] = Counter()

    def last_requests(self, n: int | None = None) -> list[dict[str, Any]]:
        """The last `n` (default: all kept) chat request bodies, oldest first, as parsed JSON.

        Raises:
            ValueError: `n` is negative.
        """
        if n is not None and n < 0:
            raise ValueError(f"last_requests: n must be >= 0, got {n!r}")
        items = list(self._recorded)
        return items if n is None else items[max(0, len(items) - n) :]

    def __repr__(self) -> str:
        where = self.url if self._state is not _State.NEW else "not started"
        return (
            f"<LMServer {self._state.value} {where} in_flight={self._in_flight} "
            f"requests={self._requests} latency={self._latency} faults={len(self.faults)}>"
        )

    # -- HTTP plumbing ----------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_post("/v1/embeddings", self._openai_embeddings)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model}", self._get_model)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/_control/faults", self._control_add_faults)
        app.router.add_delete("/_control/faults", self._control_clear_faults)
        app.router.add_post("/_control/settings", self._control_settings)
        app.router.add_post("/_control/reset-stats", self._control_reset_stats)

    @web.middleware
    async def _track(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Count the request, its path and status, and how many run at once."""
        path = request.path
        if path == "/stats":
            return await handler(request)
        self._requests += 1
        self._by_path[path] += 1
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        status = 0
        try:
            response = await handler(request)
            transport = request.transport
            status = response.status if transport is not None and not transport.is_closing() else 0
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._in_flight -= 1
            self._by_status[status] += 1

    async def _read_json(self, request: web.Request) -> Any:
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Rejected(
                status=400, message=f"We could not parse the JSON body of your request: {exc}"
            ) from exc
        if isinstance(body, dict):
            self._recorded.append(body)
        return body

    def _check_model(self, ask: Ask) -> None:
        if ask.model in self._exact_models or ask.model.startswith(self._prefixes):
            return
        message = (
            f"The model `{ask.model}` does not exist or you do not have access to it."
            if ask.api == "openai"
            else f"model: {ask.model}"
        )
        raise Rejected(status=404, message=message, param="model", code="model_not_found")

    # -- OpenAI -----------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        seq = next(self._seq)
        if self._api_key is not None and (
            request.headers.get("Authorization") != f"Bearer {self._api_key}"
        ):
            return error_response("openai", 401, seq)
        try:
            body = await self._read_json(request)
            ask = parse_openai(body)
            check_openai_parts(body["messages"])
            self._check_model(ask)
        except Rejected as exc:
            return rejected_response("openai", exc, seq)
        return await self._serve(request, ask, seq)

    async def _openai_embeddings(self, request: web.Request) -> web.StreamResponse:
        seq = next(self._seq)
        if self._api_key is not None and (
            request.headers.get("Authorization") != f"Bearer {self._api_key}"
        ):
            return error_response("openai", 401, seq)
        try:
            answer = embeddings_answer(await self._read_json(request))
        except Rejected as exc:
            return rejected_response("openai", exc, seq)
        return web.json_response(answer)

    # -- Anthropic --------------------------------------------------------------

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        seq = next(self._seq)
        refusal = self._anthropic_auth(request)
        if refusal is not None:
            status, message = refusal
            return error_response("anthropic", status, seq, message=message)
        try:
            body = await self._read_json(request)
            ask = parse_anthropic(body)
            check_anthropic_blocks(body["messages"])
            self._check_model(ask)
        except Rejected as exc:
            return rejected_response("anthropic", exc, seq)
        return await self._serve(request, ask, seq)

    def _anthropic_auth(self, request: web.Request) -> tuple[int, str] | None:
        key = request.headers.get("x-api-key")
        if not key:
            bearer = request.headers.get("Authorization", "")
            key = bearer[7:] if bearer.startswith("Bearer ") else ""
        if not key:
            return 401, "x-api-key header is required"
        if self._api_key is not None and key != self._api_key:
            return 401, "invalid x-api-key"
        if not request.headers.get("anthropic-version"):
            return 400, "anthropic-version: header is required"
        return None

    # -- answering --------------------------------------------------------------

    async def _serve(self, request: web.Request, ask: Ask, seq: int) -> web.StreamResponse:
        """Wait the latency, apply the fault this request draws, then answer."""
        fault = self._faults.pick(api=ask.api, model=ask.model, stream=ask.stream)
        if fault is not None:
            self._faults_by_kind[fault.kind] += 1
        if fault is not None or self._latency or self._jitter:  # else nothing to wait for
            await self._wait(fault)
        if fault is not None and fault.kind == "status":
            return error_response(
                ask.api,
                fault.status,
                seq,
                message=fault.message,
                code=fault.code,
                retry_after=fault.retry_after,
                retry_after_ms=fault.retry_after_ms,
            )
        if fault is not None and fault.kind == "drop":
            abort(request)
            return web.Response(status=499)
        choices = compose(ask, ids=self._tool_ids(ask, seq))
        return await send_answer(
            request,
            ask,
            choices,
            seq=seq,
            fault=fault,
            clock=self._clock,
            chunk_delay=self._chunk_delay,
        )

    @staticmethod
    def _tool_ids(ask: Ask, seq: int) -> list[str]:
        """One tool-call id per choice; only a tool call shows it, so others skip the hash."""
        if ask.tool is None:
            return [""] * ask.n
        prefix = "call_" if ask.api == "openai" else "toolu_"
        return [tool_call_id(prefix, seq * 1000 + i) for i in range(ask.n)]

    async def _wait(self, fault: FaultRule | None) -> None:
        delay = self._latency
        if self._jitter:
            delay += self._jitter_rng.uniform(0.0, self._jitter)
        if fault is not None and fault.kind == "slow_first_byte":
            delay += fault.delay
        if delay > 0:
            await self._clock.sleep(delay)

    # -- models, stats, control -------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        names = [m for m in self._models if not m.endswith("*")]
        anthropic = bool(request.headers.get("anthropic-version"))
        return web.json_response(models_body(names, anthropic=anthropic))

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["model"]
        api = "anthropic" if request.headers.get("anthropic-version") else "openai"
        if name not in self._exact_models and not name.startswith(self._prefixes):
            message = f"The model `{name}` does not exist or you do not have access to it."
            seq = next(self._seq)
            return error_response(api, 404, seq, message=message, code="model_not_found")
        return web.json_response(model_body(name, anthropic=api == "anthropic"))

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats().to_dict())

    async def _control_add_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = json.loads(await request.read())
            items = payload if isinstance(payload, list) else [payload]
            rules = [fault_rule_from_dict(item) for item in items]
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for rule in rules:
            self.add_fault(rule)
        return web.json_response({"faults": len(self.faults)})

    async def _control_clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.clear_faults()
        return web.json_response({"faults": 0})

    async def _control_settings(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = json.loads(await request.read())
            if not isinstance(payload, dict):
                raise ValueError("settings: a JSON object is required")
            for name in ("latency", "jitter", "chunk_delay"):
                if name in payload:
                    setattr(self, name, payload[name])
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(
            {"latency": self._latency, "jitter": self._jitter, "chunk_delay": self._chunk_delay}
        )

    async def _control_reset_stats(self, request: web.Request) -> web.StreamResponse:
        self.reset_stats()
        return web.json_response(self.stats().to_dict())


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"LMServer.{name} must be a number >= 0, got {value!r}")
    return float(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a server until SIGINT/SIGTERM; print its URL first. Returns the exit status.

    Raises this process's soft open-file limit (up to the hard limit) so thousands of
    connections fit. A bad `--fault` or setting prints the reason to stderr and returns 2.
    """
    from lmvisor.testing._lm_cli import run

    return run(argv, LMServer)


if __name__ == "__main__":
    sys.exit(main())
