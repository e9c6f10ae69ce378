"""Pre-seal review: pages rescanned, inserted and removed before sealing, each edit in the signed bundle;
a page count that differs from the directory stops sealing until the operator confirms it."""

import json
import os
import signal
import subprocess
import sys

from types import SimpleNamespace

import pytest

from quire import manifest as manifest_format
from quire.db import open_db
from quire.errors import Malformed
from station import review
from station.capture.synthetic import SyntheticSource
from station.cli import main
from station.outbox import PageCountMismatch
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register


@pytest.fixture
def synced_station(tmp_path, central):
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "station", address, dpi=150))
    yield archive, st
    st.close()


def _pages(source_seed: int, sheets: int) -> SyntheticSource:
    return SyntheticSource(seed=source_seed, sheets=sheets, dpi=150, duplex=False)


def _material_page(archive, archive_no: str, item: str) -> str:
    """The archive console's page of the material, as an archivist of its unit sees it (plain HTTP on loopback)."""
    from central import users, web
    from tests.central.web.conftest import Client

    if not archive.catalogue.one("SELECT id FROM users WHERE id = 'arch1'"):
        users.add(archive, "arch1", "陈档案", ["archivist"], ["unit-a"])
        users.set_password(archive, "arch1", "口令-arch1-2026!", by="local:tests", must_change=False)
    running = web.start(archive, "127.0.0.1:0", http=True)
    try:
        client = Client(running.url)
        client.sign_in("arch1", "口令-arch1-2026!")
        status, _, body = client.request(f"catalogue/{archive_no}/{item}")
        assert status == 200
        return body.decode()
    finally:
        running.stop()


def _central_manifest(archive, archive_no: str, item: str) -> dict:
    row = archive.catalogue.one("SELECT b.manifest FROM materials m JOIN bundles b ON b.id = m.bundle_id"
                                " WHERE m.archive_no = ? AND m.item = ?", [archive_no, item])
    return json.loads(row["manifest"])


def test_edits_before_sealing_are_in_the_signed_bundle_and_the_archive_keeps_them(synced_station):
    archive, st = synced_station
    result = scan(st, {"archive_no": "D-0001"}, {"item": "1-1", "title": "干部履历表", "review": True},
                  _pages(1, 4), operator="张三")
    assert result.bundle_id is None
    seen = review.show(st, "D-0001", "1-1")
    assert seen.batch["state"] == "review" and len(seen.pages) == 4
    before = [p["sha256"] for p in seen.pages]

    rescanned = review.rescan_page(st, "D-0001", "1-1", 2, "张三", "skewed", _pages(7, 1))
    inserted = review.insert_page(st, "D-0001", "1-1", 3, "张三", "missed sheet", _pages(8, 1))
    removed = review.remove_page(st, "D-0001", "1-1", 5, "李四", "double feed")

    after = [p["sha256"] for p in review.show(st, "D-0001", "1-1").pages]
    assert [p["n"] for p in review.show(st, "D-0001", "1-1").pages] == [1, 2, 3, 4]
    assert after == [before[0], rescanned["sha256"], before[2], inserted["sha256"]]
    assert rescanned["removed_sha256"] == before[1] and removed["removed_sha256"] == before[3]

    bundle_id = review.seal(st, "D-0001", "1-1", "张三")
    sync(st)
    kept = _central_manifest(archive, "D-0001", "1-1")
    assert kept["material"]["page_count"] == 4
    assert [(e["action"], e["n"], e["reason"], e["operator"]) for e in kept["page_edits"]] == [
        ("rescan", 2, "skewed", "张三"), ("insert", 4, "missed sheet", "张三"), ("remove", 5, "double feed", "李四")]
    assert kept["page_edits"][2]["removed_sha256"] == before[3]       # the removed page's hash, as evidence
    assert archive.catalogue.one("SELECT state FROM bundles WHERE id = ?", [bundle_id])["state"] == "committed"
    shown = _material_page(archive, "D-0001", "1-1")
    assert "<td>删除</td><td>第 5 页</td>\n      <td>double feed</td><td>李四</td>" in shown
    assert f"<code>{before[3][:16]}</code>" in shown

    # Sealed: nothing changes any more, and the operator is told why and what to do instead.
    for attempt in (lambda: review.remove_page(st, "D-0001", "1-1", 1, "张三", "stray"),
                    lambda: review.rescan_page(st, "D-0001", "1-1", 1, "张三", "", _pages(9, 1)),
                    lambda: review.insert_page(st, "D-0001", "1-1", 0, "张三", "", _pages(9, 1)),
                    lambda: review.seal(st, "D-0001", "1-1", "张三")):
        with pytest.raises(review.ReviewRefused, match="is sealed; nothing changes after sealing.*--rescan"):
            attempt()
    assert [p["sha256"] for p in st.store.pages(st.store.last_batch("D-0001", "1-1")["id"])] == after


