"""What an uploaded file really is, from its bytes (never its name or declared type).

Images: the magic bytes name the format, then Pillow reads the header and the pixel
count is bounded *before* any pixel is decoded (a 50,000 x 50,000 PNG is a few KB and
10 GB once decoded); then the file's structure is verified. Videos: MP4 (an `ftyp` box)
and WebM (an EBML header with the webm doc type), checked by their container headers.
"""

from __future__ import annotations

import io
import warnings

import msgspec
from PIL import Image, UnidentifiedImageError

_PNG = b"\x89PNG\r\n\x1a\n"
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


class Content(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    content_type: str
    width: int | None = None
    height: int | None = None


class Refused(Exception):
    """Why the bytes are not an upload we keep: (status, code, detail)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def sniff(head: bytes) -> str | None:
    """The content type the first bytes announce, or None."""
    if head.startswith(_PNG):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64]:
        return "video/webm"
    return None


def _image(body: bytes, content_type: str, max_pixels: int) -> Content:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body), formats=[_PILLOW_FORMATS[content_type]]) as image:
                width, height = image.size  # read from the header; no pixel decoded yet
                if width * height > max_pixels:
                    raise Refused(
                        422,
                        "too_many_pixels",
                        f"{width} x {height} is over {max_pixels} pixels (RCC_MAX_UPLOAD_PIXELS)",
                    )
                image.verify()  # the structure (chunks, checksums) holds together
    except Refused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Warning) as error:
        raise Refused(
            415, "unsupported_content", f"not a readable {content_type} image: {error}"
        ) from None
    except Image.DecompressionBombError as error:
        raise Refused(422, "too_many_pixels", str(error)) from None
    return Content(kind="image", content_type=content_type, width=width, height=height)


def examine(body: bytes, max_pixels: int) -> Content:
    """The upload's kind and type from its content, or Refused."""
    content_type = sniff(body[:64])
    if content_type is None:
        raise Refused(
            415, "unsupported_content", "only PNG, JPEG, WebP, MP4 and WebM files are accepted"
        )
    if content_type in _PILLOW_FORMATS:
        return _image(body, content_type, max_pixels)
    return Content(kind="video", content_type=content_type)
