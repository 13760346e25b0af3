"""Embedding lmvisor: a ChainOfThought program run by the application tree in your own process.

It loads the configuration (defaults, ./lmvisor.toml, LMVISOR_* and the vendor
key variables), boots the application tree (`open_app`: cache, one provider
actor per reachable vendor, module manager), registers a ChainOfThought
program, runs it twice through the ModuleManager (the second answer comes
from the cache), and prints the prediction, its usage, its events and the
supervision tree.

With no vendor key configured it says so and uses lmvisor's own loopback LM
server (`lmvisor.testing.LMServer`, the vendors' wire formats): nothing
leaves this machine.
"""

from __future__ import annotations

import asyncio
import sys

from lmvisor.config import load_config
from lmvisor.programs import ChainOfThought
from lmvisor.services import open_app

QUESTION = "What is the capital of France?"


async def main() -> int:
    async with open_app(load_config(), namespace="make-run", loopback_lm="if_no_key") as app:
        if app.notice:
            print(app.notice + "\n")
        await app.register("qa", ChainOfThought("question -> answer"))
        first = await app.run("qa", {"question": QUESTION}, correlation_id="make-run-1")
        again = await app.run("qa", {"question": QUESTION})
        prediction = first.prediction
        print(f"model:      {app.default_model}")
        print(f"question:   {QUESTION}")
        print(f"reasoning:  {prediction.reasoning}")
        print(f"answer:     {prediction.answer}")
        usage = prediction.usage
        print(
            f"usage:      {usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
            f" = {usage.total_tokens} tokens; cost: {_money(first.cost_usd)}"
        )
        print(f"again:      cached={again.cached} cost={_money(again.cost_usd)}")
        events = await app.events.query(correlation_id="make-run-1")
        kinds = [e.type for e in events]
        print(f"events:     {kinds.count('lm_request')} lm_request event(s) recorded: {kinds}")
        print("\nsupervision tree:")
        print(app.tree().render())
    return 0


def _money(cost: float | None) -> str:
    return "unknown (no price for this model)" if cost is None else f"${cost:.6f}"


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