def test_a_count_differing_from_the_directory_waits_for_the_operators_reason(synced_station, tmp_path, capsys):
    archive, st = synced_station
    listing = tmp_path / "目录.csv"
    listing.write_text("档号,类号,材料名称,形成时间,页数,备注\nD-0002,1-1,干部履历表,1999-05,3,\n", encoding="utf-8")
    assert main(["--home", str(st.config.home), "directory", "import", str(listing)]) == 0

    with pytest.raises(PageCountMismatch) as stopped:
        scan(st, {"archive_no": "D-0002"}, {"item": "1-1", "title": "干部履历表"}, _pages(2, 2), operator="张三")
    message = str(stopped.value)
    assert "2 pages scanned but the directory lists 3" in message and "nothing is lost" in message
    assert "quire-station seal D-0002 1-1 --confirm-count" in message
    batch = st.store.last_batch("D-0002", "1-1")
    assert batch["state"] == "review" and st.store.batch(batch["id"]).next_n == 3   # both pages kept
    assert review.show(st, "D-0002", "1-1").mismatch
    assert sync(st).committed == []                                                 # nothing sealed to send

    # Sealing without a reason is refused again; with it, the reason goes into the signed manifest.
    assert main(["--home", str(st.config.home), "seal", "D-0002", "1-1"]) == PageCountMismatch.exit_code
    assert "directory lists 3" in capsys.readouterr().err
    assert main(["--home", str(st.config.home), "seal", "D-0002", "1-1", "--operator", "王组长",
                 "--confirm-count", "目录页数有误，原件为 2 页"]) == 0
    sync(st)
    kept = _central_manifest(archive, "D-0002", "1-1")
    assert kept["count_check"]["expected"] == 3 and kept["count_check"]["found"] == 2
    assert kept["count_check"]["confirmation"]["reason"] == "目录页数有误，原件为 2 页"
    assert kept["count_check"]["confirmation"]["operator"] == "王组长"
    receipt = json.loads(st.store.db.execute("SELECT receipt FROM bundles WHERE state = 'committed'").fetchone()[0])
    assert receipt["standards"]["warnings"] == [
        "CountDiffersConfirmed: the directory lists 3 pages, 2 were scanned; confirmed by 王组长: 目录页数有误，原件为 2 页"]
    shown = _material_page(archive, "D-0002", "1-1")
    assert "目录页数 3 页，实扫 2 页，<strong>页数不符</strong>" in shown
    assert "确认理由：目录页数有误，原件为 2 页（王组长" in shown


def test_feeding_the_missing_sheet_instead_seals_without_a_confirmation(synced_station):
    archive, st = synced_station
    st.store.replace_directory("D-0003", [{"item": "2-1", "title": "自传", "pages": 3}], "file 目录.csv")
    with pytest.raises(PageCountMismatch):
        scan(st, {"archive_no": "D-0003"}, {"item": "2-1", "title": "自传"}, _pages(3, 2))
    result = scan(st, {"archive_no": "D-0003"}, {"item": "2-1", "title": "自传"}, _pages(3, 3))  # resumes at sheet 3
    assert result.first_page == 3 and result.bundle_id
    sync(st)
    check = _central_manifest(archive, "D-0003", "2-1")["count_check"]
    assert check == {"expected": 3, "found": 3, "blank": 0, "source": "file 目录.csv"}


def test_the_blank_backs_of_a_duplex_feed_do_not_count_against_the_directory(synced_station):
    archive, st = synced_station
    st.store.replace_directory("D-0010", [{"item": "1-1", "title": "x", "pages": 3},
                                          {"item": "1-2", "title": "y", "pages": 4}], "typed")
    duplex = SyntheticSource(seed=12, sheets=3, dpi=150, duplex=True)   # 3 written fronts, 3 blank backs
    assert scan(st, {"archive_no": "D-0010"}, {"item": "1-1", "title": "x", "review": True}, duplex).bundle_id is None
    seen = review.show(st, "D-0010", "1-1")
    assert (len(seen.pages), seen.blank, seen.mismatch) == (6, 3, False)
    assert review.seal(st, "D-0010", "1-1", "张三")
    with pytest.raises(PageCountMismatch, match="6 pages scanned \\(3 flagged blank\\) but the directory lists 4"):
        scan(st, {"archive_no": "D-0010"}, {"item": "1-2", "title": "y"},
             SyntheticSource(seed=13, sheets=3, dpi=150, duplex=True))
    sync(st)
    assert _central_manifest(archive, "D-0010", "1-1")["count_check"] == {
        "expected": 3, "found": 6, "blank": 3, "source": "typed"}


