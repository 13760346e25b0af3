"""Tests for lmvisor.server.program_stream: one run as events, and what closing it does."""

from __future__ import annotations

import asyncio
from typing import Any

from lmvisor.programs.lm import LMDelta
from lmvisor.server.program_stream import chunk_view, stream_run
from lmvisor.services.app import App
from lmvisor.services.modules import DEFAULT_TIMEOUT
from lmvisor.testing.lm_server import LMServer
from tests.server.test_programs import _execution_tasks

QA = {"module": "Predict", "signature": "question -> answer"}


class _FieldChunk:
    """A stand-in for the programs layer's `StreamResponse` (DSPy's field chunk)."""

    predict_name = "predict"
    signature_field_name = "answer"
    chunk = "Par"
    is_last_chunk = False


class _Status:
    message = "Calling tool search..."


class TestChunkView:
    def test_lm_text_is_a_token(self) -> None:
        """An `LMDelta` becomes a `token` event with its text and choice index."""
        message = chunk_view(LMDelta(text="He", index=1))
        assert message is not None
        assert (message.event, dict(message.data)) == ("token", {"text": "He", "index": 1})

    def test_field_chunks_and_status_messages(self) -> None:
        """A field chunk is a `chunk` event (predictor, field, text, last); a status, `status`."""
        chunk = chunk_view(_FieldChunk())
        status = chunk_view(_Status())
        assert chunk is not None and status is not None
        assert (chunk.event, dict(chunk.data)) == (
            "chunk",
            {"predict_name": "predict", "field": "answer", "chunk": "Par", "is_last_chunk": False},
        )
        assert (status.event, dict(status.data)) == ("status", {"message": _Status.message})

    def test_anything_else_is_skipped(self) -> None:
        """An item the stream does not know is not sent."""
        assert chunk_view(object()) is None


class TestStreamRun:
    async def test_closing_the_stream_cancels_the_run(self, app: App, lm_server: LMServer) -> None:
        """A caller that stops reading after the first token cancels the run at once: the
        close does not wait for the rest of the LM's stream."""
        many = {"module": "Predict", "signature": "question -> a, b, c, d, e, f, g, h"}
        await app.register("qa", many)
        lm_server.chunk_delay = 0.3  # the whole answer takes about 5 s to stream
        stream = stream_run(app, "qa", {"question": "leave early"}, timeout=DEFAULT_TIMEOUT)
        first = await asyncio.wait_for(anext(stream), 30)
        assert first.event == "chunk"
        assert _execution_tasks()
        # Waiting for the LM's stream would take seconds more: the bound tells the two apart
        # with room to spare for a loaded machine (a close takes milliseconds).
        await asyncio.wait_for(stream.aclose(), 2.0)
        assert _execution_tasks() == []

    async def test_the_prediction_ends_the_stream(self, app: App) -> None:
        """The last event is the run's result."""
        await app.register("qa", QA)
        events: list[Any] = [
            message async for message in stream_run(app, "qa", {"question": "q"}, timeout=None)
        ]
        assert events[-1].event == "prediction"
        assert events[-1].data["module_id"] == "qa"
