"""Effective resolution end to end: the station records the physical size each page covers from the
scanner's own geometry; the archive checks pixels ÷ size against the stated dpi (profile rule)."""

import json
import math

from central import profile
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register


def test_pages_carry_their_physical_extent_and_pass_an_archive_that_requires_it(tmp_path, central):
    archive, address = central
    (archive.config.home / "profiles" / "extent.toml").write_text(
        'format = "quire.profile/1"\nname = "extent"\nversion = 1\nextends = "tests-150dpi"\n'
        'title = "extent required"\n[resolution]\nmin_dpi = 50\nrequire_extent = true\n')
    profile.assign(archive, "unit-a", "extent")
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=75,
                                                 sane_options={"test_picture": "Color pattern"}))
    try:
        scan(st, {"archive_no": "D-E"}, {"item": "1-1", "title": "ADF"}, "sane:test:0")
        scan(st, {"archive_no": "D-E"}, {"item": "2-1", "title": "synthetic"}, "synthetic:seed=3,sheets=1")
        report = sync(st)
    finally:
        st.close()
    assert not report.rejected and len(report.committed) == 2
    rows = archive.catalogue.query("SELECT m.item, p.width_px, p.height_px, p.dpi, p.record_json FROM pages p"
                                   " JOIN materials m ON m.id = p.material_id")
    assert len(rows) == 12
    for row in rows:
        width_mm, height_mm = json.loads(row["record_json"])["extent_mm"]
        for pixels, mm in ((row["width_px"], width_mm), (row["height_px"], height_mm)):
            assert abs(pixels / (mm / 25.4) - row["dpi"]) <= row["dpi"] * 0.02
    # Quire scans the test device's whole 200 × 200 mm bed; deskewing keeps every pixel on a canvas that
    # holds the turned bed, so a page lies within the bed's bounding box at the angle it was turned by.
    sane = [json.loads(r["record_json"]) for r in rows if r["item"] == "1-1"]
    assert sane
    for record in sane:
        turn = math.radians(abs(record["rotation_deg"]))
        bound = 200 * (math.cos(turn) + math.sin(turn)) + 0.5
        assert all(0 < side <= bound for side in record["extent_mm"]), (record["extent_mm"], record["rotation_deg"])
