"""The main job (`make run`): a ChainOfThought program on a supervised lmvisor runtime.

It loads the configuration (defaults, ./lmvisor.toml, LMVISOR_* and the vendor
key variables), starts a runtime with one provider actor per reachable vendor,
runs a ChainOfThought program through the router LM, and prints the
prediction, its usage and the supervision tree.

With no vendor key configured it says so and uses lmvisor's own loopback LM
server (`lmvisor.testing.LMServer`, OpenAI wire format) as the provider
"local": nothing leaves this machine.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack

from lmvisor.config import LmvisorConfig, load_config, replace_value
from lmvisor.programs import ChainOfThought, context
from lmvisor.runtime import Runtime
from lmvisor.services import start_lm_providers
from lmvisor.services.lm_services import reachable
from lmvisor.testing import LMServer

QUESTION = "What is the capital of France?"
LOCAL_MODEL = "local/llama3"


def _vendor_model(config: LmvisorConfig) -> str | None:
    """The configured default model, if its vendor can be reached with the keys at hand."""
    vendor = config.modules.default_lm.partition("/")[0]
    provider = config.providers.get(vendor)
    if provider is not None and reachable(provider):
        return config.modules.default_lm
    return None


async def main() -> int:
    config = load_config()
    async with AsyncExitStack() as stack:
        model = _vendor_model(config)
        if model is None:
            server = await stack.enter_async_context(LMServer())
            config = replace_value(config, "providers.local.base_url", server.url + "/v1")
            model = LOCAL_MODEL
            print(
                "No vendor API key is configured (OPENAI_API_KEY / ANTHROPIC_API_KEY), so the\n"
                f"provider 'local' is lmvisor's embedded loopback LM server at {server.url}.\n"
                "Its answers are deterministic stand-ins, not a real model's.\n"
            )
        runtime = await stack.enter_async_context(Runtime.open(config, namespace="make-run"))
        services = await start_lm_providers(runtime, config)
        program = ChainOfThought("question -> answer")
        with context(lm=services.router(model)):
            prediction = await program(question=QUESTION)
        print(f"model:      {model}")
        print(f"question:   {QUESTION}")
        print(f"reasoning:  {prediction.reasoning}")
        print(f"answer:     {prediction.answer}")
        usage = prediction.usage
        print(
            f"usage:      {usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
            f" = {usage.total_tokens} tokens; cost: {_money(prediction.cost)}"
        )
        events = runtime.events.ring.query(type="lm_request")
        print(f"events:     {len(events)} lm_request event(s) recorded")
        print("\nsupervision tree:")
        print(runtime.tree().render())
    return 0


def _money(cost: float | None) -> str:
    return "unknown (no price for this model)" if not cost else f"${cost:.6f}"


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
