import io

import cv2
import numpy as np
import pytest
from PIL import Image

from station.capture.synthetic import SyntheticSource, render_note
from station.pipeline import process_page


@pytest.fixture(scope="module")
def duplex():
    source = SyntheticSource(seed=1, sheets=4, dpi=150)
    return [(page, process_page(page.image, page.dpi)) for page in source.pages()]


def test_back_sides_with_bleed_through_are_flagged_blank(duplex):
    backs = [(p, out) for p, out in duplex if p.side == "back"]
    assert len(backs) == 4
    assert any(p.truth["punch_holes"] for p, _ in backs)
    for page, out in backs:
        assert out.record["blank"], (page.origin, out.record["blank_score"])


def test_fronts_are_not_blank(duplex):
    for page, out in duplex:
        if page.side == "front":
            assert not out.record["blank"], (page.origin, out.record["blank_score"])
            assert out.record["blank_score"] > 1.0     # a page of text covers percents of the paper


def test_blank_pages_are_kept(duplex):
    for page, out in duplex:
        if out.record["blank"]:
            image = Image.open(io.BytesIO(out.data))
            assert image.size == (out.width_px, out.height_px)


@pytest.mark.parametrize("text, size_mm", [("张伟", 4.2), ("- 3 -", 3.5)])
def test_a_page_with_one_word_is_not_blank(text, size_mm):
    note = render_note(text, dpi=150, size_mm=size_mm)
    out = process_page(note.image, note.dpi)
    assert not out.record["blank"], out.record["blank_score"]


def test_an_empty_sheet_is_blank():
    empty = render_note("", dpi=150)
    out = process_page(empty.image, empty.dpi)
    assert out.record["blank"] and out.record["blank_score"] == 0.0


def _lines_of_text(ink: int, dpi: int = 300) -> np.ndarray:
    """An A5 sheet (no scanner backing) with twelve lines of thin print in grey ``ink`` on paper of 240."""
    mm = dpi / 25.4
    page = np.full((round(210 * mm), round(148 * mm), 3), 240, np.uint8)
    for row in range(12):
        cv2.putText(page, f"Facture {56818 + row}  le 15/10/2010  {row * 39.5:8.2f} EUR", (round(15 * mm),
                    round((30 + 12 * row) * mm)), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (ink,) * 3, 2, cv2.LINE_AA)
    return cv2.GaussianBlur(page, (3, 3), 0.6)          # the scanner's optics


def test_faded_print_is_not_blank_and_its_way_up_is_left_to_the_inspector():
    # Print 17 % darker than its paper (a worn ribbon, a faded copy): below the contrast of a mark,
    # and thinner still on the analysis copy, but sharp.
    out = process_page(_lines_of_text(ink=200), 300)
    assert not out.record["blank"], out.record["blank_score"]
    assert out.record["orientation"] == 0 and out.record["orientation_flag"], out.record


def test_faded_print_at_200_dpi_is_found_on_its_150_dpi_analysis_copy():
    # A 200-dpi page is analysed at 3/4 of its size; the second look at its faint marks maps them there.
    out = process_page(_lines_of_text(ink=200, dpi=200), 200)
    assert not out.record["blank"], out.record["blank_score"]


def test_a_back_with_bleed_through_as_dark_as_faded_print_is_blank():
    # The same lines printed black on the other side show through mirrored, blurred by the paper, and
    # as much darker than the paper as the faded print above: the blur tells them apart.
    darkness = 240 - _lines_of_text(ink=20)[..., 0].astype(np.float32)
    ghost = cv2.GaussianBlur(cv2.flip(darkness, 1), (0, 0), 0.25 * 300 / 25.4)
    back = np.clip(240 - ghost * (0.2 * 240 / ghost.max()), 0, 255).astype(np.uint8)
    assert 1 - back.min() / 240 >= 0.19            # its darkest at least as dark as the faded print
    out = process_page(cv2.cvtColor(back, cv2.COLOR_GRAY2RGB), 300)
    assert out.record["blank"], out.record["blank_score"]