def test_the_archive_refuses_a_differing_count_nobody_confirmed_and_an_edit_it_cannot_account_for(station):
    st = station
    st.store.replace_directory("D-0004", [{"item": "1-1", "title": "x", "pages": 5}], "file d.csv")
    scan(st, {"archive_no": "D-0004"}, {"item": "1-1", "title": "x", "review": True}, _pages(5, 2))
    batch = st.store.last_batch("D-0004", "1-1")
    review.seal(st, "D-0004", "1-1", "张三", "目录有误")
    signed = manifest_format.read(bytes(st.store.db.execute(
        "SELECT manifest FROM bundles WHERE batch_id = ?", [batch["id"]]).fetchone()[0]))
    unconfirmed = dict(signed, count_check={k: v for k, v in signed["count_check"].items() if k != "confirmation"})
    with pytest.raises(Malformed, match="no operator's confirmation"):
        manifest_format.seal(unconfirmed, st.key)
    phantom = dict(signed, page_edits=[{"action": "insert", "n": 1, "sha256": "ab" * 32, "reason": "",
                                        "operator": "x", "at": "2026-01-01T00:00:00Z"}])
    with pytest.raises(Malformed, match="neither listed nor taken out"):
        manifest_format.seal(phantom, st.key)


def test_a_batch_being_scanned_is_not_edited_or_sealed_under_the_scanner(station):
    scan(station, {"archive_no": "D-0008"}, {"item": "1-1", "title": "x", "review": True}, _pages(6, 2))
    station.store.open_batch({"archive_no": "D-0008"}, {"item": "1-1", "title": "x"}, "synthetic", "张三")
    for attempt in (lambda: review.remove_page(station, "D-0008", "1-1", 1, "张三", "stray"),
                    lambda: review.seal(station, "D-0008", "1-1", "张三")):
        with pytest.raises(review.ReviewRefused, match="is being scanned .*run the same scan again"):
            attempt()


def test_a_page_is_removed_only_with_a_reason(station):
    scan(station, {"archive_no": "D-0005"}, {"item": "1-1", "title": "x", "review": True}, _pages(6, 2))
    for reason in ("", "   "):
        with pytest.raises(Exception, match="say why the page is removed"):
            review.remove_page(station, "D-0005", "1-1", 2, "张三", reason)
    with pytest.raises(Exception, match="there is no page 7: D-0005 1-1 has pages 1–2"):
        review.remove_page(station, "D-0005", "1-1", 7, "张三", "stray")
    assert len(review.show(station, "D-0005", "1-1").pages) == 2


def test_the_cli_keeps_a_scan_open_for_review_and_edits_it(tmp_path, capsys):
    st = make_station(tmp_path / "st", dpi=150)
    home = str(st.config.home)
    st.close()
    assert main(["--home", home, "scan", "--dossier", "D-0006", "--material", "1-1", "--title", "x",
                 "--source", "synthetic:seed=3,sheets=3,duplex=no", "--review"]) == 0
    assert "kept open for review" in capsys.readouterr().err
    assert main(["--home", home, "review", "remove", "D-0006", "1-1", "--page", "2", "--reason", "重张"]) == 0
    assert "page 2 removed (重张)" in capsys.readouterr().out
    assert main(["--home", home, "review", "insert", "D-0006", "1-1", "--after", "0",
                 "--source", "synthetic:seed=9,sheets=1,duplex=no"]) == 0
    assert main(["--home", home, "review", "show", "D-0006", "1-1"]) == 0
    shown = capsys.readouterr().out
    assert "review: 3 pages" in shown and "edit: remove page 2" in shown and "edit: insert page 1" in shown
    assert main(["--home", home, "seal", "D-0006", "1-1"]) == 0
    assert main(["--home", home, "review", "remove", "D-0006", "1-1", "--page", "1", "--reason", "x"]) == 5
    assert "nothing changes after sealing" in capsys.readouterr().err


KILLED_EDIT = """
import os, signal, sys
from station import config, home, review
from station.capture.synthetic import SyntheticSource
st = home.open_station(config.load(sys.argv[1]))
execute = st.store.db.execute
def dying(sql, *args):
    if sql.startswith("INSERT INTO page_edits"):
        os.kill(os.getpid(), signal.SIGKILL)     # inside the edit's transaction, its pages already moved
    return execute(sql, *args)
st.store.db.execute = dying
review.insert_page(st, "D-0007", "1-1", 1, "张三", "missed", SyntheticSource(seed=11, sheets=1, dpi=150))
"""


