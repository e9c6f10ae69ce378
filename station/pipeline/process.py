"""One captured page through the whole pipeline: deskew, orientation, crop, blank flag, colour guard, encode."""

import hashlib
import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from quire.manifest import DPI_SOURCES
from quire.memory import release_free_heap

from . import blank, colour, crop, deskew, encode, orientation
from .config import PipelineConfig
from .imageio import downscale, planes, to_grey
from .ink import ink_mask, marks_per_ink
from .marks import find_faint_marks, find_marks
from .paper import Paper, find_paper, paper_level, square_edge_deg

ANALYSIS_DPI = 150      # skew, orientation, blank and colour analysis run on a copy at about this resolution
# Not lower: at 100 dpi (issue 13, bench.pipeline on the real-scan corpus) wet-day.jpg's skew came from its
# plate's texture (14° off), a book page skewed 13° came out 23° off, a page with a little colour went grey and
# fewer turned pages were put upright; and the whole pipeline still took 5-7 times the bare encode.
# Handwriting is straightened by its sheet, not by its lines (an archivist squares the paper; a hand
# slants and wanders). It is told from print by two signs together: its marks cover several times the
# ink the skew was measured on (the writing is mostly too faint for the ink mask; the few dark strokes
# left, numerals or a signature, need not run as the page does; on the real corpus print whose sheet
# is off its text: 0.17-1.85, faded handwriting 2.9-3.5), and the profile peaks bluntly (share lost
# half a degree off the peak: print 0.11-0.9, yellowed book pages the bluntest; faded handwriting 0.08).
_FAINT_WRITING = 2.0
_BLUNT = 0.2
_OFF_SHEET_DEG = 0.3        # content closer than this to its sheet's edge: either will do, the content is kept


@dataclass
class ProcessedPage:
    """An encoded page ready for the page store, with the record of what was done to it."""

    data: bytes
    media_type: str
    suffix: str
    width_px: int
    height_px: int
    dpi: int
    colour: str
    record: dict
    master: bytes | None = None     # the untouched capture (lossless TIFF) when the profile keeps masters


def process_page(image: np.ndarray, dpi: int, config: PipelineConfig = PipelineConfig(),
                 dpi_source: str = "scanner") -> ProcessedPage:
    """Deskew, turn upright, crop, flag blank, choose the colour mode and encode one page; never drops a page.

    ``dpi_source`` says where ``dpi`` came from (one of quire.manifest.DPI_SOURCES); it goes into the record.
    """
    return process_taken(lambda: image, dpi, config, dpi_source)


