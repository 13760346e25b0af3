"""`Image`, `Audio`, `File`: multi-modal input values, rendered as DSPy 3.4.1 renders them.

Each formats to one OpenAI content part (`image_url`, `input_audio`, `file`); the adapter
puts it between the text parts of the user message (`custom_types`). Providers translate
the parts to their vendor's blocks, or refuse a kind their vendor does not take.

Construction never touches the network: an image URL stays a URL for the vendor to fetch;
`from_path` reads a local file; bytes are encoded inline. Inline data is bounded
(`MAX_INLINE_BYTES`); a bigger or unrecognised value raises `MediaError`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self, final
from urllib.parse import urlparse

from lmvisor._files import read_regular_file
from lmvisor.programs._type_docs import AUDIO_DESCRIPTION, FILE_DESCRIPTION
from lmvisor.programs.custom_types import Type
from lmvisor.programs.errors import MediaError

__all__ = ["MAX_INLINE_BYTES", "Audio", "File", "Image"]

MAX_INLINE_BYTES: Final = 20 * 1024 * 1024
"""The most bytes of media one value may carry inline (OpenAI's limit for an image)."""

_IMAGE_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_URL_SCHEMES: Final = frozenset({"http", "https", "gs"})


def _check_size(kind: str, size: int) -> None:
    if size > MAX_INLINE_BYTES:
        raise MediaError(
            kind=kind,
            problem=f"{size} bytes inline is over the limit of {MAX_INLINE_BYTES} bytes",
        )


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _sniff_image(data: bytes) -> str:
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise MediaError(kind="image", problem="bytes are not a PNG, JPEG, GIF or WebP image")


def _is_url(text: str) -> bool:
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return parsed.scheme in _URL_SCHEMES and bool(parsed.netloc)


def _data_uri_size(uri: str) -> int:
    """The bytes a base64 data URI holds (without decoding it); one without its comma is
    all payload, so a malformed URI cannot pass the size check as empty."""
    head, comma, payload = uri.partition(",")
    if not comma:
        payload = head
    padding = len(payload) - len(payload.rstrip("="))
    return len(payload) * 3 // 4 - padding


def _read(kind: str, path: str | Path) -> bytes:
    target = Path(path)
    try:
        size = target.stat().st_size
        _check_size(kind, size)
        return read_regular_file(target, MAX_INLINE_BYTES)
    except OSError as exc:
        raise MediaError(kind=kind, problem=f"cannot read {str(target)!r}: {exc}") from None
    except ValueError as exc:  # a FIFO or device (/dev/zero reads forever), or it grew
        raise MediaError(kind=kind, problem=f"cannot read {str(target)!r}: {exc}") from None


@final
class Image(Type):
    """An image given by URL (http, https, gs), data URI, or bytes.

    Args:
        source: a URL or `data:` URI string, the image's bytes, an `Image`, or `{"url": ...}`.

    Raises:
        MediaError: the source is not an image reference, or its inline data is too big.
    """

    __slots__ = ("url",)

    def __init__(self, source: str | bytes | Image | Mapping[str, Any]) -> None:
        self.url: str = _image_url(source)

    def __repr__(self) -> str:
        if self.url.startswith("data:"):
            mime = self.url[5:].split(";", 1)[0]
            return f"Image(url=data:{mime};base64,<{_data_uri_size(self.url)} bytes>)"
        return f"Image(url={self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @classmethod
    def from_path(cls, path: str | Path) -> Image:
        """An image read from a local file (its MIME type from the file name).

        Raises:
            MediaError: the file cannot be read, is too big, or is not an image.
        """
        data = _read("image", path)
        mime, _ = mimetypes.guess_type(str(path))
        return cls(_data_uri(mime, data) if mime and mime.startswith("image/") else data)

    @classmethod
    def from_bytes(cls, data: bytes, mime_type: str | None = None) -> Image:
        """An image from its bytes (the type sniffed from them unless given)."""
        _check_size("image", len(data))
        return cls(_data_uri(mime_type or _sniff_image(data), data))

    def format(self) -> list[dict[str, Any]]:
        """One `image_url` part."""
        return [{"type": "image_url", "image_url": {"url": self.url}}]

    def to_dict(self) -> dict[str, str]:
        return {"url": self.url}

    @classmethod
    def validate(cls, value: Any) -> Self:
        """From a URL, a data URI, `{"url": ...}` or an Image.

        Raises:
            ValueError: none of those (MediaError is a ValueError).
        """
        return value if isinstance(value, cls) else cls(value)

    @classmethod
    def pydantic_model(cls) -> Any:
        return _models()[0]


def _image_url(source: Any) -> str:
    if isinstance(source, Image):
        return source.url
    if isinstance(source, Mapping) and set(source) == {"url"}:
        source = source["url"]
    if isinstance(source, bytes | bytearray):
        _check_size("image", len(source))
        return _data_uri(_sniff_image(bytes(source)), bytes(source))
    if isinstance(source, str):
        text = source.strip()
        if text.startswith("data:"):
            _check_size("image", _data_uri_size(text))
            return text
        if _is_url(text):
            return text
        raise MediaError(
            kind="image",
            problem="a string must be an http(s)/gs URL or a data URI; "
            "use Image.from_path() for a local file",
        )
    raise MediaError(kind="image", problem=f"cannot make an image from {type(source).__name__}")


@final
class Audio(Type):
    """Audio given as base64 data and its format ("wav", "mp3"), a data URI, or bytes.

    Args:
        data: base64 audio, a `data:audio/...` URI, raw bytes, an Audio, or
            `{"data", "audio_format"}`.
        audio_format: the format of base64 or bytes data (default "wav").

    Raises:
        MediaError: not audio, malformed base64, or too big.
    """

    __slots__ = ("audio_format", "data")

    def __init__(
        self, data: str | bytes | Audio | Mapping[str, Any], audio_format: str | None = None
    ) -> None:
        self.data, self.audio_format = _audio_parts(data, audio_format)

    def __repr__(self) -> str:
        return f"Audio(data=<{len(self.data)} base64 chars>, audio_format={self.audio_format!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Audio) and (other.data, other.audio_format) == (
            self.data,
            self.audio_format,
        )

    def __hash__(self) -> int:
        return hash((self.data, self.audio_format))

    @classmethod
    def from_path(cls, path: str | Path) -> Audio:
        """Audio read from a local file (its format from the file's MIME type).

        Raises:
            MediaError: the file cannot be read, is too big, or is not audio.
        """
        mime, _ = mimetypes.guess_type(str(path))
        if not mime or not mime.startswith("audio/"):
            raise MediaError(kind="audio", problem=f"{str(path)!r} is not an audio file ({mime})")
        return cls(_read("audio", path), mime.split("/", 1)[1].removeprefix("x-"))

    def format(self) -> list[dict[str, Any]]:
        """One `input_audio` part."""
        return [
            {"type": "input_audio", "input_audio": {"data": self.data, "format": self.audio_format}}
        ]

    def to_dict(self) -> dict[str, str]:
        return {"data": self.data, "audio_format": self.audio_format}

    @classmethod
    def validate(cls, value: Any) -> Self:
        return value if isinstance(value, cls) else cls(value)

    @classmethod
    def pydantic_model(cls) -> Any:
        return _models()[1]


