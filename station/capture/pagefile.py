"""Page files from outside the scanner (a folder import, ``process``): image files and scanned PDFs.

Every page is checked from headers alone before a pixel is decoded: only regular files are opened
(a named pipe would block the station forever), and an image must be what a scanner can produce
(station.pipeline.limits) at a believable resolution. Each refusal names the file and what to do.
"""

import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pikepdf
from PIL import Image

from ..errors import UsageError
from ..pipeline import limits
from ..pipeline.imageio import file_dpi, pixels
from .base import RawPage

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".pnm", ".ppm", ".pgm"}
PDF_SUFFIX = ".pdf"
# Pillow refuses to open an image of more than twice this many pixels; every header is checked against
# the station's own limits before decoding, so Pillow's bar is set where no page can reach it.
Image.MAX_IMAGE_PIXELS = limits.MAX_PAGE_PIXELS


@dataclass(frozen=True)
class FilePage:
    """One page of a page file as its headers describe it: checked, not yet decoded."""

    path: Path
    index: int | None          # the page of a PDF, from 0; None for an image file
    width_px: int
    height_px: int
    dpi: int
    dpi_source: str            # "file", "operator" or "assumed" (quire.manifest.DPI_SOURCES)

    @property
    def origin(self) -> str:
        return str(self.path) if self.index is None else f"{self.path} page {self.index + 1}"

    @property
    def stem(self) -> str:
        """The name of this page's output file, without its suffix."""
        return self.path.stem if self.index is None else f"{self.path.stem}-p{self.index + 1}"


def is_page_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES | {PDF_SUFFIX}


def inspect(path: str | Path, operator_dpi: int | None, assumed_dpi: int) -> list[FilePage]:
    """Every page of an image or PDF file, checked from its headers; UsageError naming the file and what to do.

    ``operator_dpi``: the resolution the operator measured, which overrides what the file states;
    ``assumed_dpi``: the station's default for a file that states none (recorded as assumed).
    """
    path = Path(path)
    with _open(path) as f:
        if path.suffix.lower() == PDF_SUFFIX:
            return _pdf_pages(path, f, operator_dpi)
        with _image(path, f) as im:
            stated = file_dpi(im.info)
            size = im.size
    dpi, source = (operator_dpi, "operator") if operator_dpi else (stated, "file") if stated else (assumed_dpi, "assumed")
    return [_checked(FilePage(path, None, *size, dpi, source))]


def decode(page: FilePage) -> RawPage:
    """The page's pixels (upright, RGB or grey), decoded now and only now."""
    try:
        with _open(page.path) as f:
            if page.index is None:
                with _image(page.path, f) as im:
                    if im.size != (page.width_px, page.height_px):
                        raise ValueError(f"it changed since it was checked ({im.size[0]}×{im.size[1]} pixels now)")
                    image = pixels(im)
            else:
                with pikepdf.open(f) as pdf:
                    image = _pdf_image(pdf.pages[page.index], page)
    except (OSError, ValueError, pikepdf.PdfError) as exc:
        raise UsageError(f"{page.origin}: cannot read the image ({exc}); fix or remove the file") from None
    return RawPage(image, page.dpi, dpi_source=page.dpi_source, origin=page.origin)


def _open(path: Path):
    """The file, opened for reading only when it is a regular file (a named pipe or device never is)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"{path}: not a regular file (a named pipe, device or folder); only page files "
                             "can be imported — remove it or name the image file itself")
        # Non-blocking, so a file swapped for a pipe since the stat cannot hang the open; checked again.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise UsageError(f"{path}: cannot open it ({exc.strerror}); check the name and its permissions") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{path}: not a regular file; only page files can be imported — remove it")
    return os.fdopen(fd, "rb")


def _image(path: Path, f) -> Image.Image:
    """The image's header (Pillow decodes nothing until asked)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(f)
    except Image.DecompressionBombError:
        raise UsageError(_too_large(path, f"more than {2 * limits.MAX_PAGE_PIXELS} pixels")) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the image ({exc}); fix or remove it") from None


