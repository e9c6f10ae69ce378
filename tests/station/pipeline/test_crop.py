import io

import numpy as np
import pytest
from PIL import Image

from station.capture.synthetic import render_page
from station.pipeline import PipelineConfig, deskew, process_page


@pytest.fixture(scope="module")
def cropped():
    pages = [render_page(11, i, dpi=150) for i in range(6)] + [render_page(12, 0, dpi=300)]
    return [(page, process_page(page.image, page.dpi)) for page in pages]


def _margins_mm(crop, paper, dpi):
    cx, cy, cw, ch = crop
    px, py, pw, ph = paper
    return [(px - cx) * 25.4 / dpi, (py - cy) * 25.4 / dpi,
            (cx + cw - px - pw) * 25.4 / dpi, (cy + ch - py - ph) * 25.4 / dpi]


def test_crop_keeps_the_whole_paper_and_a_2_5_mm_margin(cropped):
    for page, out in cropped:
        margins = _margins_mm(out.record["crop"], page.truth["paper_box"], page.dpi)
        assert all(1.5 <= m <= 3.5 for m in margins), (page.origin, margins)
        assert (out.width_px, out.height_px) == tuple(out.record["crop"][2:])


def test_output_shows_only_a_thin_band_of_scanner_background(cropped):
    for page, out in cropped:
        grey = np.asarray(Image.open(io.BytesIO(out.data)).convert("L"))
        h, w = grey.shape
        # Along the middle of each side, count the dark pixels between the image edge and the paper.
        runs = [grey[h // 2, :], grey[h // 2, ::-1], grey[:, w // 2], grey[::-1, w // 2]]
        for run in runs:
            dark_mm = int(np.argmax(run > 150)) * 25.4 / page.dpi
            assert 1.5 <= dark_mm <= 3.5, (page.origin, dark_mm)


def test_margin_setting_is_honoured():
    page = render_page(11, 0, dpi=150)
    out = process_page(page.image, page.dpi, PipelineConfig(margin_mm=1.0))
    margins = _margins_mm(out.record["crop"], page.truth["paper_box"], page.dpi)
    assert all(0.5 <= m <= 2.0 for m in margins), margins


def test_no_crop_when_the_paper_fills_the_image():
    page = render_page(13, 0, dpi=150, background=False)
    out = process_page(page.image, page.dpi)
    assert out.record["crop"] is None
    # Turned straight onto a canvas that holds every pixel of the scan: none of it is cut off.
    assert (out.width_px, out.height_px) == deskew.rotation_matrix(page.image.shape, out.record["rotation_deg"])[1]
    assert out.width_px > page.image.shape[1] and out.height_px > page.image.shape[0]
