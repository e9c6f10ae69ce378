"""Reading page images from files, and the array conversions the pipeline shares."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps


def read_image(path: str | Path) -> tuple[np.ndarray, int | None]:
    """Read the first image in a file as RGB or grey uint8, upright per EXIF, with the dpi it records."""
    with Image.open(path) as im:
        return pixels(im), file_dpi(im.info)


def pixels(im: Image.Image) -> np.ndarray:
    """An opened image decoded as RGB or grey uint8, upright per EXIF."""
    return _to_array(ImageOps.exif_transpose(im))


def file_dpi(info: dict) -> int | None:
    """The resolution an image file's header states (Pillow's ``info``), None when it states none."""
    value = info.get("dpi")
    if not value:
        return None
    x = float(value[0] if isinstance(value, tuple) else value)
    # A density of 1 (or 0) is JFIF's "aspect ratio only", not a resolution.
    return round(x) if x > 1.5 else None


def _to_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(im).astype(np.uint32)
        return (wide >> 8 if wide.max(initial=0) > 255 else wide).astype(np.uint8)
    if im.mode == "F":
        return np.clip(np.asarray(im), 0, 255).astype(np.uint8)
    if im.mode in ("1", "L", "LA", "La"):
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))


def to_grey(image: np.ndarray) -> np.ndarray:
    """Luminance of an RGB (or RGBX) page; a grey page as it is."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)


def planes(image: np.ndarray) -> list[np.ndarray]:
    """The channels of an H×W×C image as C contiguous H×W arrays."""
    # Not cv2.split: at some widths (1998 px, 2000 px) it runs ten times slower than one
    # extractChannel per plane (OpenCV 5.0, measured).
    return [cv2.extractChannel(image, i) for i in range(image.shape[2])]


def median(values: np.ndarray) -> float:
    """np.median of a small array, to the same float: the middle value, or the mean of the middle two
    in the array's own type. np.median's own checks cost more than the sort on a few dozen values,
    and the analysis asks for hundreds of them a page."""
    ordered = np.sort(values, axis=None)
    mid = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[mid])
    return float((ordered[mid - 1] + ordered[mid]) / 2)


def component_boxes(binary: np.ndarray) -> np.ndarray:
    """(N, 5) int64: x, y, w, h and pixel count of each 8-connected component of a binary uint8 image,
    in OpenCV's label order (the background left out)."""
    try:
        # 16-bit labels: the same labelling (same algorithm, same order) at a third of the time of
        # 32-bit ones on a 150-dpi page (OpenCV 5.0, measured); OpenCV refuses when they overflow.
        stats = cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, cv2.CV_16U, cv2.CCL_DEFAULT)[2]
    except cv2.error:
        stats = cv2.connectedComponentsWithStats(binary, connectivity=8)[2]
    return stats[1:].astype(np.int64)


def downscale(image: np.ndarray, dpi: int, target_dpi: int) -> tuple[np.ndarray, float]:
    """The image averaged down to about ``target_dpi`` (never up), and the scale (its size / the image's).

    By the whole factor that comes nearest ``target_dpi`` when that is 2 or more: whole factors take
    OpenCV's fast path, several times quicker than a fractional one. A page from 4/3 to 1.5 times
    ``target_dpi`` (200 dpi against 150) goes down by 3/4, to ``target_dpi`` or more: analysed at its
    own size it would cost nearly twice as much as a 300-dpi page. (Halved instead, to 100 dpi, such a page
    costs 6.3 times its bare encode, not 10.5, but small book type's skew came out 0.10° off, not 0.008°:
    bench.pipeline and tests/station/pipeline/test_deskew.py, issue 13. Below ``target_dpi`` the analysis
    judges less well: wet-day.jpg, a plate at 189 dpi, looked at 142 dpi, had its skew taken from the
    plate's texture, 13.5° off.) Up to 3 pixels at the right and bottom edges are left out,
    so every pixel of the copy averages the same part of the image.
    """
    factor, kept = analysis_scale(dpi, target_dpi)
    if factor == 1:
        return image, 1.0
    h, w = image.shape[:2]
    if (factor, kept) == (4, 3) and h >= 4 and w >= 4:
        return _three_quarters(image), 0.75
    rows, cols = max(1, h // factor), max(1, w // factor)
    return cv2.resize(image[:rows * factor, :cols * factor], (cols * kept, rows * kept),
                      interpolation=cv2.INTER_AREA), kept / factor


# OpenCV's INTER_AREA at 3/4 gives each pixel of the copy, along each axis, 3/4 and 1/4, 2/4 and 2/4, or
# 1/4 and 3/4 of two neighbouring pixels of each block of four: sums of sixteenths, exact in its floats,
# rounded half to even. _three_quarters adds the same whole weights and rounds the same way.
_PAIRS = ((3, 1, 0), (2, 2, 1), (1, 3, 2))     # the two weights, and the first of the two pixels in the block
_BLOCK_ROWS = 32                                # blocks of four rows done at once: a strip that stays in the cache


def _three_quarters(image: np.ndarray) -> np.ndarray:
    """``cv2.resize(..., INTER_AREA)`` of the image's whole blocks of 4×4 pixels to 3×3, to the same pixels
    in under half its time (its fractional path weighs pixel by pixel; measured, OpenCV 5.0).

    Rows first, then the strip turned on its side so that columns are rows too: each step adds whole rows,
    which OpenCV does many pixels at once.
    """
    h, w = image.shape[:2]
    rows, cols, pixel = h // 4, w // 4, image.shape[2:]
    out = np.empty((rows * 3, cols * 3, *pixel), np.uint8)
    for top in range(0, rows, _BLOCK_ROWS):
        n = min(_BLOCK_ROWS, rows - top)
        source = image[top * 4:(top + n) * 4, :cols * 4].astype(np.uint16).reshape(n * 4, -1)
        tall = np.empty((n * 3, cols * 4, *pixel), np.uint16)
        for i, (first, second, k) in enumerate(_PAIRS):     # sums of up to 4 × 255
            cv2.addWeighted(source[k::4], first, source[k + 1::4], second, 0, dst=tall.reshape(n * 3, -1)[i::3])
        across = cv2.transpose(tall).reshape(cols * 4, -1)
        wide = np.empty((cols * 3, n * 3, *pixel), np.uint16)
        for i, (first, second, k) in enumerate(_PAIRS):     # sixteenths, rounded half to even
            cv2.addWeighted(across[k::4], first / 16, across[k + 1::4], second / 16, 0,
                            dst=wide.reshape(cols * 3, -1)[i::3])
        out[top * 3:(top + n) * 3] = cv2.transpose(wide.astype(np.uint8))
    return out


def analysis_scale(dpi: int, target_dpi: int) -> tuple[int, int]:
    """(q, p): an image at ``dpi`` is analysed at p / q of its size (see downscale)."""
    ratio = dpi / target_dpi
    if round(ratio) >= 2:
        return round(ratio), 1
    if ratio >= 4 / 3:
        return 4, 3
    return 1, 1