def test_kill_9_in_the_middle_of_an_edit_leaves_the_batch_as_it_was(tmp_path):
    st = make_station(tmp_path / "st", dpi=150)
    scan(st, {"archive_no": "D-0007"}, {"item": "1-1", "title": "x", "review": True}, _pages(10, 3))
    before = [(p["n"], p["sha256"]) for p in st.store.pages(st.store.last_batch("D-0007", "1-1")["id"])]
    home = str(st.config.home)
    st.close()
    run = subprocess.run([sys.executable, "-c", KILLED_EDIT, home], cwd=os.getcwd(), timeout=300)
    assert run.returncode == -signal.SIGKILL

    from station import config, home as station_home

    st = station_home.open_station(config.load(home))
    try:
        seen = review.show(st, "D-0007", "1-1")
        assert [(p["n"], p["sha256"]) for p in seen.pages] == before and seen.edits == []
        edit = review.insert_page(st, "D-0007", "1-1", 1, "张三", "missed", _pages(11, 1))   # done again, whole
        assert [p["sha256"] for p in review.show(st, "D-0007", "1-1").pages] == [
            before[0][1], edit["sha256"], before[1][1], before[2][1]]
        assert review.seal(st, "D-0007", "1-1", "张三")
    finally:
        st.close()


def test_a_station_store_from_before_review_keeps_every_batch_page_and_bundle_when_upgraded(tmp_path):
    from station import store as store_mod

    before = [m for m in store_mod.MIGRATIONS if m[0] != "0006_review"]
    st = make_station(tmp_path / "st", dpi=150)
    db_path, pages_dir = st.config.db_path, st.config.pages_dir
    st.close()
    db_path.unlink()
    old = SimpleNamespace(db=open_db(db_path, before))
    old.db.execute("INSERT INTO meta VALUES ('station_id', 'st-test')")
    old.db.execute("INSERT INTO batches (id, archive_no, item, title, dossier_json, material_json, source, operator,"
                   " state, started_at) VALUES ('b1', 'D-1', '1-1', 'x', '{}', '{}', 's', 'op', 'sealed', 't')")
    old.db.execute("INSERT INTO pages VALUES ('b1', 1, ?, 1, 'image/jpeg', 1, 1, 150, 'grey', '{}', 't')", ["a" * 64])
    old.db.execute("INSERT INTO bundles (id, batch_id, manifest, signature, state, created_at)"
                   " VALUES ('x1', 'b1', X'7B7D', X'00', 'committed', 't')")
    old.db.close()

    upgraded = store_mod.Store(db_path, pages_dir)
    try:
        assert [(b["id"], b["state"], b["pages"], b["hold_for_review"]) for b in upgraded.batches()] == [
            ("b1", "sealed", 1, 0)]
        assert upgraded.db.execute("SELECT id, state FROM bundles").fetchall() == [("x1", "committed")]
        assert upgraded.db.execute("PRAGMA foreign_key_check").fetchall() == []
        upgraded.db.execute("INSERT INTO batches (id, archive_no, item, title, dossier_json, material_json, source,"
                            " operator, state, started_at) VALUES ('b2', 'D-1', '2-1', 'y', '{}', '{}', 's', 'op',"
                            " 'review', 't')")
    finally:
        upgraded.close()


def test_the_station_service_keeps_a_batch_open_for_review_when_the_station_says_so(tmp_path):
    import threading

    from station import config, home as station_home
    from station.daemon import Daemon
    from tests.station.test_notify import NotifyListener

    home = tmp_path / "st"
    make_station(home, dpi=50).close()
    (home / "station.toml").write_text('source = "synthetic:sheets=2,duplex=no"\ndpi = 50\nkiosk = false\n'
                                       "review_before_seal = true\n")
    listener = NotifyListener()
    daemon = Daemon(config.load(home), env={"NOTIFY_SOCKET": listener.path})
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        listener.until(lambda m: m.get("READY") == "1")
        result = daemon.handle({"op": "scan", "dossier": {"archive_no": "D-0009"},
                                "material": {"item": "1-1", "title": "x"}, "operator": "张三"})
        assert result["bundle_id"] is None and result["total_pages"] == 2
        assert daemon.note == "D-0009 1-1: 2 pages, kept open for review"
    finally:
        daemon.stop()
        thread.join(60)
        listener.close()
    st = station_home.open_station(config.load(home))
    try:
        assert review.show(st, "D-0009", "1-1").batch["state"] == "review"
        assert review.seal(st, "D-0009", "1-1", "张三")
    finally:
        st.close()
