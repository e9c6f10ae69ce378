"""Labelled benchmark pages: ±15° skew, all four orientations, text, forms, seals, photos, sparse and blank."""

from dataclasses import dataclass

import numpy as np

from station.capture.base import RawPage
from station.capture.synthetic import render_sheet

CONTENT = ("text", "table", "red_heading", "seal", "photo")
MAX_SKEW_DEG = 15.0


@dataclass(frozen=True)
class PageSpec:
    """One labelled page: how it is drawn and how it lies on the scanner."""

    index: int
    seed: int
    kind: str              # a synthetic front kind, or "blank" for a back side with bleed-through
    skew_deg: float
    orientation: int       # degrees counter-clockwise that turn it upright
    background: bool       # False: the paper fills the image (no scanner backing visible)
    backing: int           # grey level of the scanner backing

    @property
    def text(self) -> bool:
        """True for a page whose text a reader (and the orientation bar) can go by."""
        return self.kind in CONTENT


def specs(count: int, seed: int = 2026) -> list[PageSpec]:
    """``count`` page specs in a fixed mix: 65 % content (a third of it turned), 15 % sparse, 20 % blank."""
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        slot = i % 20
        if slot < 13:
            kind = CONTENT[i % len(CONTENT)]
        elif slot < 16:
            kind = "sparse"
        else:
            kind = "blank"
        turned = rng.random() < 0.45
        orientation = int(rng.choice((90, 180, 270))) if turned else 0
        # Sparse and blank pages have nothing to straighten by but the sheet's edge: always on a backing.
        background = kind not in CONTENT or rng.random() < 0.85
        out.append(PageSpec(i, seed * 1000 + i, kind, round(float(rng.uniform(-MAX_SKEW_DEG, MAX_SKEW_DEG)), 3),
                            orientation, background, int(rng.integers(10, 90))))
    return out


def render(spec: PageSpec, dpi: int = 300) -> RawPage:
    """The page a spec describes, with its truth labels."""
    side = "back" if spec.kind == "blank" else "front"
    kind = "text" if spec.kind == "blank" else spec.kind
    # The back's skew mirrors the front's, so draw the front with the opposite angle.
    skew = -spec.skew_deg if side == "back" else spec.skew_deg
    (page,) = render_sheet(spec.seed, 0, dpi, sides=(side,), skew_deg=skew, kind=kind,
                           orientation=spec.orientation, background=spec.background, backing=spec.backing)
    return page