def process_taken(take: Callable[[], np.ndarray], dpi: int, config: PipelineConfig = PipelineConfig(),
                  dpi_source: str = "scanner") -> ProcessedPage:
    """``process_page`` on the image ``take()`` hands over: when nothing else holds it (a page loaded from
    the spool), the captured pixels are let go once the output is rendered, before it is encoded."""
    started = time.perf_counter()
    image = take()
    _check(image, dpi, dpi_source)
    grey_source, captured_shape = image.ndim == 2, image.shape
    small, scale = downscale(image, dpi, ANALYSIS_DPI)
    px_per_mm = dpi * scale / 25.4
    grey_small = to_grey(small)
    paper, skew, source = find_skew(grey_small, px_per_mm, config.max_skew_deg)
    rotation = -skew if abs(skew) >= config.deadband_deg else 0.0
    matrix, (w, h) = deskew.rotation_matrix(image.shape, rotation)
    fill = _surround(grey_small)

    bounds, box = None, None
    if paper is not None:
        outline = (paper.outline + 0.5) / scale - 0.5
        bounds = crop.paper_box(outline, matrix, slack_px=0.5 / scale + 1)
        bounds = crop.with_content(bounds, crop.content_points(grey_small, paper, px_per_mm), matrix, scale)
        box = crop.crop_box(bounds, config.margin_mm * dpi / 25.4, (h, w))
    region = box or [0, 0, w, h]

    # Judge marks on the analysis copy turned and cropped as the output will be; colour needs no turning.
    rgb = planes(small) if small.ndim == 3 else None
    view = _view(small if rgb is None else _darkest(rgb), matrix if rotation else None, region, scale, fill)
    x0, y0, x1, y1 = on_paper = _paper_on(view, bounds, region, scale)
    marks = find_marks(view, on_paper, px_per_mm)
    score = blank.blank_score(marks, px_per_mm)
    is_blank = score < config.blank_threshold
    if is_blank:
        # Faint print fades further on the analysis copy: a page about to be called blank is looked at
        # again at full size (marks.find_faint_marks); pages with marks pay nothing for it. Its way up is
        # not judged on faint marks alone (tried, they read the faded invoice upside down, confidence 0.88):
        # left as captured, and flagged.
        faint = find_faint_marks(image, scale, view, on_paper, px_per_mm,
                                 lambda grid: _view(grid, matrix if rotation else None, region, scale, 255))
        if (faint_score := blank.blank_score(faint, px_per_mm)) >= config.blank_threshold:
            score, is_blank = faint_score, False
    mx0, my0, mx1, my1 = marks.region
    upright = orientation.detect_orientation(marks.boxes, (my1 - my0, mx1 - mx0), px_per_mm)
    sure = upright.confidence >= config.min_orientation_confidence
    turn = upright.turn_deg if sure else 0
    found_colour = colour.colour_content(_paper_part(rgb, paper)) if rgb else {}
    paper_view = view[y0:y1, x0:x1]
    clean = config.allow_bilevel and not found_colour and colour.is_clean_text(paper_view, px_per_mm)
    mode, reason = colour.decide(config, found_colour, clean, grey_source=image.ndim == 2)

    # The analysis copies go before the full-size output is made: a worker's peak is the raw page, the
    # output and whatever is still held then (a 4-core Pi runs three workers in 400 MB; bench.station).
    del small, grey_small, rgb
    # Freed, they would stay in this worker thread's heap (up to glibc's trim limit, 32 MiB) through the
    # render and encode: handed back, three workers' peaks no longer add them (quire.memory).
    release_free_heap()
    if rotation and scale == 1 and image.ndim == 2:
        # A grey page analysed at its own size was turned and cut for the analysis as it is for the output.
        page = orientation.turn(view, turn)
    else:
        page = _render(image, mode, matrix if rotation else None, region, turn, fill)
    kept = encode.master(image, dpi) if config.keep_master else None
    del image   # the encoder's peak is the output alone (the captured page goes now where nothing else holds it)
    threshold = 0.55 * paper_level(np.ascontiguousarray(paper_view[::4, ::4]))
    encoded = encode.encode(page, mode, dpi, config.jpeg_quality, threshold, bgr=True)

    record = {
        "skew_deg": round(skew, 3),                 # content rotation found, counter-clockwise positive
        "skew_source": source,                      # what the skew was measured on
        "rotation_deg": round(rotation, 3) + 0.0,   # rotation applied (-skew or 0); + 0.0 makes -0.0 0.0
        "orientation": turn,                        # quarter turns applied after deskew, degrees counter-clockwise
        "orientation_confidence": upright.confidence,
        # An inspector should look: the page has content but which way up it is could not be told.
        "orientation_flag": not sure and not is_blank,
        # An inspector should look: the content did not tell its skew, and the page was left as captured.
        "skew_flag": source == "undecided" and not is_blank,
        "crop": box,                                # [x, y, w, h] on the deskewed page, None: no background
        "blank": is_blank,
        "blank_score": round(score, 4),             # % of the inspected paper covered by marks
        "colour": mode,
        "colour_reason": reason,                    # for people: the archive decides on colour_evidence
        "colour_evidence": colour.evidence(config, found_colour, grey_source=grey_source),
        "codec": encoded.codec,
        "dpi": dpi,
        "dpi_source": dpi_source,
        "bytes": len(encoded.data),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if kept:
        # Signed in the manifest with the page it was processed into; synced and verified as pages are.
        record["master"] = {"sha256": hashlib.sha256(kept.data).hexdigest(), "bytes": len(kept.data),
                            "media_type": kept.media_type, "width_px": captured_shape[1],
                            "height_px": captured_shape[0]}
    return ProcessedPage(encoded.data, encoded.media_type, encoded.suffix, page.shape[1], page.shape[0],
                         dpi, mode, record, kept.data if kept else None)


def estimate_page_skew(image: np.ndarray, dpi: int, max_skew_deg: float = PipelineConfig().max_skew_deg) -> float:
    """The skew (degrees counter-clockwise) process_page would find on this page, and nothing else."""
    small, scale = downscale(image, dpi, ANALYSIS_DPI)
    return find_skew(to_grey(small), dpi * scale / 25.4, max_skew_deg)[1]


def find_skew(grey: np.ndarray, px_per_mm: float, max_skew_deg: float) -> tuple[Paper | None, float, str]:
    """The sheet on a downscaled grey page, its skew, and what the skew was measured on."""
    paper = find_paper(grey, px_per_mm)
    ink = ink_mask(grey, paper, px_per_mm)
    found = deskew.estimate_skew(ink, px_per_mm, max_skew_deg)
    skew, source = _skew(found, paper, max_skew_deg)
    if source == "content" and found is not None and found.sharpness < _BLUNT:
        # Printed content outvotes its sheet (book pages are trimmed 0.5-4 degrees off their text);
        # faint writing does not.
        sheet = square_edge_deg(paper, skew)
        if sheet is not None and abs(sheet - skew) > _OFF_SHEET_DEG and abs(sheet) <= max_skew_deg \
                and marks_per_ink(grey, paper, px_per_mm, ink) >= _FAINT_WRITING:
            return paper, sheet, "paper edge"
    return paper, skew, source


def _render(image: np.ndarray, mode: str, matrix: np.ndarray | None, region: list[int], turn: int,
            fill: int) -> np.ndarray:
    """The output page: ``region`` of the image rotated by ``matrix`` (None: not rotated; the canvas
    around it filled with ``fill``), then turned, in the pixels the encoder takes for ``mode``: grey,
    or BGRX for colour (a grey source stays grey).

    Grey and bilevel pages drop their colour before the full-size work: a third of the pixels to
    move. Colour pages come out as BGRX, OpenCV's order, which its encoder takes as it is.
    """
    x, y, w, h = region
    if matrix is None:
        part = image[y:y + h, x:x + w]
        if mode != "colour":
            part = to_grey(part)
        elif part.ndim == 3:
            part = cv2.cvtColor(part, cv2.COLOR_RGB2BGRA)
        return orientation.turn(part, turn)
    source = image if mode == "colour" else to_grey(image)
    shifted = np.vstack([matrix, [0.0, 0.0, 1.0]])
    shifted[:2, 2] -= (x, y)
    combined = (orientation.turn_matrix((w, h), turn) @ shifted)[:2]
    if source.ndim == 3:
        # Tile by tile (see warp_bgrx), a quarter turn folded into the warp costs next to nothing.
        return deskew.warp_bgrx(source, combined, (h, w) if turn in (90, 270) else (w, h), fill)
    if turn in (90, 270):
        # Folded into a whole-page warp, a quarter turn would read the source down its columns: twice
        # as slow as warping row by row and then turning the result.
        return orientation.turn(deskew.warp(source, shifted[:2], (w, h), fill), turn)
    return deskew.warp(source, combined, (w, h), fill)


def _skew(found: deskew.Skew | None, paper: Paper | None, max_skew_deg: float) -> tuple[float, str]:
    """The content's skew; failing that the sheet edge's; failing that 0 (leave the page as it is):
    "undecided" where the content's angle is contested, which the record flags for the inspector."""
    if found is not None and found.sharp:
        return found.angle_deg, "content"
    # Too little content to go by (a blank side, a single word): the sheet's edges are the next best guide.
    if paper is not None and paper.edge_deg is not None and abs(paper.edge_deg) <= max_skew_deg:
        return paper.edge_deg, "paper edge"
    if found is not None and found.ambiguous:
        # Angles degrees apart fit the content about as well (a plate with a short caption): a guess
        # could turn the page 15° off; as captured it is at worst as it was fed.
        return 0.0, "undecided"
    if found is not None:
        return found.angle_deg, "content (weak)"
    return 0.0, "none"


def _darkest(rgb: list[np.ndarray]) -> np.ndarray:
    """Each pixel's darkest channel: coloured ink is as much a mark as black."""
    red, green, blue = rgb
    darkest = cv2.min(red, green)
    return cv2.min(darkest, blue, dst=darkest)


def _paper_part(channels: list[np.ndarray], paper: Paper | None) -> list[np.ndarray]:
    """The bounding box of the sheet on each plane of the analysis copy (the whole copy when no sheet was found)."""
    if paper is None:
        return channels
    x, y, w, h = cv2.boundingRect(paper.polygon)
    return [plane[y:y + h, x:x + w] for plane in channels]


def _view(small: np.ndarray, matrix: np.ndarray | None, region: list[int], scale: float, fill: int) -> np.ndarray:
    """The analysis copy rotated like the page (``matrix``, full-size pixels; None: not rotated) and cut
    to the crop ``region`` (full-size pixels)."""
    x, y, w, h = (round(v * scale) for v in region)
    if matrix is None:
        return small[y:y + h, x:x + w]
    # The full-size rotation, seen on the analysis copy: pixel centres scale about their corners.
    to_small = np.array([[scale, 0, 0.5 * scale - 0.5], [0, scale, 0.5 * scale - 0.5], [0, 0, 1]])
    shifted = to_small @ np.vstack([matrix, [0, 0, 1]]) @ np.linalg.inv(to_small)
    shifted[:2, 2] -= (x, y)
    return deskew.warp(small, shifted[:2], (max(1, w), max(1, h)), fill)


def _surround(grey: np.ndarray) -> int:
    """The grey around the page's image: the scanner backing where it shows, else the paper; what
    the corners a rotation uncovers are filled with."""
    ring = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return int(np.median(ring))


def _check(image: np.ndarray, dpi: int, dpi_source: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError("a page image must be a uint8 array, H×W grey or H×W×3 RGB")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"a page image of {image.shape[1]}×{image.shape[0]} pixels is too small to process")
    if not isinstance(dpi, (int, np.integer)) or dpi <= 0:
        raise ValueError(f"the scan resolution must be a positive whole number of dpi, not {dpi!r}")
    if dpi_source not in DPI_SOURCES:
        raise ValueError(f"where the resolution came from must be one of {', '.join(DPI_SOURCES)}, not {dpi_source!r}")


def _paper_on(view: np.ndarray, bounds, region: list[int], scale: float) -> tuple[int, int, int, int]:
    """The paper's box (x0, y0, x1, y1) on the analysis view; the whole view if unknown."""
    vh, vw = view.shape[:2]
    if bounds is None:
        return 0, 0, vw, vh
    x0, y0, x1, y1 = ((b - o) * scale for b, o in zip(bounds, region[:2] * 2))
    # Shrink to whole pixels that are paper, so the analysis never sees the background.
    box = (max(0, int(np.ceil(x0))), max(0, int(np.ceil(y0))),
           min(vw, int(np.floor(x1))), min(vh, int(np.floor(y1))))
    return box if box[2] - box[0] >= 8 and box[3] - box[1] >= 8 else (0, 0, vw, vh)
