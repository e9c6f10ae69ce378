import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from bench import realscans
from station.capture.synthetic import render_note, render_page
from station.pipeline import PipelineConfig, process_page
from station.pipeline import deskew, orientation
from station.pipeline.encode import encode
from station.pipeline.process import estimate_page_skew

# A dozen pages across the usual ADF range, and a few fed badly.
ANGLES = [-3.9, -2.6, -1.3, -0.6, 0.3, 1.1, 2.2, 3.7, -10.4, 11.8, -14.5, 14.6]


@pytest.fixture(scope="module")
def skewed():
    pages = [render_page(seed, 0, dpi=150, skew_deg=angle) for seed, angle in enumerate(ANGLES)]
    return [(page, process_page(page.image, page.dpi)) for page in pages]


def test_skew_is_measured_within_0_15_degrees(skewed):
    errors = {p.truth["kind"] + f" {p.truth['skew_deg']:+.1f}°": out.record["skew_deg"] - p.truth["skew_deg"]
              for p, out in skewed}
    assert max(abs(e) for e in errors.values()) < 0.15, errors


def test_rotation_undoes_the_measured_skew(skewed):
    for _, out in skewed:
        assert out.record["rotation_deg"] == pytest.approx(-out.record["skew_deg"], abs=1e-3)


def test_processed_pages_come_out_straight(skewed):
    for page, out in skewed[::4]:
        straightened = np.asarray(Image.open(io.BytesIO(out.data)))
        again = process_page(straightened, page.dpi)
        assert abs(again.record["skew_deg"]) < 0.15, (page.truth, again.record)


def test_page_within_the_deadband_is_not_resampled():
    page = render_page(4, 0, dpi=150, skew_deg=0.02, kind="text")
    out = process_page(page.image, page.dpi)
    assert abs(out.record["skew_deg"]) < PipelineConfig().deadband_deg
    assert out.record["rotation_deg"] == 0.0
    # The file holds exactly the input's pixels inside the crop box: nothing was interpolated.
    x, y, w, h = out.record["crop"]
    untouched = encode(page.image[y:y + h, x:x + w], out.colour, page.dpi, PipelineConfig().jpeg_quality)
    assert out.data == untouched.data


def test_the_paper_edge_does_not_outvote_the_content():
    # Text printed 2° askew on a sheet that lies straight on the dark scanner background …
    sheet = render_page(5, 0, dpi=150, background=False, skew_deg=2.0, kind="table").image
    on_scanner = np.pad(sheet, ((40, 40), (30, 30), (0, 0)), constant_values=50)
    assert process_page(on_scanner, 150).record["skew_deg"] == pytest.approx(2.0, abs=0.15)
    # … and text printed 3° askew one way on a sheet lying 3° askew the other: straight overall.
    sheet = render_page(6, 0, dpi=150, background=False, skew_deg=-3.0, kind="text").image
    padded = np.pad(sheet, ((40, 40), (30, 30), (0, 0)), constant_values=50)
    turned = np.asarray(Image.fromarray(padded).rotate(3.0, Image.Resampling.BILINEAR, fillcolor=(50, 50, 50)))
    assert abs(process_page(turned, 150).record["skew_deg"]) < 0.15


def test_blank_side_is_straightened_by_the_paper_edge():
    back = render_page(7, 1, dpi=150, skew_deg=2.5)
    assert back.truth["blank"]
    out = process_page(back.image, back.dpi)
    assert out.record["skew_deg"] == pytest.approx(back.truth["skew_deg"], abs=0.15)


def test_a_short_note_is_straightened_by_the_paper_edge():
    # One short line cannot fix the angle to a tenth of a degree; the sheet's edges can.
    note = render_note("同意。 张伟 2019.3.2", dpi=150, skew_deg=-2.5)
    out = process_page(note.image, note.dpi)
    assert out.record["skew_deg"] == pytest.approx(-2.5, abs=0.15)
    assert not out.record["blank"]


@pytest.mark.parametrize("kind, skew, options", [
    ("photo", 9.7, {}),                                  # a photograph beside or across the text
    ("seal", -12.3, {"backing": 10}),                    # near-black scanner backing
    ("table", 13.1, {"background": False}),              # the sheet fills the image: no edge to go by
    ("text", -6.4, {"orientation": 90}),                 # fed sideways: the lines run down the image
    ("red_heading", 4.2, {"orientation": 180, "backing": 85}),
    ("sparse", -8.8, {}),                                # a page number or a note: the sheet's edge decides
])
def test_skew_over_mixed_content_is_measured_within_a_tenth_of_a_degree(kind, skew, options):
    page = render_page(70, 0, dpi=150, kind=kind, skew_deg=skew, **options)
    record = process_page(page.image, page.dpi).record
    assert record["skew_deg"] == pytest.approx(skew, abs=0.1), record
    assert record["skew_source"] == ("paper edge" if kind == "sparse" else "content")


