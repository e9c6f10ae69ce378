"""One captured page through the whole pipeline: deskew, crop, blank flag, colour guard, encode."""

import time
from dataclasses import dataclass

import numpy as np

from . import blank, colour, crop, deskew, encode
from .config import PipelineConfig
from .imageio import downscale, to_grey
from .paper import Paper, find_paper, paper_level

ANALYSIS_DPI = 150      # skew, blank and colour analysis run on a copy at about this resolution


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


def process_page(image: np.ndarray, dpi: int, config: PipelineConfig = PipelineConfig()) -> ProcessedPage:
    """Deskew, crop, flag blank, choose the colour mode and encode one page; never drops a page."""
    started = time.perf_counter()
    _check(image, dpi)
    small, scale = downscale(to_grey(image), dpi, ANALYSIS_DPI)
    px_per_mm = dpi * scale / 25.4
    paper = find_paper(small)

    skew = _skew(small, paper, px_per_mm, config.max_skew_deg)
    rotation = -skew if abs(skew) >= config.deadband_deg else 0.0
    matrix = deskew.rotation_matrix(image.shape, rotation)

    h, w = image.shape[:2]
    bounds, box = None, None
    if paper is not None:
        outline = (paper.outline + 0.5) / scale - 0.5
        bounds = crop.paper_box(outline, matrix, slack_px=0.5 / scale + 1)
        box = crop.crop_box(bounds, config.margin_mm * dpi / 25.4, image.shape)
    region = box or [0, 0, w, h]
    if rotation:
        page = deskew.warp(image, matrix, region)
    else:
        x, y, rw, rh = region
        page = np.ascontiguousarray(image[y:y + rh, x:x + rw])

    view, view_scale = downscale(page, dpi, ANALYSIS_DPI)
    on_paper = _paper_on(view, bounds, region, view_scale)
    x0, y0, x1, y1 = on_paper
    paper_view = view[y0:y1, x0:x1]
    score = blank.blank_score(view, on_paper, dpi * view_scale / 25.4)
    grey_view = to_grey(paper_view)
    found = colour.colour_content(paper_view) if page.ndim == 3 else {}
    clean = config.allow_bilevel and not found and colour.is_clean_text(grey_view, dpi * view_scale / 25.4)
    mode, reason = colour.decide(config, found, clean, grey_source=page.ndim == 2)
    threshold = 0.55 * paper_level(grey_view[::4, ::4])
    encoded = encode.encode(page, mode, dpi, config.jpeg_quality, threshold)

    record = {
        "skew_deg": round(skew, 3),                 # content rotation found, counter-clockwise positive
        "rotation_deg": round(rotation, 3) + 0.0,   # rotation applied (-skew or 0); + 0.0 makes -0.0 0.0
        "orientation": 0,                           # quarter turns applied; orientation detection is to come
        "crop": box,                                # [x, y, w, h] on the deskewed page, None: no background
        "blank": score < config.blank_threshold,
        "blank_score": round(score, 4),             # % of the inspected paper covered by marks
        "colour": mode,
        "colour_reason": reason,
        "codec": encoded.codec,
        "dpi": dpi,
        "bytes": len(encoded.data),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return ProcessedPage(encoded.data, encoded.media_type, encoded.suffix, page.shape[1], page.shape[0],
                         dpi, mode, record)


def _skew(small: np.ndarray, paper: Paper | None, px_per_mm: float, max_skew_deg: float) -> float:
    """The content's skew; failing that the sheet edge's; failing that 0 (leave the page as it is)."""
    found = deskew.estimate_skew(small, paper, px_per_mm, max_skew_deg)
    if found is not None and found.sharp:
        return found.angle_deg
    # Too little content to go by (a blank side, a single word): the sheet's edges are the next best guide.
    if paper is not None and abs(paper.edge_deg) <= max_skew_deg:
        return paper.edge_deg
    return 0.0


def _check(image: np.ndarray, dpi: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError("a page image must be a uint8 array, H×W grey or H×W×3 RGB")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"a page image of {image.shape[1]}×{image.shape[0]} pixels is too small to process")
    if not isinstance(dpi, (int, np.integer)) or dpi <= 0:
        raise ValueError(f"the scan resolution must be a positive whole number of dpi, not {dpi!r}")


def _paper_on(view: np.ndarray, bounds, region: list[int], scale: float) -> tuple[int, int, int, int]:
    """The paper's box (x0, y0, x1, y1) on the downscaled processed page; the whole page if unknown."""
    vh, vw = view.shape[:2]
    if bounds is None:
        return 0, 0, vw, vh
    x0, y0, x1, y1 = ((b - o) * scale for b, o in zip(bounds, region[:2] * 2))
    # Shrink to whole pixels that are paper, so the analysis never sees the background.
    box = (max(0, int(np.ceil(x0))), max(0, int(np.ceil(y0))),
           min(vw, int(np.floor(x1))), min(vh, int(np.floor(y1))))
    return box if box[2] - box[0] >= 8 and box[3] - box[1] >= 8 else (0, 0, vw, vh)