def _audio_parts(data: Any, audio_format: str | None) -> tuple[str, str]:
    if isinstance(data, Audio):
        return data.data, data.audio_format
    if isinstance(data, Mapping) and "data" in data and "audio_format" in data:
        return _audio_parts(str(data["data"]), str(data["audio_format"]))
    if isinstance(data, bytes | bytearray):
        _check_size("audio", len(data))
        return base64.b64encode(bytes(data)).decode("ascii"), audio_format or "wav"
    if isinstance(data, str) and data.startswith("data:audio/"):
        header, comma, payload = data.partition(",")
        fmt = header[len("data:audio/") :].split(";", 1)[0]
        if not comma or not fmt:
            raise MediaError(kind="audio", problem="malformed audio data URI")
        return _audio_parts(payload, fmt.removeprefix("x-"))
    if isinstance(data, str):
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise MediaError(kind="audio", problem="data is not base64 nor a data URI") from None
        _check_size("audio", len(data) * 3 // 4)
        return data, audio_format or "wav"
    raise MediaError(kind="audio", problem=f"cannot make audio from {type(data).__name__}")


@final
class File(Type):
    """A document: inline data (a data URI), an uploaded file's id, and/or a file name.

    Args:
        file_data: a `data:<mime>;base64,...` URI.
        file_id: the id of a file uploaded to the vendor.
        filename: the name shown to the model.

    Raises:
        MediaError: none of the three given, data not a data URI, or data too big.
    """

    __slots__ = ("file_data", "file_id", "filename")

    def __init__(
        self,
        file_data: str | None = None,
        *,
        file_id: str | None = None,
        filename: str | None = None,
    ) -> None:
        if file_data is None and file_id is None and filename is None:
            raise MediaError(kind="file", problem="give file_data, file_id or filename")
        for name, given in (("file_data", file_data), ("file_id", file_id), ("filename", filename)):
            if given is not None and not isinstance(given, str):
                raise MediaError(
                    kind="file", problem=f"{name} must be a string, not {type(given).__name__}"
                )
        if file_data is not None:
            if not file_data.startswith("data:"):
                raise MediaError(
                    kind="file",
                    problem="file_data must be a data URI; use File.from_path() for a local file",
                )
            _check_size("file", _data_uri_size(file_data))
        self.file_data = file_data
        self.file_id = file_id
        self.filename = filename

    def __repr__(self) -> str:
        parts = []
        if self.file_data is not None:
            mime = self.file_data[5:].split(";", 1)[0]
            parts.append(f"file_data=<{mime}, {_data_uri_size(self.file_data)} bytes>")
        if self.file_id is not None:
            parts.append(f"file_id={self.file_id!r}")
        if self.filename is not None:
            parts.append(f"filename={self.filename!r}")
        return f"File({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.file_data, self.file_id, self.filename))

    @classmethod
    def from_path(
        cls, path: str | Path, filename: str | None = None, mime_type: str | None = None
    ) -> File:
        """A file read from disk, named after it (MIME type guessed unless given).

        Raises:
            MediaError: the file cannot be read or is too big.
        """
        data = _read("file", path)
        mime = mime_type or mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        return cls(_data_uri(mime, data), filename=filename or Path(path).name)

    @classmethod
    def from_bytes(
        cls, data: bytes, filename: str | None = None, mime_type: str = "application/octet-stream"
    ) -> File:
        """A file from raw bytes."""
        _check_size("file", len(data))
        return cls(_data_uri(mime_type, data), filename=filename)

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> File:
        """A file already uploaded to the vendor."""
        return cls(file_id=file_id, filename=filename)

    def format(self) -> list[dict[str, Any]]:
        """One `file` part with the fields that are set."""
        return [{"type": "file", "file": self.to_dict()}]

    def to_dict(self) -> dict[str, str]:
        fields = {"file_data": self.file_data, "file_id": self.file_id, "filename": self.filename}
        return {k: v for k, v in fields.items() if v}

    @classmethod
    def validate(cls, value: Any) -> Self:
        """From a data URI, bytes, a dict of the fields, or a File.

        Raises:
            ValueError: none of those (MediaError is a ValueError).
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, bytes | bytearray):
            return cls(_data_uri("application/octet-stream", bytes(value)))
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            known = {k: value[k] for k in ("file_data", "file_id", "filename") if k in value}
            return cls(
                known.get("file_data"), file_id=known.get("file_id"), filename=known.get("filename")
            )
        raise MediaError(kind="file", problem=f"cannot make a file from {type(value).__name__}")

    @classmethod
    def pydantic_model(cls) -> Any:
        return _models()[2]


@functools.cache
def _models() -> tuple[Any, Any, Any]:
    import pydantic

    closed = pydantic.ConfigDict(extra="forbid")
    image = pydantic.create_model("Image", __config__=closed, url=(str, ...))
    audio = pydantic.create_model(
        "Audio",
        __config__=closed,
        __doc__=AUDIO_DESCRIPTION,
        data=(str, ...),
        audio_format=(str, ...),
    )
    file = pydantic.create_model(
        "File",
        __config__=closed,
        __doc__=FILE_DESCRIPTION,
        file_data=(str | None, None),
        file_id=(str | None, None),
        filename=(str | None, None),
    )
    return image, audio, file
