"""The loopback LM's multi-modal, reasoning and embeddings pieces.

- Content parts are checked as the vendors check them: OpenAI's `text`, `image_url`,
  `input_audio` and `file` parts; Anthropic's `text`, `image`, `document`, `tool_use`
  and `tool_result` blocks. A malformed part is the vendor's 400, naming it.
- A request asking for reasoning (OpenAI-style `reasoning_effort`, Anthropic
  `thinking`) is answered with a deterministic reasoning text as well.
- `/v1/embeddings` answers with deterministic unit vectors: hashed word counts, so
  texts sharing words are near each other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import struct
from collections.abc import Mapping
from typing import Any, Final

from lmvisor.testing._lm_answers import estimate_tokens, stable_hash
from lmvisor.testing._lm_requests import Rejected

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "check_anthropic_blocks",
    "check_openai_parts",
    "embed",
    "embeddings_answer",
    "reasoning_text",
]

EMBEDDING_DIMENSIONS: Final = 64
"""The size of a loopback embedding unless the request asks for `dimensions`."""

_AUDIO_FORMATS: Final = frozenset({"wav", "mp3", "flac", "opus", "pcm16", "aac", "ogg", "webm"})
_ANTHROPIC_IMAGES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_ANTHROPIC_BLOCKS: Final = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)
_WORD: Final = re.compile(r"\w+")
_MAX_INPUTS: Final = 2048


def _bad(message: str, param: str) -> Rejected:
    return Rejected(status=400, message=message, param=param)


def _base64(data: Any, where: str) -> None:
    if not isinstance(data, str) or not data:
        raise _bad(f"{where}: must be a non-empty base64 string", where)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{where}: is not valid base64", where) from None


def _data_uri(uri: str, where: str, prefix: str) -> None:
    head, sep, data = uri.partition(",")
    if not sep or not head.startswith(f"data:{prefix}") or not head.endswith(";base64"):
        raise _bad(f"{where}: must be a base64 data URI of type {prefix}*", where)
    _base64(data, where)


def check_openai_parts(messages: list[Any]) -> None:
    """Check each message's content parts as Chat Completions does.

    Raises:
        Rejected: a part of an unknown type, or one whose fields are malformed.
    """
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            _openai_part(part, f"messages[{i}].content[{j}]")


def _openai_part(part: Any, where: str) -> None:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise _bad(f"{where}.text: must be a string", f"{where}.text")
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else None
        if not isinstance(url, str):
            raise _bad(f"{where}.image_url.url: a string is required", f"{where}.image_url.url")
        if url.startswith("data:"):
            _data_uri(url, f"{where}.image_url.url", "image/")
        elif not url.startswith(("http://", "https://")):
            raise _bad(f"{where}.image_url.url: must be an http(s) URL or a data URI", where)
    elif kind == "input_audio":
        audio = part.get("input_audio")
        audio = audio if isinstance(audio, Mapping) else {}
        _base64(audio.get("data"), f"{where}.input_audio.data")
        if audio.get("format") not in _AUDIO_FORMATS:
            param = f"{where}.input_audio.format"
            raise _bad(f"{param}: must be one of {sorted(_AUDIO_FORMATS)}", param)
    elif kind == "file":
        file = part.get("file")
        file = file if isinstance(file, Mapping) else {}
        if not file.get("file_data") and not file.get("file_id"):
            raise _bad(f"{where}.file: file_data or file_id is required", f"{where}.file")
        if file.get("file_data"):
            _data_uri(str(file["file_data"]), f"{where}.file.file_data", "")
    else:
        raise _bad(f"{where}.type: unknown content part type {kind!r}", f"{where}.type")


def check_anthropic_blocks(messages: list[Any]) -> None:
    """Check each message's content blocks as the Messages API does.

    Raises:
        Rejected: a block of an unknown type, or an image/document source malformed.
    """
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind not in _ANTHROPIC_BLOCKS:
                raise _bad(f"{where}.type: unknown block type {kind!r}", f"{where}.type")
            if kind in ("image", "document"):
                _anthropic_source(block.get("source"), kind, f"{where}.source")


def _anthropic_source(source: Any, kind: str, where: str) -> None:
    source = source if isinstance(source, Mapping) else {}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return
    if kind == "document" and source.get("type") == "text":
        if not isinstance(source.get("data"), str):
            raise _bad(f"{where}.data: a string is required", f"{where}.data")
        return
    if source.get("type") != "base64":
        raise _bad(f"{where}.type: must be base64 or url", f"{where}.type")
    media = source.get("media_type")
    allowed = _ANTHROPIC_IMAGES if kind == "image" else frozenset({"application/pdf"})
    if media not in allowed:
        raise _bad(f"{where}.media_type: must be one of {sorted(allowed)}", f"{where}.media_type")
    _base64(source.get("data"), f"{where}.data")


def reasoning_text(user: str) -> str:
    """The deterministic reasoning shown before an answer to `user`."""
    return f"Reasoning {stable_hash('reasoning', user)}: read the request, then answer it."


def embeddings_answer(body: Any) -> dict[str, Any]:
    """The `/v1/embeddings` answer to a request body (OpenAI's list shape).

    Raises:
        Rejected: a missing model, an input that is not a string or list of strings,
            or bad `dimensions` / `encoding_format`.
    """
    if not isinstance(body, dict):
        raise _bad("Request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: a non-empty string is required", "model")
    texts = _inputs(body.get("input"))
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
    if (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= 4096
    ):
        raise _bad("dimensions: must be an integer in 1..4096", "dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _bad("encoding_format: must be 'float' or 'base64'", "encoding_format")
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encoded(embed(text, dimensions), encoding),
        }
        for i, text in enumerate(texts)
    ]
    tokens = sum(estimate_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    """The vector as floats, or as base64 little-endian float32 (the OpenAI SDK's default)."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _inputs(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _bad("input: must be a string or a non-empty array of strings", "input")
    if len(texts) > _MAX_INPUTS:
        raise _bad(f"input: at most {_MAX_INPUTS} strings per request", "input")
    return texts


def embed(text: str, dimensions: int) -> list[float]:
    """A unit vector of hashed word counts (the empty text gets a fixed unit vector)."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [round(x / norm, 6) for x in vector]
