"""First-frame images: decoded with limits, so a hostile upload cannot exhaust memory."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image

MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = 4096 * 4096
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF"}
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


class ImageError(ValueError):
    """An image that is not acceptable; the message says why."""


def decode_image(data: bytes, field: str = "image") -> Image.Image:
    """Decode image bytes into an RGB PIL image, refusing non-images, huge sizes and bombs."""
    if not data:
        raise ImageError(f"{field}: empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{field}: {len(data)} bytes is over the {MAX_IMAGE_BYTES} byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            # The header gives the size before any pixel is decoded: refuse bombs here.
            width, height = image.size
            if image.format not in ALLOWED_FORMATS:
                raise ImageError(f"{field}: format {image.format} is not one of {sorted(ALLOWED_FORMATS)}")
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"{field}: {width}x{height} is larger than the {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} limit"
                )
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{field}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{field}: not a readable image ({exc})") from None
    return image.convert("RGB")


def decode_data_url(value: str, field: str = "image") -> Image.Image:
    if not _DATA_URL.match(value):
        raise ImageError(f"{field}: expected a data:image/...;base64, URL")
    payload = value.split(",", 1)[1]
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ImageError(f"{field}: encoded image is over the {MAX_IMAGE_BYTES} byte limit")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{field}: invalid base64 data") from None
    return decode_image(data, field)


def is_data_url(value: str) -> bool:
    return bool(_DATA_URL.match(value))


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_data_url(image: Image.Image) -> str:
    """The image as a `data:image/png;base64,…` URL (what a spec's `image` field takes)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")
