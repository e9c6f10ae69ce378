"""A whole dossier in one feed, split at Quire's cover sheets into one sealed bundle per material.

The stack is a folder of page files fed like an ADF (the folder source, selected like any other):
cover sheets printed by Quire's PDF and rendered back by pdftoppm, turned and degraded as scanned,
between synthetic content pages, one of which carries its own QR code and barcode.
"""

import functools
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from bench.coversheets import content_page, printed, scanned
from central.verify import verify
from station import home
from station.coversheet import Sheet
from station.errors import ScannerJammed
from station.purge import purge
from station.scan import CoverSheetRefused, open_spool, scan_dossier
from station.sync import sync
from tests.conftest import make_station, run_cli

DPI = 200
DOSSIER = {"archive_no": "D-0007"}
SHEETS = (Sheet("D-0007", "1-1", "干部履历表"), Sheet("D-0007", "4-1-2", "学历证明"),
          Sheet("D-0007", "9-2-3", "干部任免审批表"), Sheet("D-0008", "1-1", "另一份档案的履历表"), Sheet("D-0007"))


@functools.cache
def _printed() -> dict:
    """The cover sheets as printed, rendered once per process (read only: scanned() copies)."""
    return dict(zip(SHEETS, printed(SHEETS, DPI)))


def _stack(folder, layout: list) -> str:
    """Write the feed as numbered PNG files stating 200 dpi: a Sheet is its printed cover sheet (scanned
    turned and noisy), an int the content page of that seed (seeds ≥ 100 carry their own QR code). PNG's
    fastest compression: the same pixels, a quarter of the CPU of the default level."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    papers = _printed()
    for i, what in enumerate(layout, 1):
        if isinstance(what, Sheet):
            image = scanned(papers[what], DPI, rng, angle=float(rng.uniform(-12, 12)), upside_down=i % 2 == 0,
                            jpeg_quality=60)
        else:
            image = scanned(content_page(what, DPI, rng, codes=what >= 100), DPI, rng, angle=1.0)
        Image.fromarray(image).save(folder / f"{i:03d}.png", dpi=(DPI, DPI), compress_level=1)
    return f"folder:{folder}"


A, B, C, OTHER, NEXT = SHEETS
THREE = [A, 1, 2, B, 103, C, 4, 5]      # 1-1: two pages, 4-1-2: one (with a QR code), 9-2-3: two


def test_one_feed_of_three_materials_makes_three_bundles_and_syncs_them(tmp_path, station, central):
    archive, _ = central
    done = scan_dossier(station, DOSSIER, None, _stack(tmp_path / "feed", THREE))
    assert [(r.item, r.total_pages) for r in done.materials] == [("1-1", 2), ("4-1-2", 1), ("9-2-3", 2)]
    assert done.sheets == 3
    bundles = {}
    for result in done.materials:
        assert result.bundle_id is not None
        manifest = json.loads(station.store.db.execute(
            "SELECT manifest FROM bundles WHERE id = ?", [result.bundle_id]).fetchone()[0])
        sheet = manifest["material"]["cover_sheet"]
        assert sheet["payload"].startswith("QUIRE-COVER/1\nD-0007\n" + result.item)
        assert sheet["sha256"] not in {p["sha256"] for p in manifest["pages"]}   # evidence, not a page
        assert manifest["material"]["page_count"] == len(manifest["pages"])
        bundles[result.item] = manifest
    assert [b["material"]["cover_sheet"]["feed_page"] for b in bundles.values()] == [1, 4, 6]

    report = sync(station)
    assert len(report.committed) == 3
    rows = archive.catalogue.query("SELECT item, page_count FROM materials WHERE archive_no = 'D-0007' ORDER BY item")
    assert [(r["item"], r["page_count"]) for r in rows] == [("1-1", 2), ("4-1-2", 1), ("9-2-3", 2)]
    for manifest in bundles.values():     # the sheet's image reached the archive with its bundle
        assert archive.blobs.has(manifest["material"]["cover_sheet"]["sha256"])
    checked = verify(archive)      # the archive's own full check: the sheets' images are re-hashed with the pages
    assert checked.ok, checked.problems
    kept = [station.store.page_path(m["material"]["cover_sheet"]["sha256"], "image/jpeg") for m in bundles.values()]
    assert all(path.exists() for path in kept)
    assert purge(station, retention_days=0)[0] == 3       # committed: the station frees the sheets' images too
    assert not any(path.exists() for path in kept)


def test_a_sheet_for_another_dossier_stops_the_feed_after_sealing_what_came_before(tmp_path):
    st = make_station(tmp_path / "st")
    try:
        with pytest.raises(CoverSheetRefused) as refused:
            scan_dossier(st, DOSSIER, None, _stack(tmp_path / "feed", [A, 1, OTHER, 2]))
        assert "feed page 3 is for dossier D-0008, not D-0007" in str(refused.value)
        assert "take it and the pages after it out" in str(refused.value)
        assert [(b["item"], b["state"], b["pages"]) for b in st.store.batches()] == [("1-1", "sealed", 1)]
    finally:
        st.close()


def test_a_sheet_seen_twice_or_for_a_sealed_material_is_refused(tmp_path):
    st = make_station(tmp_path / "st")
    try:
        with pytest.raises(CoverSheetRefused) as twice:
            scan_dossier(st, DOSSIER, None, _stack(tmp_path / "twice", [A, 1, B, 2, A, 3]))
        assert "material 1-1 at feed page 5 was already read at feed page 1" in str(twice.value)
        with pytest.raises(CoverSheetRefused) as sealed:
            scan_dossier(st, DOSSIER, None, _stack(tmp_path / "again", [B, 4]))
        assert "4-1-2 of D-0007, which is already sealed" in str(sealed.value)
    finally:
        st.close()


def test_a_feed_must_start_with_a_sheet_and_a_generic_sheet_takes_the_next_material_of_the_directory(tmp_path):
    st = make_station(tmp_path / "st")
    try:
        with pytest.raises(CoverSheetRefused) as bare:
            scan_dossier(st, DOSSIER, None, _stack(tmp_path / "bare", [1, 2]))
        assert "feed page 1 is not a cover sheet" in str(bare.value)
        directory = [{"item": "1-1", "title": "干部履历表"}, {"item": "2-1", "title": "自传", "remarks": "手写"}]
        done = scan_dossier(st, DOSSIER, directory, _stack(tmp_path / "next", [A, 1, NEXT, 2, 3]))
        assert [(r.item, r.total_pages) for r in done.materials] == [("1-1", 1), ("2-1", 2)]
        second = json.loads(st.store.db.execute(
            "SELECT material_json FROM batches WHERE id = ?", [done.materials[1].batch_id]).fetchone()[0])
        assert second["title"] == "自传" and second["remarks"] == "手写" and second["cover_sheet"]["generic"]
    finally:
        st.close()


def test_a_jam_mid_feed_keeps_the_pages_and_feeding_the_rest_resumes_that_material(tmp_path):
    st = make_station(tmp_path / "st")
    try:
        with pytest.raises(ScannerJammed) as jammed:
            scan_dossier(st, DOSSIER, None, "fault:jam@6:" + _stack(tmp_path / "feed", THREE))
        assert "page 1 is stored" in str(jammed.value)   # of material 4-1-2, whose one page went through
        states = [(b["item"], b["state"], b["pages"]) for b in st.store.batches()]
        assert states == [("1-1", "sealed", 2), ("4-1-2", "interrupted", 1)]
        # The operator puts back what did not go through (from feed page 6, sheet C) and feeds again; the
        # interrupted material 4-1-2 ends at that sheet and is sealed with its page.
        done = scan_dossier(st, DOSSIER, None, _stack(tmp_path / "rest", [C, 4, 5]))
        assert [(r.item, r.total_pages) for r in done.materials] == [("4-1-2", 1), ("9-2-3", 2)]
        assert {b["item"]: b["state"] for b in st.store.batches()} == {"1-1": "sealed", "4-1-2": "sealed",
                                                                         "9-2-3": "sealed"}
    finally:
        st.close()


def test_the_scan_command_splits_a_feed_by_its_cover_sheets_and_says_what_to_take_out(tmp_path):
    home = tmp_path / "st"
    make_station(home).close()
    feed = _stack(tmp_path / "feed", [A, 1, B, 2, A, 3])
    ran = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0007", "--by-cover-sheets",
                  "--source", feed, check=False)
    assert ran.returncode == CoverSheetRefused.exit_code, ran.stderr
    assert "material 1-1 干部履历表" in ran.stdout and "material 4-1-2 学历证明" in ran.stdout
    assert "already read at feed page 1: take the second one out" in ran.stderr
    mixed = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0007", "--material", "1-1",
                    "--by-cover-sheets", "--source", feed, check=False)
    assert mixed.returncode == 2 and "--by-cover-sheets takes --dossier only" in mixed.stderr


KILLED_RUN = """
import sys
from station import config, home
from station.scan import scan_dossier
st = home.open_station(config.load(sys.argv[1]))
scan_dossier(st, {"archive_no": "D-0007"}, None, sys.argv[2])
"""


def test_a_dossier_feed_killed_mid_material_resumes_with_the_rest_of_the_stack(tmp_path):
    from tests.station.test_scan_spool import _durable, _kill_while_spooled

    layout = [A, 1, 2, 3, 4, 5, 6, 7, 8, B, 9]
    st = make_station(tmp_path / "st")
    open_spool(st).close()
    st.close()
    feed = _stack(tmp_path / "feed", layout)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "st"), feed], cwd=os.getcwd())
    _kill_while_spooled(run, st.config.db_path)
    captured = sorted({n for n, _ in _durable(st.config.db_path)})
    assert captured == list(range(1, len(captured) + 1)) and len(captured) < 8    # killed inside 1-1
    # The operator feeds again from the first sheet not captured (feed page = 1 + pages captured + 1).
    rest = tmp_path / "rest"
    rest.mkdir()
    for i, path in enumerate(sorted((tmp_path / "feed").iterdir())[len(captured) + 1:]):
        (rest / f"{i:03d}.png").write_bytes(path.read_bytes())
    station = home.open_station(st.config)
    try:
        done = scan_dossier(station, DOSSIER, None, f"folder:{rest}")
        assert [(r.item, r.total_pages) for r in done.materials] == [("1-1", 8), ("4-1-2", 1)]
        assert done.materials[0].recovered >= 1            # the killed run's spooled pages, stored now
        assert open_spool(station).waiting() == []
    finally:
        station.close()


def test_a_count_differing_from_the_directory_holds_that_material_for_review_and_the_feed_goes_on(tmp_path):
    from station import directory, review

    st = make_station(tmp_path / "st")
    try:
        for item, title, pages in (("1-1", "干部履历表", 2), ("4-1-2", "学历证明", 3), ("9-2-3", "干部任免审批表", 2)):
            directory.put_entry(st, "D-0007", item, title, pages)
        done = scan_dossier(st, DOSSIER, None, _stack(tmp_path / "feed", THREE))
        assert [(r.item, r.total_pages, r.bundle_id is not None) for r in done.materials] == [
            ("1-1", 2, True), ("4-1-2", 1, False), ("9-2-3", 2, True)]
        assert "1 pages scanned but the directory lists 3" in done.materials[1].review_reason
        assert {b["item"]: b["state"] for b in st.store.batches()} == {"1-1": "sealed", "4-1-2": "review",
                                                                         "9-2-3": "sealed"}
        # The operator confirms the count with a reason; the material seals with its cover sheet kept.
        review.seal(st, "D-0007", "4-1-2", "张三", "目录页数有误，实为 1 页")
        manifest = json.loads(st.store.db.execute(
            "SELECT u.manifest FROM bundles u JOIN batches b ON b.id = u.batch_id WHERE b.item = '4-1-2'").fetchone()[0])
        assert manifest["count_check"]["confirmation"]["reason"] == "目录页数有误，实为 1 页"
        assert manifest["material"]["cover_sheet"]["feed_page"] == 4
    finally:
        st.close()


def test_a_jam_names_the_feed_page_to_put_back_and_the_same_stack_resumes_there_and_still_splits(tmp_path):
    st = make_station(tmp_path / "st")
    feed = _stack(tmp_path / "feed", THREE)
    try:
        with pytest.raises(ScannerJammed) as jammed:
            scan_dossier(st, DOSSIER, None, "fault:jam@7:" + feed)      # page 7: 9-2-3's first, after its sheet
        assert jammed.value.feed_resume_at == 7
        assert [(b["item"], b["state"], b["pages"]) for b in st.store.batches()] == [
            ("1-1", "sealed", 2), ("4-1-2", "sealed", 1), ("9-2-3", "interrupted", 0)]
        done = scan_dossier(st, DOSSIER, None, "fault:jam@7:" + feed, first_feed_page=jammed.value.feed_resume_at)
        assert [(r.item, r.total_pages) for r in done.materials] == [("9-2-3", 2)]
        assert {b["item"]: b["state"] for b in st.store.batches()} == {"1-1": "sealed", "4-1-2": "sealed",
                                                                         "9-2-3": "sealed"}
    finally:
        st.close()


class _Duplex:
    """The folder's files as a duplex feed delivers them: front, back, front, back …"""

    duplex = True

    def __init__(self, folder):
        from station.capture.folder import FolderSource

        self.inner = FolderSource(folder, DPI)
        self.name = "duplex:" + self.inner.name

    def pages(self):
        for i, raw in enumerate(self.inner.pages()):
            raw.side = "back" if i % 2 else "front"
            yield raw

    def close(self):
        self.inner.close()


