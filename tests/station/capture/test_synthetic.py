import numpy as np
import pytest

from station.capture.synthetic import SyntheticSource, render_page

TRUTH = {"skew_deg", "blank", "has_red", "paper_box", "sheet", "side"}


@pytest.fixture(scope="module")
def pages():
    return list(SyntheticSource(seed=5, sheets=4, dpi=100).pages())


def test_duplex_yields_front_then_back_for_every_sheet(pages):
    assert len(pages) == 8
    assert [p.side for p in pages] == ["front", "back"] * 4
    assert [p.truth["sheet"] for p in pages] == [0, 0, 1, 1, 2, 2, 3, 3]
    for page in pages:
        assert TRUTH <= set(page.truth) and page.truth["side"] == page.side
        assert page.truth["blank"] == (page.side == "back")
        assert page.dpi == 100 and page.image.dtype == np.uint8 and page.image.ndim == 3


def test_sheets_vary_and_some_carry_red(pages):
    fronts = [p for p in pages if p.side == "front"]
    assert any(p.truth["has_red"] for p in fronts) and not all(p.truth["has_red"] for p in fronts)
    assert not any(p.truth["has_red"] for p in pages if p.side == "back")


def test_a4_paper_on_a_slightly_larger_dark_background(pages):
    for page in pages:
        x, y, w, h = page.truth["paper_box"]
        assert (w, h) == (827, 1169)                       # 210 × 297 mm at 100 dpi
        height, width = page.image.shape[:2]
        assert width > w and height > h
        assert page.image[:3, :3].mean() < 80                # corner: scanner background
        assert np.median(page.image[height // 2 - 20:height // 2 + 20, width // 2 - 20:width // 2 + 20]) > 200


def test_skew_stays_within_the_limit_and_the_back_mirrors_the_front(pages):
    for front, back in zip(pages[::2], pages[1::2]):
        assert abs(front.truth["skew_deg"]) <= 4.0
        assert back.truth["skew_deg"] == -front.truth["skew_deg"]


def test_same_seed_same_pages_other_seed_other_pages(pages):
    again = list(SyntheticSource(seed=5, sheets=4, dpi=100).pages())
    assert all(np.array_equal(a.image, b.image) and a.truth == b.truth for a, b in zip(pages, again))
    other = next(iter(SyntheticSource(seed=6, sheets=1, dpi=100).pages()))
    assert other.truth["skew_deg"] != pages[0].truth["skew_deg"]


def test_render_page_gives_the_page_the_source_yields(pages):
    page = render_page(5, 3, dpi=100)
    assert np.array_equal(page.image, pages[3].image) and page.truth == pages[3].truth


def test_simplex_yields_fronts_only():
    pages = list(SyntheticSource(seed=1, sheets=3, dpi=100, duplex=False).pages())
    assert [p.side for p in pages] == ["front"] * 3


def test_without_background_the_paper_fills_the_image():
    page = render_page(2, 0, dpi=100, background=False)
    assert page.image.shape[:2] == (1169, 827) and page.truth["paper_box"] == [0, 0, 827, 1169]


def test_close_stops_the_pages():
    source = SyntheticSource(seed=1, sheets=5, dpi=100)
    pages = source.pages()
    next(pages)
    source.close()
    assert list(pages) == []


@pytest.mark.parametrize("orientation", [90, 180, 270])
def test_a_sheet_fed_turned_is_labelled_with_the_turn_that_brings_it_upright(orientation):
    upright = render_page(3, 0, dpi=100, skew_deg=0.0, background=False)
    fed = render_page(3, 0, dpi=100, skew_deg=0.0, background=False, orientation=orientation)
    assert fed.truth["orientation"] == orientation
    back = np.rot90(fed.image, orientation // 90)          # turned counter-clockwise by the label
    assert back.shape == upright.image.shape
    assert np.abs(back.astype(int) - upright.image.astype(int)).mean() < 3


def test_photo_and_sparse_pages_and_the_backing_level():
    photo = render_page(4, 0, dpi=100, kind="photo")
    assert photo.truth["has_colour"] and not photo.truth["blank"]
    sparse = render_page(4, 0, dpi=100, kind="sparse", background=False)
    assert not sparse.truth["blank"] and (sparse.image < 128).mean() < 0.01     # nearly empty, not empty
    dark = render_page(4, 0, dpi=100, backing=12)
    assert dark.image[:3, :3].mean() < 20


def test_an_unknown_orientation_is_refused():
    with pytest.raises(ValueError, match="orientation"):
        render_page(1, 0, dpi=100, orientation=45)