@pytest.mark.parametrize("angle, turn", [(0.2, 0), (3.3, 0), (-11.0, 90), (7.5, 180), (-2.0, 270)])
def test_bgrx_warp_in_tiles_matches_one_whole_page_warp(angle, turn):
    image = render_page(8, 0, dpi=150, kind="seal", skew_deg=angle).image
    h, w = image.shape[:2]
    # A canvas reaching past the image on two sides: whole tiles fall outside it and come out white.
    size = (h + 300, w + 300) if turn in (90, 270) else (w + 300, h + 300)
    matrix = (orientation.turn_matrix((w + 300, h + 300), turn) @ np.vstack([deskew.rotation_matrix(
        image.shape, -angle)[0], [0, 0, 1]]))[:2]
    whole = cv2.warpAffine(cv2.cvtColor(image, cv2.COLOR_RGB2BGRA), matrix, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255, 255))
    tiled = deskew.warp_bgrx(image, matrix, size)
    assert tiled.shape == whole.shape and tiled.flags["C_CONTIGUOUS"]
    # The tiles' own offsets round a few positions the other way; no seam, no missing patch.
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    assert np.mean(tiled != whole) < 0.001
    assert any((tiled[rows, cols] == 255).all() for rows in (slice(256), slice(-256, None))
               for cols in (slice(256), slice(-256, None)))


BOOK_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"     # Debian fonts-dejavu-core
BOOK_WORDS = ("histoire manuel recueil traité Paris Bruxelles vol. in-8. gros Ibid. lettres théorie des "
              "richesses sociales campagne notes comte").split()


def book_page(dpi: int, skew_deg: float, seed: int, shade: float = 1.0) -> np.ndarray:
    """A grey catalogue page of small type (2.3 mm on a 3.3 mm pitch, entries numbered in the margin),
    turned ``skew_deg`` by Pillow; with ``shade`` < 1 the paper darkens toward the top left to that
    share of its tone, as an open book photographed under one lamp does."""
    mm = dpi / 25.4
    width, height = round(130 * mm), round(200 * mm)
    page = Image.new("L", (width, height), 232)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(BOOK_FONT, round(2.3 * mm))
    rng = np.random.default_rng(seed)
    y, entry = 18 * mm, 1026
    while y < height - 20 * mm:
        x = 24 * mm
        if rng.random() < 0.3:
            draw.text((14 * mm, y), str(entry), font=font, fill=40)
            entry += 1
            x += 8 * mm
        while x + (length := draw.textlength((word := str(rng.choice(BOOK_WORDS))) + " ", font=font)) < width - 14 * mm:
            draw.text((x, y), word, font=font, fill=40)
            x += length
        y += 3.3 * mm
    turned = np.asarray(page.rotate(skew_deg, Image.Resampling.BICUBIC, expand=True, fillcolor=232), np.float32)
    rows, cols = np.mgrid[0:turned.shape[0], 0:turned.shape[1]]
    darkening = np.clip(1 - (cols / turned.shape[1] + rows / turned.shape[0]) / 1.2, 0, 1)
    return np.clip(turned * (1 - (1 - shade) * darkening), 0, 255).astype(np.uint8)


BOOK_ANGLES = [4.9, -7.3, 11.2, 2.6, -3.4, 8.1]


def test_small_book_type_at_200_dpi_is_measured_within_a_tenth_of_a_degree():
    # Lines 3.3 mm apart: coarse profile bins as wide as that once let the column edges win (0.4° off).
    errors = [estimate_page_skew(book_page(200, angle, seed), 200) - angle for seed, angle in enumerate(BOOK_ANGLES)]
    assert max(abs(e) for e in errors) < 0.1, errors


@pytest.mark.parametrize("dpi", [200, 300])
def test_paper_darkening_toward_a_corner_keeps_its_text_for_the_skew(dpi):
    # Paper at 40 % of its tone in the far corner: a threshold set by the whole sheet took that paper
    # for ink, cleared it as a solid area with its text, and measured the rest up to 1.7° off.
    errors = [estimate_page_skew(book_page(dpi, angle, seed, shade=0.4), dpi) - angle
              for seed, angle in enumerate(BOOK_ANGLES)]
    assert max(abs(e) for e in errors) < 0.1, errors


@pytest.mark.parametrize("variant", ["captured", "turned"])
def test_a_handwritten_sheet_on_a_black_backing_comes_out_within_half_a_degree(variant):
    # htrflow's A0062408_00007 (Riksarkivet, 300 dpi, grey): an 18th-century letter on a black backing,
    # as captured and fed a quarter turn and 0.77 degrees further on a dark backing. The ink mask keeps
    # about a tenth of the faint writing (numerals, a signature, running at 3.7 degrees; all the writing
    # at 2.4); the label is the sheet's, which two of its sides agree on.
    case = next(c for c in realscans.cases(realscans.committed())
                if c.name == f"htrflow-A0062408_00007.jpg:{variant}")
    rendered = realscans.render(case, realscans.FILES)
    record = process_page(rendered.image, rendered.dpi, PipelineConfig(), dpi_source="operator").record
    assert abs(record["skew_deg"] - rendered.truth["skew_deg"]) < 0.5, record
