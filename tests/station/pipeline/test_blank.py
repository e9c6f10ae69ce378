import io

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