def test_on_a_duplex_feed_a_cover_sheets_back_is_kept_with_it_as_evidence_not_as_a_page(tmp_path, station, central):
    archive, _ = central

    feed = tmp_path / "feed"
    _stack(feed, [A, 0, 1, 2, B, 0, 3, 4])
    rng = np.random.default_rng(3)
    for name in ("002.png", "006.png"):     # the sheets' blank backs, as scanned: paper grain only
        size = Image.open(feed / "001.png").size
        blank = np.clip(rng.normal(246, 3, (size[1], size[0])), 0, 255).astype(np.uint8)
        Image.fromarray(blank).save(feed / name, dpi=(DPI, DPI), compress_level=1)
    done = scan_dossier(station, DOSSIER, None, _Duplex(feed))
    assert [(r.item, r.total_pages) for r in done.materials] == [("1-1", 2), ("4-1-2", 2)]
    sheets = []
    for result, (front, back) in zip(done.materials, ((1, 2), (5, 6))):
        manifest = json.loads(station.store.db.execute(
            "SELECT manifest FROM bundles WHERE id = ?", [result.bundle_id]).fetchone()[0])
        sheet = manifest["material"]["cover_sheet"]
        assert (sheet["feed_page"], sheet["back"]["feed_page"]) == (front, back)
        pages = {p["sha256"] for p in manifest["pages"]}
        assert sheet["sha256"] not in pages and sheet["back"]["sha256"] not in pages
        assert station.store.page_path(sheet["back"]["sha256"], "image/jpeg").exists()
        sheets.append(sheet)
    assert len(sync(station).committed) == 2
    for sheet in sheets:      # both sides reached the archive with their bundle, and its full check re-hashes them
        assert archive.blobs.has(sheet["sha256"]) and archive.blobs.has(sheet["back"]["sha256"])
    checked = verify(archive)
    assert checked.ok, checked.problems
    assert purge(station, retention_days=0)[0] == 2       # committed: the station frees both sides too
    assert not any(station.store.page_path(sheet["back"]["sha256"], "image/jpeg").exists() for sheet in sheets)


