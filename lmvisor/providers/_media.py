"""Content parts (images, documents, audio) as each vendor takes them.

OpenAI takes the parts lmvisor's adapters write (`image_url`, `file`, `input_audio`) as
they are. Anthropic takes images (PNG, JPEG, GIF, WebP; at most 5 MB inline) and PDF or
plain-text documents; audio and uploaded-file ids have no Anthropic form and raise
`UnsupportedMedia` before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

from lmvisor.providers.errors import UnsupportedMedia

__all__ = ["anthropic_document", "anthropic_image", "unsupported_by_anthropic"]

_ANTHROPIC_IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_ANTHROPIC_IMAGE_BYTES: Final = 5 * 1024 * 1024


def _split_data_uri(uri: str) -> tuple[str, str] | None:
    if not uri.startswith("data:") or ";base64," not in uri:
        return None
    media, _, data = uri[5:].partition(";base64,")
    return media, data


def anthropic_image(part: Mapping[str, Any]) -> dict[str, Any]:
    """An `image_url` part as an Anthropic image block.

    Raises:
        ValueError: the part carries no URL.
        UnsupportedMedia: an inline image of a type or size Anthropic refuses.
    """
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise ValueError("image_url part must carry a url")
    inline = _split_data_uri(url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media, data = inline
    if media not in _ANTHROPIC_IMAGE_TYPES:
        raise UnsupportedMedia(
            provider="anthropic", detail=f"image type {media!r} is not supported"
        )
    size = len(data) * 3 // 4
    if size > _ANTHROPIC_IMAGE_BYTES:
        raise UnsupportedMedia(
            provider="anthropic",
            detail=f"an inline image of {size} bytes is over the limit of {_ANTHROPIC_IMAGE_BYTES}",
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}


def anthropic_document(part: Mapping[str, Any]) -> dict[str, Any]:
    """A `file` part as an Anthropic document block (PDF, or plain text).

    Raises:
        UnsupportedMedia: an uploaded file id, or a document type Anthropic refuses.
    """
    file = part.get("file")
    if not isinstance(file, Mapping):
        raise ValueError("file part must carry a file object")
    if file.get("file_id") and not file.get("file_data"):
        raise UnsupportedMedia(
            provider="anthropic", detail="uploaded file ids are not supported; send file_data"
        )
    inline = _split_data_uri(str(file.get("file_data") or ""))
    if inline is None:
        raise UnsupportedMedia(provider="anthropic", detail="file_data must be a base64 data URI")
    media, data = inline
    if media == "application/pdf":
        source = {"type": "base64", "media_type": media, "data": data}
    elif media == "text/plain":
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise UnsupportedMedia(
                provider="anthropic", detail="text/plain file_data is not base64 UTF-8"
            ) from None
        source = {"type": "text", "media_type": media, "data": text}
    else:
        raise UnsupportedMedia(
            provider="anthropic", detail=f"document type {media!r} is not supported"
        )
    block: dict[str, Any] = {"type": "document", "source": source}
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def unsupported_by_anthropic(part: Mapping[str, Any]) -> UnsupportedMedia:
    """The error for a part kind Anthropic has no block for (`input_audio`...)."""
    return UnsupportedMedia(
        provider="anthropic", detail=f"content parts of type {part.get('type')!r} are not supported"
    )
