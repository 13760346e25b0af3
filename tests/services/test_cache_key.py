"""Tests for lmvisor.services.cache_key: what enters a cache key, and what the vendor sees."""

from __future__ import annotations

from typing import Any

from lmvisor.programs.lm import LMRequest
from lmvisor.services.cache_key import cache_wanted, request_key, vendor_request

MESSAGES = [{"role": "user", "content": "2 + 2?"}]


def _request(**params: Any) -> LMRequest:
    return LMRequest(model="openai/gpt-4o-mini", messages=MESSAGES, params=params)


class TestRequestKey:
    def test_key_is_stable_and_ignores_param_order(self) -> None:
        """The same request gives the same sha256 key whatever the order of its params."""
        a = request_key(_request(temperature=0.0, max_tokens=10))
        b = request_key(_request(max_tokens=10, temperature=0.0))
        assert a == b
        assert a is not None and len(a) == 64

    def test_model_messages_and_sampling_params_enter_the_key(self) -> None:
        """Another model, message, temperature, n or tool list is another key."""
        base = request_key(_request(temperature=0.0))
        others = {
            request_key(LMRequest(model="openai/gpt-4o", messages=MESSAGES, params={})),
            request_key(LMRequest(model="openai/gpt-4o-mini", messages=[{"role": "user"}])),
            request_key(_request(temperature=0.7)),
            request_key(_request(temperature=0.0, n=3)),
            request_key(_request(temperature=0.0, tools=[{"type": "function"}])),
        }
        assert base not in others
        assert len(others) == 5

    def test_secrets_and_transport_params_stay_out(self) -> None:
        """api keys, headers, stream and timeout do not change the key."""
        plain = request_key(_request(temperature=0.0))
        noisy = request_key(
            _request(
                temperature=0.0,
                api_key="sk-secret",
                headers={"x": "y"},
                stream=True,
                stream_options={"include_usage": True},
                timeout=3,
                cache=True,
            )
        )
        assert plain == noisy

    def test_rollout_id_enters_the_key(self) -> None:
        """Two rollouts of one request are two entries, as in DSPy."""
        assert request_key(_request(rollout_id=1)) != request_key(_request(rollout_id=2))
        assert request_key(_request(rollout_id=1)) != request_key(_request())

    def test_non_json_params_have_no_key(self) -> None:
        """A request carrying a Python object is not cached."""
        assert request_key(_request(response_format=object())) is None


class TestControlParams:
    def test_cache_false_opts_out(self) -> None:
        """`cache=False` in the params means the caller does not want the cache."""
        assert cache_wanted(_request()) is True
        assert cache_wanted(_request(cache=False)) is False

    def test_vendor_never_sees_cache_or_rollout(self) -> None:
        """The control params are stripped before the request goes upstream."""
        request = _request(cache=False, rollout_id=3, temperature=1.0)
        assert dict(vendor_request(request).params) == {"temperature": 1.0}

    def test_request_without_control_params_is_passed_as_is(self) -> None:
        """Nothing is copied when there is nothing to strip."""
        request = _request(temperature=1.0)
        assert vendor_request(request) is request
