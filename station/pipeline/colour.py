"""Colour guard: which pages must stay in colour, and which may go grey or bilevel."""

import cv2
import numpy as np

from .config import PipelineConfig
from .paper import paper_level, percentile_u8

# After balancing to the paper's own tone (so yellowed paper is neutral), a pixel is coloured
# when its channels spread at least this far apart; scanner colour fringes at black text stay below.
MIN_CHROMA = 60
# Content of one colour counts when it covers at least this percentage of the paper (~6 mm² on A4).
MIN_COLOUR_PERCENT = 0.01
_HUES = (("red", 0, 20), ("orange/yellow", 20, 70), ("green", 70, 170), ("blue", 170, 260),
         ("purple", 260, 330), ("red", 330, 360))
_LABEL = {"red": "red content (seal/heading)"}
_CLEAN_EDGE_MM = 2.0


def colour_content(channels: list[np.ndarray]) -> dict[str, float]:
    """Percentage of the (downscaled, paper-only) page, given as its red, green and blue planes,
    covered by each colour family found on it."""
    white = [max(1.0, percentile_u8(np.ascontiguousarray(c[::4, ::4]), 80)) for c in channels]
    # Balance out a tint of the paper, but no more: on a mostly red page (a certificate cover) the
    # "paper" percentile falls on the red itself, and full balancing would make the red grey.
    white = [max(w, 0.8 * max(white)) for w in white]
    balanced = [cv2.convertScaleAbs(c, alpha=255.0 / w) for c, w in zip(channels, white)]
    # Two page-size buffers, each step written into one of them: a fresh buffer per step costs more in
    # the page faults of its new memory than the step itself.
    top = cv2.max(balanced[0], balanced[1])
    cv2.max(top, balanced[2], dst=top)
    spread = cv2.min(balanced[0], balanced[1])
    cv2.min(spread, balanced[2], dst=spread)
    cv2.subtract(top, spread, dst=spread)
    # A spread of MIN_CHROMA also makes the pixel at least that bright: the top channel is above it.
    cv2.threshold(spread, MIN_CHROMA - 1, 1, cv2.THRESH_BINARY, dst=spread)
    if not cv2.countNonZero(spread):
        return {}
    # Hue of the coloured pixels only, in degrees (HSV_FULL spreads 360° over 0–255). The 0/1 spread
    # read as a boolean mask picks them several times faster than the indices np.flatnonzero lists.
    coloured = spread.view(bool)
    pixels = np.stack([b[coloured] for b in balanced], axis=1)
    hue = cv2.cvtColor(pixels[:, None, :], cv2.COLOR_RGB2HSV_FULL)[:, 0, 0]
    counts = np.bincount(hue, minlength=256)
    degrees = np.arange(256) * (360 / 256)
    found: dict[str, float] = {}
    for name, lo, hi in _HUES:
        share = 100.0 * float(counts[(degrees >= lo) & (degrees < hi)].sum()) / top.size
        found[name] = found.get(name, 0.0) + share
    # Red first: red headings and seals are what the standard names; then by area.
    ranked = sorted(found.items(), key=lambda kv: (kv[0] != "red", -kv[1]))
    return {k: v for k, v in ranked if v >= MIN_COLOUR_PERCENT}


def is_clean_text(grey: np.ndarray, px_per_mm: float) -> bool:
    """True when the (downscaled, paper-only) page is black marks on even paper, with no grey areas.

    Mid-tones right beside black strokes are their anti-aliased edges; mid-tones anywhere else
    (faint writing, shading, photos, bleed-through) mean bilevel would lose something. The paper's
    own edge, blended with the background, is left out.
    """
    inset = round(_CLEAN_EDGE_MM * px_per_mm)
    grey = grey[inset:grey.shape[0] - inset, inset:grey.shape[1] - inset]
    if grey.size == 0:
        return False
    level = paper_level(grey[::4, ::4])
    ink = grey < 0.5 * level
    mid = (grey >= 0.5 * level) & (grey < 0.93 * level)
    edges = cv2.dilate(ink.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    stray = np.count_nonzero(mid & ~edges) / grey.size
    black = not ink.any() or float(np.median(grey[ink])) < 0.35 * level
    return level > 150 and black and stray < 0.0002


def evidence(config: PipelineConfig, found: dict[str, float], grey_source: bool) -> dict:
    """What the colour decision rests on, as the signed page record carries it (quire.manifest.ColourEvidence)."""
    return {"found_percent": {k: round(v, 4) for k, v in found.items()}, "grey_source": grey_source,
            "policy": config.colour_policy}


def decide(config: PipelineConfig, found: dict[str, float], clean: bool, grey_source: bool) -> tuple[str, str]:
    """The colour mode for the page and the reason, in words an inspector can check."""
    if config.colour_policy == "colour":
        return "colour", "policy: always colour" + (" (source is greyscale)" if grey_source else "")
    if found:
        content = ", ".join(f"{_LABEL.get(k, k + ' content')} {v:.2f}% of page" for k, v in found.items())
        return "colour", f"{content}; policy auto → colour"
    source = "greyscale source" if grey_source else "no colour content"
    if config.allow_bilevel and clean:
        return "bilevel", f"{source}; clean black text; policy auto, bilevel allowed → bilevel"
    return "grey", f"{source}; policy auto → grey"
