"""Pages fed sideways or upside down come out upright; a page that cannot tell is left as fed and flagged."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from station.capture.synthetic import render_note, render_page
from station.pipeline import PipelineConfig, process_page

FED = [("text", 90), ("table", 180), ("red_heading", 270), ("seal", 180), ("photo", 90), ("text", 270)]


def _pixels(out) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(out.data)).convert("L"), dtype=np.float32)


@pytest.fixture(scope="module")
def pairs():
    """Each page processed as fed the right way up and as fed turned, both 3° askew."""
    out = []
    for seed, (kind, turned) in enumerate(FED):
        upright = render_page(60 + seed, 0, dpi=150, kind=kind, skew_deg=3.0)
        fed = render_page(60 + seed, 0, dpi=150, kind=kind, skew_deg=3.0, orientation=turned)
        out.append((fed, process_page(upright.image, 150), process_page(fed.image, 150)))
    return out


def test_turned_pages_are_turned_back(pairs):
    for fed, _, out in pairs:
        record = out.record
        assert record["orientation"] == fed.truth["orientation"], (fed.truth["kind"], record)
        assert record["orientation_confidence"] >= PipelineConfig().min_orientation_confidence
        assert record["orientation_flag"] is False
        assert out.height_px > out.width_px                      # A4 portrait, as read


def test_a_turned_page_comes_out_as_the_upright_one_does(pairs):
    for fed, upright, out in pairs:
        a, b = _pixels(upright), _pixels(out)
        # A quarter of the size: a pixel's difference in where the crop falls must not count.
        size = (min(a.shape[1], b.shape[1]) // 4, min(a.shape[0], b.shape[0]) // 4)
        a, b = cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        same, flipped = np.abs(a - b).mean(), np.abs(a - b[::-1, ::-1]).mean()
        assert same < 4 and same < flipped / 3, (fed.truth["kind"], same, flipped)


def test_the_skew_of_a_sideways_page_is_measured(pairs):
    for fed, _, out in pairs:
        assert out.record["skew_deg"] == pytest.approx(fed.truth["skew_deg"], abs=0.1), fed.truth


def test_a_page_number_alone_is_left_as_fed_and_flagged():
    note = render_note("- 3 -", dpi=150, size_mm=3.5, orientation=90)
    record = process_page(note.image, 150).record
    assert record["orientation"] == 0 and record["orientation_flag"] is True
    assert record["orientation_confidence"] < PipelineConfig().min_orientation_confidence
    assert not record["blank"]


def test_a_blank_page_is_not_flagged_for_orientation():
    back = render_page(7, 1, dpi=150, orientation=180)
    record = process_page(back.image, 150).record
    assert record["blank"] and record["orientation"] == 0 and record["orientation_flag"] is False


def test_the_confidence_needed_is_a_setting(pairs):
    fed, _, _ = pairs[1]
    record = process_page(fed.image, 150, PipelineConfig(min_orientation_confidence=1.0)).record
    assert record["orientation"] == 0 and record["orientation_flag"] is True
    with pytest.raises(ValueError, match="min_orientation_confidence"):
        PipelineConfig(min_orientation_confidence=1.5)


def _square_script_page(stops: bool) -> np.ndarray:
    """An A5 page at 150 dpi of 14 lines of square characters (no ascenders to go by, as Chinese
    has none), a full stop at the foot after each line's last character if ``stops``; at its foot a
    short caption with a row of dashes level with the caption's top, as a broken rule lies beside a
    page's imprint (Leptonica's boismort.15)."""
    mm = 150 / 25.4
    page = np.full((round(210 * mm), round(148 * mm)), 236, np.uint8)
    rng = np.random.default_rng(5)
    cell, dot = round(4 * mm), round(1 * mm)
    for row in range(14):
        y, x = round((20 + row * 9) * mm), round(15 * mm)
        while x < page.shape[1] - 15 * mm - cell:
            page[y:y + cell, x:x + cell - 3] = 30
            x += cell + (round(3 * mm) if rng.random() < 0.15 else 0)
        if stops:
            page[y + cell - dot:y + cell, x - 2:x - 2 + dot] = 30
    y = round(160 * mm)
    for i in range(3):
        x = round((15 + 5 * i) * mm)
        page[y:y + cell, x:x + cell - 3] = 30
    if not stops:
        for i in range(22):
            x = round((40 + 4 * i) * mm)
            page[y:y + 2, x:x + 6] = 30
    return page


def test_one_row_of_dashes_does_not_turn_a_page():
    # The dashes sit high on their line, as stops do on a line upside down: 22 votes from one line
    # turned the upright page over (confidence 0.85) and kept it turned when fed upside down.
    page = _square_script_page(stops=False)
    for fed in (0, 180):
        record = process_page(np.rot90(page, fed // 90).copy(), 150).record
        assert record["orientation"] == 0 and record["orientation_flag"] is True, (fed, record)
    # Stops at the foot of every line still tell the way up.
    record = process_page(np.rot90(_square_script_page(stops=True), 2).copy(), 150).record
    assert record["orientation"] == 180 and record["orientation_flag"] is False, record
