"""An uploaded photo, from the bytes a client sent to the bytes the model decodes, at a bounded cost.

    header = read_header(data, max_pixels)      # header only: 4xx for what is not a usable image
    header.cost                                 # pixels a decode will produce (JPEGs: after DCT scaling)
    model_bytes = prepare(header, target=(h, w))

Content is checked by decoding, never trusted by name:

- 400 empty; 415 not an image (or a format PIL cannot read); 422 a damaged image: a known
  signature (JPEG, PNG, GIF, BMP, WebP, TIFF) whose header or data does not decode (a PNG with
  a bad IHDR checksum, a truncated JPEG);
- 413 more than `max_pixels` pixels (the service's `--max-pixels`), read from the header before
  any decoding, against decompression bombs.

`prepare` decodes once, in PIL. An image no larger than twice the model's input in each
dimension is passed on as sent (JPEG, PNG, GIF and BMP with an intact end; other formats
re-encoded as PNG), so the model sees what `visnet.index build` saw. A larger one is decoded at
reduced scale (a JPEG by DCT scaling, 1/2 to 1/8, straight from the compressed data), shrunk to
twice the model's input and re-encoded as PNG: the model's own resize then does the rest, and
a 36-megapixel phone photo costs what a small one does. What still costs much (a large PNG,
WebP or TIFF must be decoded in full) is `header.cost`, which the service uses to send the
request through its large-image lane (`serving.budget`).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import struct
import warnings

from PIL import Image, UnidentifiedImageError

SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
              (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))
#: Formats the served graph decodes itself: passed on as sent when small and intact.
MODEL_FORMATS = ("JPEG", "PNG", "GIF", "BMP")


class UploadError(ValueError):
    """A bad upload: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # raised in the large-image lane's worker process, answered by the service
        return UploadError, (self.status, str(self))


def known_format(data: bytes) -> str | None:
    """The format a file's first bytes claim (None for none we know)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in SIGNATURES if data.startswith(magic)), None)


@dataclasses.dataclass
class Header:
    """What an image's header says, read without decoding its pixels."""

    data: bytes
    image: Image.Image
    format: str
    width: int
    height: int
    name: str

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def scale_for(self, target: tuple[int, int]) -> float:
        """The scale (<= 1) keeping each side at least twice the model's input (height, width)."""
        return min(1.0, max(2 * target[0] / self.height, 2 * target[1] / self.width))

    def cost(self, target: tuple[int, int]) -> int:
        """The decode's work for `target`, in pixels: all of them, except for a baseline JPEG, which
        decodes at 1/2, 1/4 or 1/8 scale when that is enough, plus its entropy decoding (one per byte).
        A progressive JPEG's coefficients are all decoded: full cost."""
        if self.format != "JPEG" or self.image.info.get("progressive"):
            return self.pixels
        scale = self.scale_for(target)
        reduction = 1
        while reduction < 8 and scale * reduction * 2 <= 1:
            reduction *= 2
        return math.ceil(self.width / reduction) * math.ceil(self.height / reduction) + len(self.data)


def read_header(data: bytes, max_pixels: int, name: str = "the upload") -> Header:
    """The image's format and size from its header (nothing decoded), or an `UploadError`."""
    name = name[:1].upper() + name[1:]  # it starts the messages
    if not data:
        raise UploadError(400, f"{name} is empty.")
    claimed = known_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size  # read from the header: nothing decoded yet
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise UploadError(413, f"{name} is {size}; the limit is {max_pixels:,}.") from None
    except UnidentifiedImageError:
        if claimed:
            raise UploadError(422, f"{name} is a damaged {claimed} image: its header does not decode.") from None
        raise UploadError(415, f"{name} is not an image (JPEG, PNG, GIF, BMP, WebP or TIFF).") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        if claimed:
            raise UploadError(422, f"{name} is a damaged {claimed} image: {error}") from None
        raise UploadError(415, f"{name} is not a readable image: {error}") from None
    if width * height > max_pixels:
        raise UploadError(413, f"{name} is {width}x{height} = {width * height:,} pixels; the limit is "
                               f"{max_pixels:,}.")
    if width < 1 or height < 1:
        raise UploadError(422, f"{name} has no pixels ({width}x{height}).")
    return Header(data, image, image.format, width, height, name)


def prepare(header: Header, target: tuple[int, int] | None = None) -> bytes:
    """Decodes the image once (at reduced scale when it is large) and returns bytes the model decodes.

    Args:
        header: `Header`. From `read_header`.
        target: (height, width) of the model's input, or None to keep the full size.
    """
    image, fmt = header.image, header.format
    scale = header.scale_for(target) if target else 1.0
    box = (max(1, math.ceil(header.width * scale)), max(1, math.ceil(header.height * scale)))
    try:
        if scale < 1 and fmt == "JPEG":
            image.draft(image.mode if image.mode in ("RGB", "L") else "RGB", box)
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        raise UploadError(422, f"{header.name} is a damaged {fmt} image: {error}") from None
    except MemoryError:
        raise UploadError(413, f"{header.name} needs more memory to decode than this server has.") from None
    if scale < 1:
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA" if _has_alpha(image) else "RGB")
        if image.size != box:
            image = image.resize(box, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return _png(image)
    # The served graph also wants an intact end (see visnet.exporting.image_check): a JPEG with bytes
    # after its end marker, which PIL reads, is re-encoded rather than refused.
    data = header.data
    intact = {"JPEG": data.endswith(b"\xff\xd9"), "PNG": data.endswith(b"IEND\xaeB`\x82"),
              "GIF": data.endswith(b"\x3b"), "BMP": True}
    if intact.get(fmt, False):
        return data
    return _png(image.convert("RGBA" if _has_alpha(image) else "RGB"))


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def decode_for_model(data: bytes, max_pixels: int, target: tuple[int, int] | None, name: str = "the upload") -> bytes:
    """`read_header` then `prepare`, from bytes alone (what the large-image lane's worker process runs)."""
    return prepare(read_header(data, max_pixels, name), target)
