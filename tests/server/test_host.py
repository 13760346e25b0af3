"""Tests for lmvisor.server.host: loading the `--app` hook and opening the served context."""

from __future__ import annotations

import pytest

from lmvisor.config.schema import LmvisorConfig
from lmvisor.server.context import ServerContext
from lmvisor.server.errors import AppHookFailed, AppLoadError
from lmvisor.server.host import load_register, open_context
from tests.server._daemon_app import register


class TestLoadRegister:
    def test_loads_a_function(self) -> None:
        """`pkg.module:function` resolves to that function."""
        assert load_register("tests.server._daemon_app:register") is register

    def test_dotted_attributes(self) -> None:
        """The attribute part may be dotted (`module:Class.method`)."""
        hook = load_register("tests.server._daemon_app:Fragile.crash")
        assert callable(hook)

    @pytest.mark.parametrize(
        ("spec", "problem"),
        [
            ("no_colon", r"expected 'pkg\.module:function'$"),
            (":register", r"expected 'pkg\.module:function'$"),
            ("tests.server.nope:register", r"import failed: ModuleNotFoundError: "),
            ("tests.server._daemon_app:nope", r"no attribute 'nope'$"),
            ("tests.server._daemon_app:Echo.model_config", r"not callable$"),
        ],
    )
    def test_bad_specs_are_typed_errors(self, spec: str, problem: str) -> None:
        """Malformed specs, failed imports, missing or non-callable targets raise AppLoadError."""
        with pytest.raises(AppLoadError, match=rf"^cannot load app hook '{spec}': {problem}"):
            load_register(spec)


class TestOpenContext:
    async def test_hook_registers_routes_and_children(self) -> None:
        """The hook runs once with the context, before it is yielded."""
        async with open_context(LmvisorConfig(), register=register) as context:
            assert context.runtime.whereis("fragile") is not None
            assert len(context.routers) == 1

    async def test_failing_hook_is_app_hook_failed(self) -> None:
        """A hook that raises surfaces as AppHookFailed with the cause chained."""

        def broken(context: ServerContext) -> None:
            raise KeyError("missing program")

        with pytest.raises(AppHookFailed, match=r"^app hook 'mine' failed: KeyError") as caught:
            async with open_context(LmvisorConfig(), register=broken, register_name="mine"):
                pass
        assert isinstance(caught.value.__cause__, KeyError)
