"""Encoding a processed page: JPEG for colour and grey, CCITT G4 TIFF for bilevel."""

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .imageio import to_grey


@dataclass(frozen=True)
class Encoded:
    """An encoded page file."""

    data: bytes
    media_type: str
    suffix: str
    codec: str


def encode(image: np.ndarray, colour: str, dpi: int, jpeg_quality: int, threshold: float = 128, *,
           bgr: bool = False) -> Encoded:
    """Encode the page (grey, RGB or RGBX; with ``bgr``, BGR or BGRX: OpenCV's order) in its colour mode,
    with ``dpi`` written into the file's header.

    ``threshold`` is the grey level below which a pixel is black in bilevel output.
    """
    if bgr and image.ndim == 3 and colour != "colour":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    out = io.BytesIO()
    if colour == "bilevel":
        black = to_grey(image) < threshold
        Image.fromarray(np.where(black, 0, 255).astype(np.uint8)).convert("1", dither=Image.Dither.NONE).save(
            out, format="TIFF", compression="group4", dpi=(dpi, dpi))
        return Encoded(out.getvalue(), "image/tiff", ".tif", "tiff-g4")
    if colour == "colour":
        if image.ndim == 2:
            pixels, bgr = np.repeat(image[..., None], 3, axis=2), True     # the same in either order
        else:
            pixels = np.ascontiguousarray(image)
        # OpenCV encodes only in its own order (an RGB page would first be copied out as BGR).
        fast = _opencv_jpeg(pixels, dpi, jpeg_quality) if bgr else None
    elif colour == "grey":
        pixels = np.ascontiguousarray(to_grey(image))
        fast = _opencv_jpeg(pixels, dpi, jpeg_quality)
    else:
        raise ValueError(f"unknown colour mode {colour!r}")
    if fast is not None:
        return Encoded(fast, "image/jpeg", ".jpg", "jpeg")
    _image_of(pixels, bgr).save(out, format="JPEG", quality=jpeg_quality, dpi=(dpi, dpi))
    return Encoded(out.getvalue(), "image/jpeg", ".jpg", "jpeg")


# The JFIF header OpenCV writes first: APP0 marker, length 16, "JFIF\0", version 1.1, then the density's
# unit (0: aspect ratio only), its x and y (1, 1) and no thumbnail.
_OPENCV_JFIF = bytes.fromhex("ffd8ffe000104a4649460001010000010001")


def _opencv_jpeg(pixels: np.ndarray, dpi: int, jpeg_quality: int) -> bytes | None:
    """A grey or BGR(X) page as the very bytes Pillow writes for it (both libjpeg-turbo, baseline tables
    scaled to the quality, 4:2:0 chroma, not optimised), encoded by OpenCV in less CPU (an A4 page at
    300 dpi, q85: grey a fifth less, colour about 8 % less); None when OpenCV's header is not the one
    expected (then Pillow encodes it).

    OpenCV writes no resolution, only the aspect ratio: the JFIF density is set to ``dpi`` in place.
    """
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    data = bytearray(encoded) if ok else b""
    if data[:len(_OPENCV_JFIF)] != _OPENCV_JFIF or not 0 < dpi <= 0xFFFF:
        return None
    data[13:18] = bytes([1]) + int(dpi).to_bytes(2, "big") * 2     # unit 1: dots per inch
    return bytes(data)


def master(image: np.ndarray, dpi: int) -> Encoded:
    """The captured pixels (grey or RGB), untouched, as a lossless TIFF (Deflate) with ``dpi`` in its header."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="TIFF", compression="tiff_adobe_deflate",
                                                       dpi=(dpi, dpi))
    return Encoded(out.getvalue(), "image/tiff", ".tif", "tiff-deflate")


def _image_of(pixels: np.ndarray, bgr: bool = False) -> Image.Image:
    """A Pillow image of grey, RGB(X) or with ``bgr`` BGR(X) pixels: over the array's own memory for grey
    and RGBX, the others copied to Pillow's four bytes a pixel."""
    raw = "L" if pixels.ndim == 2 else ("BGR" if bgr else "RGB") + ("X" if pixels.shape[2] == 4 else "")
    mode = raw if raw in ("L", "RGBX") else "RGB"
    return Image.frombuffer(mode, (pixels.shape[1], pixels.shape[0]), pixels, "raw", raw, 0, 1)
