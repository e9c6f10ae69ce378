"""The benchmark's own parts work: the labelled page set, one page measured and reported, a small batch."""

import numpy as np
import pytest

from bench import batch, measure, pages, peers, report
from station.capture.synthetic import render_page
from tests.systemd.tools import missing


def test_the_page_set_is_labelled_and_mixed():
    specs = pages.specs(200)
    assert len(specs) == 200 and len({s.index for s in specs}) == 200
    assert all(abs(s.skew_deg) <= pages.MAX_SKEW_DEG for s in specs)
    assert {s.orientation for s in specs} == {0, 90, 180, 270}
    kinds = {s.kind for s in specs}
    assert set(pages.CONTENT) | {"sparse", "blank"} <= kinds
    assert sum(s.kind == "blank" for s in specs) >= 30 and any(not s.background for s in specs)
    assert pages.specs(5) == specs[:5]                 # the same pages every run


def test_a_blank_spec_renders_a_blank_back_with_the_spec_skew():
    spec = next(s for s in pages.specs(40) if s.kind == "blank")
    page = pages.render(spec, dpi=60)
    assert page.truth["blank"] and page.truth["skew_deg"] == pytest.approx(spec.skew_deg)


def test_one_page_measured_and_reported(monkeypatch):
    monkeypatch.setattr(measure, "DPI", 100)            # a small page: the same path, faster
    spec = pages.specs(3)[2]
    result = measure.measure(spec, wanted=())
    assert abs(report.skew_error(result["quire_estimate"][0], result["truth"]["skew_deg"])) < 0.2
    assert result["quire_full_s"] > 0 and result["encode_s"] > 0
    text = report.render([result], None, {})
    assert "Quire" in text and "ratio Quire ÷ bare encode" in text and "Orientation" in text


def test_the_report_sets_the_floor_under_the_speed_bar_beside_quire(monkeypatch):
    _leptonica()
    monkeypatch.setattr(measure, "DPI", 100)
    spec = next(s for s in pages.specs(20) if s.kind == "text" and abs(s.skew_deg) > 1)
    result = measure.measure(spec, wanted=("leptonica",), repeat=1)
    assert result["record"]["rotation_deg"] != 0
    floor = result["floor"]
    # The rotation is timed on the output's pixels, so it costs something, and no more than the whole pipeline.
    assert 0 < floor["rotate_s"] < result["quire_full_s"] and floor["skew_s"] > 0
    line = next(line for line in report.render([result], None, {}).splitlines() if "floor" in line)
    expected = (floor["skew_s"] + floor["rotate_s"] + result["encode_s"]) / result["encode_s"]
    assert f"median {expected:.2f}× the bare encode" in line and "Leptonica's ±15° skew" in line


def test_errors_are_folded_to_a_quarter_turn():
    assert report.skew_error(89.9, -0.1) == pytest.approx(0.0)
    assert report.skew_error(None, 2.5) == pytest.approx(2.5)


def test_leptonica_finds_the_skew_when_installed():
    lept = _leptonica()
    page = render_page(9, 0, dpi=150, skew_deg=3.0, kind="text", background=False)
    angle, seconds = lept.find_skew(page.image.mean(axis=2).astype(np.uint8), 15.0)
    assert angle == pytest.approx(3.0, abs=0.2) and seconds > 0


def _leptonica() -> peers.Leptonica:
    """Leptonica through the benchmark's own binding; the test fails, never skips, in CI when it is missing."""
    try:
        return peers.Leptonica()
    except OSError:
        missing("Leptonica (liblept5 or libleptonica6) is not installed; `make test` installs it")


def test_a_small_batch_reports_memory_and_speed(tmp_path):
    for i in range(2):
        np.save(tmp_path / f"{i}.npy", render_page(4, i, dpi=60).image)
    figures = batch.run(tmp_path, 3, dpi=60)
    assert figures["pages"] == 3 and 0 < figures["peak_rss_mb"] < 2000 and figures["pages_per_min"] > 0