def test_the_scan_command_hands_a_dossier_feed_to_the_running_service(tmp_path):
    from tests.station.web.conftest import KioskDaemon, station_home

    feed = _stack(tmp_path / "feed", [A, 1, B, 2])
    home = station_home(tmp_path, None, source=feed, dpi=DPI)
    daemon = KioskDaemon(home)
    try:
        while "ready:" not in daemon.output():
            assert daemon.proc.poll() is None, daemon.output()
            time.sleep(0.05)
        ran = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0007", "--by-cover-sheets")
        assert "material 1-1 干部履历表" in ran.stdout and "material 4-1-2 学历证明" in ran.stdout
        assert "D-0007 1-1: 1 pages, sealed as bundle" in ran.stderr
        assert "D-0007: 2 materials from one feed (2 cover sheets)" in ran.stderr
        assert "D-0007: 2 materials from one feed, all sealed" in daemon.output()    # the service scanned it
    finally:
        daemon.close()


def test_the_scan_button_runs_a_queued_dossier_feed_split_at_its_cover_sheets(tmp_path):
    """SANE's test device: its pages carry no cover sheet, so the feed the button starts is refused at its first
    page, which only the dossier feed does (a material's batch would have scanned them)."""
    from station.control import connect, request
    from tests.station.test_daemon_button import BUTTON, _run_daemon
    from tests.station.test_notify import NotifyListener, status_has

    listener = NotifyListener()
    running = _run_daemon(tmp_path, listener)
    daemon = next(running)
    try:
        reply = request(connect(daemon.config.control_socket_path),
                        {"op": "queue_add", "dossier": {"archive_no": "D-0042"}, "by_cover_sheets": True,
                         "operator": "李四"})
        assert reply["job"]["by_cover_sheets"] and reply["job"]["material"]["item"] == "整卷"
        listener.until(status_has("ready, next D-0042 整卷"))
        setattr(daemon.scanner.source.dev, BUTTON, True)    # press
        listener.until(status_has("last stop: feed page 1 is not a cover sheet"))
        (job,) = daemon.jobs.jobs()          # kept queued, with what was wrong, for the next press
        assert job["refusal"]["kind"] == "no-sheet-first"
        assert daemon.station.store.batches() == []      # no page was taken for a material
    finally:
        running.close()
        listener.close()
