"""Cover sheets: the printed PDF, and finding a sheet in scanned stacks however it was fed.

The stacks are Quire's own PDF rendered back by poppler's pdftoppm at 200/300/600 dpi, turned up to
±15° or upside down, with JPEG noise, low contrast and bleed-through, mixed with content pages that
carry other QR codes and barcodes (bench.coversheets makes them, for the benchmark too).
"""

import subprocess

import numpy as np
import pikepdf
import pytest

from bench.coversheets import VARIANTS, content_page, degrade, printed, scanned
from station.cli import main as station_main
from station.coversheet import Sheet, parse_payload, payload, write_pdf
from station.pipeline.coversheet import find

SHEETS = (Sheet("D-0007", "1-1", "干部履历表"), Sheet("D-0007", "9-2-3", "干部任免审批表（县委组织部）"),
          Sheet("D-0007"))


def test_the_pdf_is_a4_one_page_per_sheet_with_the_same_in_large_text(tmp_path):
    out = tmp_path / "sheets.pdf"
    assert write_pdf(out, list(SHEETS)) == 3
    with pikepdf.open(out) as pdf:
        assert len(pdf.pages) == 3
        width, height = (float(v) for v in pdf.pages[0].mediabox[2:])
        assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (210, 297)
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")
    assert "档号 D-0007" in pages[0] and "材料 1-1" in pages[0] and "干部履历表" in pages[0]
    assert "材料 9-2-3" in pages[1] and "干部任免审批表" in pages[1]
    assert "下一份材料" in pages[2]


def test_the_code_says_what_the_sheet_says_and_other_codes_are_not_sheets():
    for sheet in SHEETS:
        assert parse_payload(payload(sheet)) == Sheet(sheet.archive_no, sheet.item, sheet.title)
    for other in ("https://example.org/", "QUIRE-COVER/2\nD-1\n1-1\nx", "QUIRE-COVER/1",
                  "QUIRE-COVER/1\nD-1\nnot-an-item\nx"):
        assert parse_payload(other) is None


# Every variant at 200 and 300 dpi; at 600 dpi (large pages) three, enough to show the resolution is handled.
CASES = [(dpi, v) for dpi in (200, 300) for v in VARIANTS] + [(600, v) for v in ("skewed", "upside-down", "jpeg")]


@pytest.mark.parametrize(("dpi", "variant"), CASES)
def test_a_sheet_is_found_at_any_resolution_skew_turn_and_degradation(dpi, variant):
    rng = np.random.default_rng(dpi * 10 + VARIANTS.index(variant))
    papers = printed(SHEETS, dpi)
    for i, paper in enumerate(papers):
        back = content_page(500 + i, dpi, rng, codes=False) if variant == "bleed-through" else None
        image = degrade(paper, dpi, variant, rng, back)
        found = find(image, dpi)
        assert found is not None, f"sheet {i + 1} not found at {dpi} dpi ({variant})"
        assert found.sheet == SHEETS[i]


def test_turned_fifteen_degrees_either_way_and_upside_down_it_is_still_found():
    rng = np.random.default_rng(3)
    paper = printed(SHEETS, 200)[1]
    for angle in (-15.0, 15.0):
        for upside_down in (False, True):
            found = find(scanned(paper, 200, rng, angle=angle, upside_down=upside_down, jpeg_quality=50), 200)
            assert found is not None and found.sheet.item == "9-2-3", (angle, upside_down)


@pytest.mark.parametrize("dpi", [200, 300])
def test_content_pages_with_their_own_qr_codes_and_barcodes_are_not_sheets(dpi):
    rng = np.random.default_rng(dpi)
    for seed in range(8):
        page = scanned(content_page(seed, dpi, rng), dpi, rng, angle=float(rng.uniform(-15, 15)),
                       upside_down=seed % 2 == 1)
        assert find(page, dpi) is None, f"content page {seed} taken for a cover sheet at {dpi} dpi"


def test_coversheets_command_prints_the_named_materials_and_a_generic_sheet(tmp_path, capsys):
    home = tmp_path / "st"
    from tests.conftest import make_station

    make_station(home).close()
    out = tmp_path / "d.pdf"
    code = station_main(["--home", str(home), "coversheets", "--dossier", "D-0007", "--item", "1-1=干部履历表",
                         "--item", "9-2-3=干部任免审批表", "--generic", "--out", str(out)])
    assert code == 0
    assert "3 cover sheets" in capsys.readouterr().out
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    assert "材料 1-1" in text and "材料 9-2-3" in text and "下一份材料" in text
    code = station_main(["--home", str(home), "coversheets", "--dossier", "D-0007", "--item", "1-1",
                         "--out", str(out)])
    assert code == 2
    assert "--item 1-1=TITLE" in capsys.readouterr().err
