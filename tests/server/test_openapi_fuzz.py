"""schemathesis against the daemon's served OpenAPI document: no 5xx, answers match the spec.

Bounded for `make test` (LMVISOR_FUZZ_EXAMPLES, default 10 per operation);
`make fuzz` runs the same test with many more examples.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.server.conftest import DaemonProcess, LMProcess, start_daemon

_EXAMPLES = int(os.environ.get("LMVISOR_FUZZ_EXAMPLES", "10"))
# A followed event stream runs until its deadline: keep every case short.
_TIMEOUT = 0.3
# A schema cannot state every rule a body must follow (a signature's grammar, a program
# id that exists, a metric the daemon allows): such a schema-valid body is rightly a 4xx.
# Every other check holds: documented status and media type, body schema, never a 5xx.
_EXCLUDED = [positive_data_acceptance]
# Query values are strings on the wire: a "boolean" mutation of the `type` list sends
# "true", a valid event type, which schemathesis then reports as accepted negative data
# (its array-of-strings query parameter false positive, schemathesis#3056 / #3962).
_STRING_LIST_QUERIES = frozenset({"/v1/events"})


@pytest.fixture(scope="module")
def fuzzed_daemon(lm_process: LMProcess) -> Iterator[DaemonProcess]:
    """A daemon without test routes, with a program `qa` registered, for the fuzzer."""
    daemon = start_daemon(
        "--app",
        "tests.server._daemon_app:register_qa",
        # Without a header a request gets this deadline: a followed stream ends quickly.
        LMVISOR_SERVER__REQUEST_TIMEOUT=str(_TIMEOUT),
        **lm_process.env(),
    )
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.signal(signal.SIGTERM)
        try:
            assert daemon.wait() == 0
        finally:
            daemon.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_daemon: DaemonProcess) -> BaseSchema:
    """The OpenAPI document the daemon serves."""
    return schemathesis.openapi.from_url(fuzzed_daemon.url + "/openapi.json")


def _bounded(headers: dict[str, str] | None) -> dict[str, str]:
    """The case's headers with any valid request timeout set to `_TIMEOUT`.

    A valid but tiny timeout would rightly end in a 504 and a huge one would let a
    followed stream run for an hour; invalid values pass untouched (they must be 400s),
    and an absent header stays absent (the daemon's default deadline is `_TIMEOUT`).
    """
    bounded = dict(headers or {})
    raw = bounded.get("X-Request-Timeout")
    if raw is None:
        return bounded
    try:
        seconds = float(raw)
    except ValueError:
        return bounded
    if math.isfinite(seconds) and seconds > 0:
        bounded["X-Request-Timeout"] = str(_TIMEOUT)
    return bounded


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms(api_schema: BaseSchema, mode: GenerationMode) -> None:
    """Any generated request (valid or not) gets a documented, well-formed answer, never a 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 18

    @hypothesis.given(case=api_schema.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=_EXAMPLES * len(operations),
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(case: Case) -> None:
        excluded = list(_EXCLUDED)
        if case.operation.path in _STRING_LIST_QUERIES:
            excluded.append(negative_data_rejection)
        case.call_and_validate(headers=_bounded(case.headers), timeout=30, excluded_checks=excluded)

    call()
