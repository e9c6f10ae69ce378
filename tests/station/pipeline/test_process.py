import io
import json

import numpy as np
import pytest
from PIL import Image

from station.capture.synthetic import render_page
from quire.manifest import PageRecord
from station.pipeline import PipelineConfig, ProcessedPage, process_page
from tests.conftest import run_cli

KEYS = {"skew_deg", "skew_source", "skew_flag", "rotation_deg", "orientation", "orientation_confidence",
        "orientation_flag", "crop", "blank", "blank_score", "colour", "colour_reason", "colour_evidence", "codec",
        "dpi", "dpi_source", "bytes", "seconds"}


@pytest.fixture(scope="module")
def page():
    return render_page(41, 0, dpi=150, kind="seal")


def test_record_holds_every_key_as_json(page):
    out = process_page(page.image, page.dpi)
    assert isinstance(out, ProcessedPage)
    assert set(out.record) == KEYS
    assert json.loads(json.dumps(out.record)) == out.record
    record = out.record
    assert isinstance(record["skew_deg"], float) and isinstance(record["rotation_deg"], float)
    assert record["orientation"] == 0 and record["dpi"] == 150 and out.dpi == 150
    assert record["skew_source"] == "content" and 0.6 <= record["orientation_confidence"] <= 1
    assert record["orientation_flag"] is False
    assert all(isinstance(v, int) for v in record["crop"])
    assert isinstance(record["blank"], bool) and isinstance(record["blank_score"], float)
    assert record["colour"] == out.colour and record["seconds"] >= 0
    # The record is what a quire.bundle/2 manifest signs: its declared model takes it as it is.
    PageRecord.model_validate(record)
    assert record["dpi_source"] == "scanner" and record["colour_evidence"]["found_percent"]["red"] > 0


def test_processing_is_deterministic(page):
    first, second = process_page(page.image, page.dpi), process_page(page.image, page.dpi)
    assert first.data == second.data
    assert {**first.record, "seconds": 0} == {**second.record, "seconds": 0}


def test_grey_input_is_processed(page):
    grey = page.image.mean(axis=2).astype(np.uint8)
    out = process_page(grey, page.dpi)
    assert out.colour == "grey" and out.record["skew_deg"] == pytest.approx(page.truth["skew_deg"], abs=0.15)


@pytest.mark.parametrize("image, dpi", [
    (np.zeros((100, 100, 4), np.uint8), 300),
    (np.zeros((100, 100), np.float32), 300),
    (np.zeros((100, 100), np.uint8), 0),
])
def test_unusable_input_is_refused(image, dpi):
    with pytest.raises(ValueError):
        process_page(image, dpi)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="jpeg_quality"):
        PipelineConfig(jpeg_quality=120)
    with pytest.raises(ValueError, match="max_skew_deg"):
        PipelineConfig(max_skew_deg=0)


@pytest.mark.parametrize("skew_deg, orientation", [(0.0, 0), (0.0, 90), (4.0, 0), (4.0, 90), (-3.0, 180)])
def test_colour_page_keeps_its_colours_turned_or_not(skew_deg, orientation):
    page = render_page(41, 0, dpi=150, kind="seal", skew_deg=skew_deg, orientation=orientation)
    out = process_page(page.image, page.dpi)
    pixels = np.asarray(Image.open(io.BytesIO(out.data))).reshape(-1, 3).astype(int)
    seal = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 80]
    assert out.colour == "colour" and out.record["orientation"] == orientation and len(seal) > 100
    red, green, blue = seal.mean(axis=0)
    assert red > blue + 60 and red > green + 60


def test_process_says_where_it_assumes_a_resolution_and_records_it(tmp_path, page):
    Image.fromarray(page.image).save(tmp_path / "plain.jpg")                    # no density in the file
    Image.fromarray(page.image).save(tmp_path / "stated.jpg", dpi=(150, 150))
    out = tmp_path / "out"
    proc = run_cli("quire-station", "--home", tmp_path / "home", "process", tmp_path / "plain.jpg",
                   tmp_path / "stated.jpg", "--out", out)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings == [f"quire-station: warning: {tmp_path / 'plain.jpg'}: the file states no resolution, so 300 dpi "
                        "is assumed (recorded as assumed) — measure it and give --dpi N"]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["dpi"], r["dpi_source"]) for r in records] == [(300, "assumed"), (150, "file")]
    measured = run_cli("quire-station", "--home", tmp_path / "home", "process", tmp_path / "plain.jpg",
                       "--out", out, "--dpi", "150")
    assert "warning" not in measured.stderr
    assert json.loads(measured.stdout)["dpi_source"] == "operator"
