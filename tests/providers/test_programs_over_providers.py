"""Programs over real providers and the loopback server: native tool calls in each
vendor's format, images, native reasoning and field streaming, end to end.
"""

from __future__ import annotations

from typing import Any

from lmvisor.programs.adapters import ChatAdapter, JSONAdapter
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.history import History
from lmvisor.programs.lm import LMCapabilities
from lmvisor.programs.media import Image
from lmvisor.programs.predict import Predict
from lmvisor.programs.reasoning import Reasoning
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature
from lmvisor.programs.streaming import StreamListener, StreamResponse, streamify
from lmvisor.programs.tool import Tool
from lmvisor.programs.tool_calls import ToolCallResults, ToolCalls
from lmvisor.providers.anthropic import AnthropicClient
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.openai import OpenAIClient
from lmvisor.testing.lm_server import LMServer
from tests.programs._compat import Agent, Think, ToolChat
from tests.providers.conftest import KEY

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQ"
    "ABpfZFQAAAAABJRU5ErkJggg=="
)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def _tool_history() -> History:
    calls = ToolCalls([{"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}])
    results = ToolCallResults.from_tool_calls_and_values(calls, [{"sky": "clear"}])
    return History(
        [{"question": "Weather in Paris?", "calls": ToolCalls(calls.tool_calls, results)}]
    )


class Caption(Signature):
    image: Image = InputField()
    caption: str = OutputField()


class _Bound:
    """A provider as the LM of one model (what the router is, without services)."""

    def __init__(self, provider: Any, model: str, capabilities: LMCapabilities) -> None:
        self._provider, self.model, self.capabilities = provider, model, capabilities

    async def complete(self, request: Any) -> Any:
        return await self._provider.complete(request)

    def stream(self, request: Any) -> Any:
        return self._provider.stream(request)


class TestNativeToolCalls:
    async def test_openai_tools(self, oai: OpenAIClient, server: LMServer) -> None:
        """JSONAdapter sends OpenAI `tools`; the server's tool_calls parse to ToolCalls."""
        lm = _Bound(oai, "openai/gpt-4o-mini", LMCapabilities())
        with context(lm=lm, adapter=JSONAdapter()):
            pred = await Predict(Agent)(question="Weather in Paris?", tools=[Tool(get_weather)])
        body = server.last_requests(1)[0]
        assert body["tools"][0]["function"]["name"] == "get_weather"
        assert isinstance(pred.calls, ToolCalls)
        assert [c.name for c in pred.calls.tool_calls] == ["get_weather"]
        assert isinstance(pred.calls.tool_calls[0].args["city"], str)
        assert (await pred.calls.execute([Tool(get_weather)]))[0].startswith("sunny in")

    async def test_anthropic_tool_use(self, claude: AnthropicClient, server: LMServer) -> None:
        """The same program over Anthropic sends `tools` with input_schema; tool_use comes back."""
        lm = _Bound(claude, "anthropic/claude-haiku-4-5", LMCapabilities(json_schema=False))
        with context(lm=lm, adapter=ChatAdapter(use_native_function_calling=True)):
            pred = await Predict(Agent)(question="Weather in Paris?", tools=[Tool(get_weather)])
        body = server.last_requests(1)[0]
        assert body["tools"][0]["name"] == "get_weather"
        assert "input_schema" in body["tools"][0]
        assert [c.name for c in pred.calls.tool_calls] == ["get_weather"]


class TestHistoryToolTurns:
    async def test_openai_tool_messages(self, oai: OpenAIClient, server: LMServer) -> None:
        """Earlier tool calls and results reach OpenAI as tool_calls and tool messages."""
        lm = _Bound(oai, "openai/gpt-4o-mini", LMCapabilities())
        with context(lm=lm, adapter=JSONAdapter()):
            pred = await Predict(ToolChat)(
                question="And Rome?", history=_tool_history(), tools=[Tool(get_weather)]
            )
        messages = server.last_requests(1)[0]["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
        assert messages[2]["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
        assert messages[3] == {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"sky": "clear"}',
        }
        assert isinstance(pred.calls, ToolCalls)

    async def test_anthropic_tool_use_and_result_blocks(
        self, claude: AnthropicClient, server: LMServer
    ) -> None:
        """Over Anthropic the same turns become tool_use and tool_result blocks."""
        lm = _Bound(claude, "anthropic/claude-haiku-4-5", LMCapabilities(json_schema=False))
        with context(lm=lm, adapter=ChatAdapter(use_native_function_calling=True)):
            await Predict(ToolChat)(
                question="And Rome?", history=_tool_history(), tools=[Tool(get_weather)]
            )
        messages = server.last_requests(1)[0]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "user"]
        (use,) = messages[1]["content"]
        assert (use["type"], use["id"], use["input"]) == ("tool_use", "call_1", {"city": "Paris"})
        (result,) = messages[2]["content"]
        assert (result["type"], result["tool_use_id"]) == ("tool_result", "call_1")
        assert result["content"] == '{"sky": "clear"}'


class TestMediaAndReasoning:
    async def test_image_to_anthropic(self, claude: AnthropicClient, server: LMServer) -> None:
        """An Image input reaches Anthropic as an image block between text blocks."""
        lm = _Bound(claude, "anthropic/claude-haiku-4-5", LMCapabilities(json_schema=False))
        with context(lm=lm):
            pred = await Predict(Caption)(image=Image(PNG))
        blocks = server.last_requests(1)[0]["messages"][0]["content"]
        assert [b["type"] for b in blocks] == ["text", "image", "text"]
        assert pred.caption

    async def test_native_reasoning(self, oai: OpenAIClient, server: LMServer) -> None:
        """A reasoning model gets reasoning_effort and the Reasoning output its content."""
        lm = _Bound(oai, "openai/o3-mini", LMCapabilities(reasoning=True))
        with context(lm=lm):
            pred = await Predict(Think)(question="2+2?")
        assert server.last_requests(1)[0]["reasoning_effort"] == "low"
        assert isinstance(pred.reasoning, Reasoning)
        assert str(pred.reasoning).startswith("Reasoning ")
        assert pred.answer


class TestStreamingOverProviders:
    async def test_field_chunks_from_sse(self, server: LMServer) -> None:
        """A streamed program over an SSE stream yields the answer field in pieces."""
        provider = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1", timeout=5.0)
        )
        lm = _Bound(provider, "openai/gpt-4o-mini", LMCapabilities())
        program = streamify(
            Predict("question -> answer"), stream_listeners=[StreamListener("answer")]
        )
        try:
            with context(lm=lm):
                items = [item async for item in program(question="Capital of France?")]
        finally:
            await provider.aclose()
        chunks = [i.chunk for i in items if isinstance(i, StreamResponse)]
        assert "".join(chunks) == items[-1].answer