def _checked(page: FilePage) -> FilePage:
    """The page, if a scanner could have made it: a believable resolution and at most the largest sheet."""
    if page.dpi_source == "file" and not limits.MIN_DPI <= page.dpi <= limits.MAX_DPI:
        raise UsageError(
            f"{page.origin}: the file states {page.dpi} dpi, outside the {limits.MIN_DPI}–{limits.MAX_DPI} dpi a "
            "scanner produces, so its resolution tag is wrong — measure the page (pixels ÷ its size in inches) "
            "and give that with --dpi N, which overrides the file's")
    w, h = page.width_px, page.height_px
    if min(w, h) < limits.MIN_SIDE_PX:
        raise UsageError(f"{page.origin}: an image of {w}×{h} pixels is too small to be a scanned page "
                         f"(at least {limits.MIN_SIDE_PX} pixels a side) — remove it from the import")
    if limits.too_large(w, h, page.dpi):
        short, long = limits.LARGEST_PAPER_MM
        size = f"{w}×{h} pixels, {w / page.dpi * 25.4:.0f}×{h / page.dpi * 25.4:.0f} mm at {page.dpi} dpi " \
               f"({page.dpi_source})"
        hint = "" if page.dpi_source == "operator" else \
            ", or if it was scanned at a higher resolution, give that with --dpi N"
        raise UsageError(_too_large(page.origin, size, f"A3, {short:.0f}×{long:.0f} mm, at {page.dpi} dpi", hint))
    return page


def _too_large(origin, size: str, largest: str = f"A3 at {limits.MAX_DPI} dpi", hint: str = "") -> str:
    return (f"{origin}: the image is {size}, larger than any page a scanner makes (the largest sheet is {largest}); "
            f"it was not decoded — remove it from the import{hint}")


# -- scanned PDFs: each page one image, its resolution measured from the page's geometry ------------

def _pdf_pages(path: Path, f, operator_dpi: int | None) -> list[FilePage]:
    try:
        with pikepdf.open(f) as pdf:
            found = []
            for index, page in enumerate(pdf.pages):
                placed = FilePage(path, index, 0, 0, 0, "file")
                image, ctm = _placed_image(page, placed)
                width, height = int(image.Width), int(image.Height)
                unit = float(page.obj.get("/UserUnit", 1))
                measured = round(width / (math.hypot(ctm[0], ctm[1]) * unit / 72))
                dpi, source = (operator_dpi, "operator") if operator_dpi else (measured, "file")
                found.append(_checked(FilePage(path, index, width, height, dpi, source)))
            if not found:
                raise UsageError(f"{path}: the PDF has no pages — remove it from the import")
            return found
    except pikepdf.PdfError as exc:
        raise UsageError(f"{path}: cannot read the PDF ({exc}); fix or remove it") from None


def _placed_image(page: pikepdf.Page, where: FilePage) -> tuple[pikepdf.Object, list[float]]:
    """The one image a scanned page draws, and the transformation it is drawn with (its CTM)."""
    ctm, stack, drawn = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], [], []
    images = page.get_images(recursive=False)   # drawn by this page itself
    for operands, operator in pikepdf.parse_content_stream(page, "q Q cm Do"):
        op = str(operator)
        if op == "q":
            stack.append(ctm)
        elif op == "Q" and stack:
            ctm = stack.pop()
        elif op == "cm":
            ctm = _multiply([float(v) for v in operands], ctm)
        elif op == "Do" and str(operands[0]) in images:
            drawn.append((images[str(operands[0])], ctm))
    if len(drawn) != 1:
        what = "no image" if not drawn else f"{len(drawn)} images"
        raise UsageError(f"{where.origin}: the page draws {what}, not one scanned image — import only scanned "
                         "PDFs (one image a page), or export the pages as image files")
    return drawn[0]


def _multiply(m: list[float], n: list[float]) -> list[float]:
    """The PDF matrix product m × n ([a b c d e f] each)."""
    a, b, c, d, e, f = m
    A, B, C, D, E, F = n
    return [a * A + b * C, a * B + b * D, c * A + d * C, c * B + d * D, e * A + f * C + E, e * B + f * D + F]


def _pdf_image(page: pikepdf.Page, where: FilePage) -> np.ndarray:
    """The page's image decoded and turned as the page is shown (the CTM's quarter turn, then /Rotate)."""
    image, (a, b, c, d, _, _) = _placed_image(page, where)
    if (int(image.Width), int(image.Height)) != (where.width_px, where.height_px):
        raise ValueError("it changed since it was checked")
    if a * d - b * c < 0:
        raise ValueError("the image is drawn mirrored")
    with pikepdf.PdfImage(image).as_pil_image() as im:
        array = pixels(im)
    # The image's rows run along (a, b) on the page: a quarter turn counter-clockwise for each 90°.
    turns = round(math.degrees(math.atan2(b, a)) / 90) - int(page.obj.get("/Rotate", 0)) // 90
    return np.ascontiguousarray(np.rot90(array, turns % 4))
