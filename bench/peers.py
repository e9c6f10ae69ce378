"""The skew finders a user would otherwise pick, each called as its documentation shows.

Every function takes a grey 300-dpi page and returns (skew in degrees counter-clockwise — Quire's
convention — or None when the tool gives no answer, seconds of work). Conversions into a tool's
own image type are done before the clock starts; the tool's own binarising is timed.
"""

import ctypes
import ctypes.util
import math
import os
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

MAX_SKEW_DEG = 15.0


class Leptonica:
    """Leptonica (the Debian library, liblept.so.5) through ctypes: what OCRmyPDF and Tesseract deskew with."""

    def __init__(self):
        name = ctypes.util.find_library("lept") or ctypes.util.find_library("leptonica") or "liblept.so.5"  # Debian 12, 13
        lib = ctypes.CDLL(name)
        c_pix, c_float_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)
        lib.setMsgSeverity.argtypes = [ctypes.c_int]
        lib.setMsgSeverity(6)                      # L_SEVERITY_NONE: no warnings on stderr
        lib.pixCreate.restype, lib.pixCreate.argtypes = c_pix, [ctypes.c_int] * 3
        lib.pixGetData.restype, lib.pixGetData.argtypes = ctypes.POINTER(ctypes.c_uint32), [c_pix]
        lib.pixGetWpl.restype, lib.pixGetWpl.argtypes = ctypes.c_int, [c_pix]
        lib.pixConvertTo1.restype, lib.pixConvertTo1.argtypes = c_pix, [c_pix, ctypes.c_int]
        lib.pixFindSkew.argtypes = [c_pix, c_float_p, c_float_p]
        lib.pixFindSkewSweepAndSearch.argtypes = [c_pix, c_float_p, c_float_p, ctypes.c_int, ctypes.c_int,
                                                  ctypes.c_float, ctypes.c_float, ctypes.c_float]
        lib.pixDestroy.argtypes = [ctypes.POINTER(c_pix)]
        self.lib = lib
        self.version = _leptonica_version(name)

    def find_skew(self, grey: np.ndarray, sweep_deg: float | None = None) -> tuple[float | None, float]:
        """pixFindSkew (its default ±7° sweep) or, with ``sweep_deg``, pixFindSkewSweepAndSearch over ±sweep_deg."""
        lib = self.lib
        pix = self._pix(grey)
        angle, conf = ctypes.c_float(), ctypes.c_float()
        try:
            started = time.perf_counter()
            # 130: the threshold pixDeskew itself uses to binarise a grey page.
            binary = ctypes.c_void_p(lib.pixConvertTo1(pix, 130))
            if sweep_deg is None:
                failed = lib.pixFindSkew(binary, ctypes.byref(angle), ctypes.byref(conf))
            else:
                # Leptonica's own defaults otherwise: sweep at 4× reduction in 1° steps, search at 2×
                # reduction down to 0.01°.
                failed = lib.pixFindSkewSweepAndSearch(binary, ctypes.byref(angle), ctypes.byref(conf), 4, 2,
                                                       sweep_deg, 1.0, 0.01)
            seconds = time.perf_counter() - started
            lib.pixDestroy(ctypes.byref(binary))
        finally:
            lib.pixDestroy(ctypes.byref(pix))
        return (None if failed else float(angle.value)), seconds

    def _pix(self, grey: np.ndarray) -> ctypes.c_void_p:
        h, w = grey.shape
        pix = self.lib.pixCreate(w, h, 8)
        wpl = self.lib.pixGetWpl(pix)
        rows = np.zeros((h, wpl * 4), np.uint8)
        rows[:, :w] = grey
        # Leptonica keeps 8-bit pixels in 32-bit words, most significant byte first.
        words = np.ascontiguousarray(rows.reshape(h, wpl, 4)[:, :, ::-1])
        ctypes.memmove(self.lib.pixGetData(pix), words.ctypes.data, words.nbytes)
        return ctypes.c_void_p(pix)


def jdeskew_skew(grey: np.ndarray) -> tuple[float | None, float]:
    """jdeskew's get_angle on the full page (its default size), searching ±15°."""
    from jdeskew.estimator import get_angle

    started = time.perf_counter()
    angle = get_angle(grey, angle_max=MAX_SKEW_DEG)
    # jdeskew answers with the rotation that straightens the page: the opposite of the skew.
    return -float(angle), time.perf_counter() - started


def deskew_skew(grey: np.ndarray) -> tuple[float | None, float]:
    """deskew's determine_skew in 0.1° steps; on the page at half size (150 dpi), as its Hough
    transform at 300 dpi and 0.1° takes several seconds a page."""
    from deskew import determine_skew

    started = time.perf_counter()
    half = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    angle = determine_skew(half, min_deviation=0.1)
    seconds = time.perf_counter() - started
    return (None if angle is None else -float(angle)), seconds


def unpaper_skew(grey: np.ndarray, dpi: int = 300) -> tuple[float | None, float]:
    """unpaper with its defaults but a ±15° deskew range, on a PGM file: the rotation it reports, and
    the CPU seconds of the whole run (its filters, mask detection, deskew and writing the result)."""
    with tempfile.TemporaryDirectory(prefix="bench-unpaper-") as work:
        src, dst = Path(work) / "in.pgm", Path(work) / "out.pgm"
        cv2.imwrite(str(src), grey)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["unpaper", "-v", "--dpi", str(dpi), "--deskew-scan-range", str(MAX_SKEW_DEG),
                              "--overwrite", str(src), str(dst)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    found = re.search(r"rotation average: (-?[\d.]+)", out)
    # unpaper reports the rotation it applies, in radians: the opposite of the skew.
    return (None if found is None else -math.degrees(float(found.group(1)))), seconds


def unpaper_version() -> str:
    try:
        return subprocess.run(["unpaper", "--version"], capture_output=True, text=True).stdout.split()[0]
    except (OSError, IndexError):
        return "?"


def _leptonica_version(name: str) -> str:
    try:
        lib = ctypes.CDLL(name)
        lib.getLeptonicaVersion.restype = ctypes.c_char_p
        return lib.getLeptonicaVersion().decode().removeprefix("leptonica-")
    except (OSError, AttributeError):
        return "?"


def tesseract_orientation(image: np.ndarray, dpi: int) -> tuple[int | None, float, float]:
    """Tesseract's orientation and script detection (``--psm 0``, Debian's tesseract-ocr with its osd
    data): the quarter turn counter-clockwise that brings the page upright, or None when it gives no
    answer; its confidence; the CPU seconds of the run."""
    with tempfile.TemporaryDirectory(prefix="bench-osd-") as work:
        src = Path(work) / "page.png"
        cv2.imwrite(str(src), image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["tesseract", str(src), "-", "--psm", "0", "--dpi", str(dpi)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "OMP_THREAD_LIMIT": "1"}).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    turn, conf = re.search(r"Rotate: (\d+)", out), re.search(r"Orientation confidence: ([\d.]+)", out)
    # Tesseract's "Rotate" is the clockwise turn that makes the page upright.
    return (None if turn is None else (-int(turn.group(1))) % 360), float(conf.group(1)) if conf else 0.0, seconds


def tesseract_version() -> str:
    try:
        return subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split()[1]
    except (OSError, IndexError):
        return "?"
