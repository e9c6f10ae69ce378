"""Finding Quire's cover sheets in a feed: a cheap look for the sheet's black band, then the QR code.

Most pages are not cover sheets, so the first step must cost next to nothing: the page is thinned
to about 50 dpi and searched for a large, solid, rectangular dark area clear of the image's edges
(the band ``station.coversheet`` prints). Only a page with such an area is searched for a QR code,
with OpenCV's own detectors at a few scales; a code whose text is not a Quire cover-sheet payload
(a content page's own QR code or barcode) is not a sheet.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from ..coversheet import BAND_MM, Sheet, parse_payload

_LOOK_DPI = 50              # the cheap look's resolution
# Then decoding tries these: the code's modules are about 2 mm, so 100–150 dpi reads it, and a whole
# page at full resolution would cost seconds on a content page that merely has a dark block.
_DECODE_DPI = (100, 150)
_MM_PER_INCH = 25.4


@dataclass(frozen=True)
class Found:
    """A cover sheet found on a page: what it says, and the code's text."""

    sheet: Sheet
    text: str


def find(image: np.ndarray, dpi: int) -> Found | None:
    """The cover sheet this page is, or None (an ordinary page, or another QR code or barcode)."""
    grey = _thin(image, dpi)
    if not has_band(grey, dpi / max(1, round(dpi / _LOOK_DPI))):
        return None
    return decode(image, dpi)


def has_band(grey: np.ndarray, dpi: float) -> bool:
    """Whether a thinned grey page has a dark solid rectangle the size of a cover sheet's band."""
    _, dark = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    px_per_mm = dpi / _MM_PER_INCH
    want = BAND_MM[2] * BAND_MM[3] * px_per_mm ** 2
    h, w = grey.shape
    for i, (x, y, bw, bh, area) in enumerate(stats[1:], 1):
        if area < 0.5 * want or area > 1.6 * want:
            continue
        if x == 0 or y == 0 or x + bw >= w or y + bh >= h:
            continue            # touches the image's edge: the scanner's backing, or a page's dark border
        if max(bw, bh) < 0.6 * BAND_MM[2] * px_per_mm:
            continue
        points = cv2.findNonZero((labels[y:y + bh, x:x + bw] == i).astype(np.uint8))
        (_, _), (rw, rh), _ = cv2.minAreaRect(points)
        long_mm, short_mm = max(rw, rh) / px_per_mm, min(rw, rh) / px_per_mm
        if (0.75 * BAND_MM[2] <= long_mm <= 1.25 * BAND_MM[2] and 0.6 * BAND_MM[3] <= short_mm <= 1.4 * BAND_MM[3]
                and area >= 0.7 * rw * rh):
            return True
    return False


def decode(image: np.ndarray, dpi: int) -> Found | None:
    """Read a Quire cover-sheet QR code on the page at a few scales; None when there is none."""
    grey = _grey(image)
    detectors = (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco())
    for scale_dpi in [d for d in _DECODE_DPI if d < dpi] or [dpi]:
        view = grey if scale_dpi == dpi else cv2.resize(grey, None, fx=scale_dpi / dpi, fy=scale_dpi / dpi,
                                                        interpolation=cv2.INTER_AREA)
        for detector in detectors:
            try:
                text, _, _ = detector.detectAndDecode(view)
            except cv2.error:
                continue
            sheet = parse_payload(text) if text else None
            if sheet is not None:
                return Found(sheet, text)
    return None


def _thin(image: np.ndarray, dpi: int) -> np.ndarray:
    """The page at about 50 dpi, grey, by taking every k-th pixel (the band is large; nothing finer matters)."""
    k = max(1, round(dpi / _LOOK_DPI))
    small = image[::k, ::k]
    if small.ndim == 3:
        small = np.ascontiguousarray(small[:, :, 1])    # green: black ink is dark in every channel
    return np.ascontiguousarray(small)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
