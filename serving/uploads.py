"""Checks on an uploaded image before it reaches the model: content decoded, not trusted by name.

`check_image(data)` returns bytes the model decodes (JPEG, PNG, GIF and BMP as sent; other formats
PIL reads, such as WebP or TIFF, and files with bytes after their end, re-encoded as PNG) or raises `UploadError` with the HTTP status
and a message: 400 empty, 415 not an image / unsupported, 413 too many pixels (read from the
header before any decoding, against decompression bombs), 422 a damaged image (truncated or
corrupt data, found by decoding it fully).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError


class UploadError(ValueError):
    """A bad upload: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_image(data: bytes, max_pixels: int, name: str = "the upload") -> bytes:
    """Validates an encoded image; returns bytes in a format the model decodes."""
    name = name[:1].upper() + name[1:]  # it starts the messages
    if not data:
        raise UploadError(400, f"{name} is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size  # read from the header: nothing decoded yet
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        if isinstance(error, Image.DecompressionBombError):
            raise UploadError(413, f"{name} has too many pixels ({error}).") from None
        raise UploadError(415, f"{name} is not an image (JPEG, PNG, GIF, BMP, WebP or TIFF).") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadError(415, f"{name} is not a readable image: {error}") from None
    if width * height > max_pixels:
        raise UploadError(413, f"{name} is {width}x{height} = {width * height:,} pixels; the limit is "
                               f"{max_pixels:,}.")
    if width < 1 or height < 1:
        raise UploadError(422, f"{name} has no pixels ({width}x{height}).")
    fmt = image.format
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise UploadError(422, f"{name} is a damaged {fmt} image: {error}") from None
    # The served graph also wants an intact end (see visnet.exporting.image_check): a JPEG with bytes
    # after its end marker, which PIL reads, is re-encoded rather than refused.
    intact = {"JPEG": data.endswith(b"\xff\xd9"), "PNG": data.endswith(b"IEND\xaeB`\x82"),
              "GIF": data.endswith(b"\x3b"), "BMP": True}
    if intact.get(fmt, False):
        return data
    out = io.BytesIO()
    image.convert("RGBA" if "A" in image.getbands() else "RGB").save(out, format="PNG")
    return out.getvalue()
