"""Which model an application talks to by default, and lmvisor's loopback LM as an explicit opt-in.

`choose_default_model(config)` keeps `modules.default_lm` when its vendor can
be reached (a base URL, and a key where the vendor needs one); otherwise it
picks the first configured vendor that can be reached, with its
`default_model`, and says so in its notice. So a machine with only
ANTHROPIC_API_KEY runs the same program on Anthropic.

`loopback_config(config, url)` points every provider at lmvisor's own
loopback LM server (`lmvisor.testing.LMServer`, deterministic stand-in
answers in the vendors' wire formats): nothing leaves the machine. The
application uses it only when asked (`open_app(..., loopback_lm=...)`),
never as a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, final

from pydantic import SecretStr

from lmvisor.config.schema import LmvisorConfig
from lmvisor.services.lm_services import reachable

__all__ = ["LOOPBACK_NOTICE", "LMChoice", "LoopbackMode", "choose_default_model", "loopback_config"]

LoopbackMode = Literal["never", "if_no_key", "always"]
"""When `open_app` answers from the loopback LM: never, when no vendor key is set, always."""

LOOPBACK_NOTICE: Final = (
    "lmvisor: no LM vendor is reachable (set OPENAI_API_KEY or ANTHROPIC_API_KEY), so every"
    " provider points at lmvisor's own loopback LM server at {url}: its answers are"
    " deterministic stand-ins, not a real model's, and nothing leaves this machine."
)
_PLACEHOLDER_KEY: Final = SecretStr("loopback")


@final
@dataclass(frozen=True, slots=True)
class LMChoice:
    """The default model (None: no vendor reachable) and what to tell the user about it."""

    model: str | None
    notice: str | None


def choose_default_model(config: LmvisorConfig) -> LMChoice:
    """`modules.default_lm` if its vendor is reachable, else another reachable vendor's default."""
    wanted = config.modules.default_lm
    vendor = wanted.partition("/")[0]
    provider = config.providers.get(vendor)
    if provider is not None and reachable(provider):
        return LMChoice(wanted, None)
    for name, other in config.providers.items():
        if reachable(other) and other.default_model:
            model = f"{name}/{other.default_model}"
            return LMChoice(
                model,
                f"lmvisor: {vendor!r} (modules.default_lm = {wanted!r}) has no API key or URL;"
                f" programs use {model!r} instead.",
            )
    return LMChoice(None, None)


def loopback_config(config: LmvisorConfig, url: str) -> LmvisorConfig:
    """`config` with every provider aimed at the loopback server at `url`.

    Each key is replaced by a placeholder: a real key is never sent to the loopback.
    """
    providers = {}
    for name, provider in config.providers.items():
        base = url if provider.kind == "anthropic" else url + "/v1"
        providers[name] = provider.model_copy(
            update={"base_url": base, "api_key": _PLACEHOLDER_KEY}
        )
    return config.model_copy(update={"providers": providers})
