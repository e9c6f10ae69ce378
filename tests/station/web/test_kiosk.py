"""The kiosk in a real browser (Debian's chromium through Playwright): an operator signs in with their
PIN, queues a material, presses Scan, watches the thumbnails arrive while the pages are stored, is told
what to do about a jam in the middle, resumes, sees the batch sealed and synced to a real archive."""

import json
import sqlite3

from tests.conftest import run_cli
from tests.station.web.conftest import OPERATOR, PIN, Client, add_operator, screenshot, station_home

WAIT_MS = 60_000
# Each thumbnail added to the screen is noted with the scanner state shown at that moment.
WATCH = """() => {
  window.kioskNotSoReloaded = true;
  window.arrivals = [];
  new MutationObserver(() => {
    for (const f of document.querySelectorAll('#pages figure')) {
      if (!f.dataset.seen) {
        f.dataset.seen = '1';
        window.arrivals.push([f.dataset.n, document.getElementById('batch-state').textContent]);
      }
    }
  }).observe(document.getElementById('pages'), {childList: true});
}"""


def test_an_operator_scans_through_a_jam_to_a_sealed_synced_batch(tmp_path, central, kiosks, tab):
    archive, address = central
    # Three duplex sheets (six pages) whose feed jams on page 3, the front of the second sheet.
    home = station_home(tmp_path, address, archive, source="fault:jam@3:synthetic:seed=5,sheets=3", dpi=150,
                        sync_interval_s=1.0)
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    kiosk = kiosks(home)
    page = tab
    page.set_default_timeout(WAIT_MS)

    page.goto(kiosk.url)
    assert page.url.endswith("/login")
    page.fill("input[name=name]", OPERATOR)
    page.fill("input[name=pin]", PIN)
    page.click("button.primary")
    page.wait_for_selector("#operator")
    assert page.text_content("#operator") == OPERATOR
    assert page.text_content("#scanner-state") == "就绪"

    # Queue a material from the kiosk itself.
    page.fill("input[name=dossier]", "D-7")
    page.fill("input[name=name]", "王六")
    page.fill("input[name=item]", "1-1")
    page.fill("input[name=title]", "干部履历表")
    page.click("#queue-add")
    page.wait_for_selector("#notice >> text=已登记 D-7 1-1《干部履历表》")
    page.wait_for_selector("#scan >> text=扫描 D-7 1-1")

    page.evaluate(WATCH)
    page.click("#scan")
    # The jam: what happened and what to do, with the page to resume from; the pages before it are on screen.
    page.wait_for_selector("#scanner-state >> text=卡纸")
    assert "从第 3 页起" in page.text_content("#scanner-todo")
    assert "已中断" in page.text_content("#batch-state")
    assert page.locator("#pages figure").count() == 2
    screenshot(page, "kiosk-jam")

    page.click("#scan")
    page.wait_for_selector("#batch-state >> text=已封装")
    assert page.text_content("#batch-count").startswith("已存 6 页")
    assert page.text_content("#batch-dossier") == "D-7（王六）"
    assert page.text_content("#batch-material") == "1-1《干部履历表》"
    # Every thumbnail arrived while its batch was being scanned (the screen never reloaded), and shows.
    arrivals = page.evaluate("window.arrivals")
    assert [n for n, _ in arrivals] == ["1", "2", "3", "4", "5", "6"], arrivals
    # Before its batch was sealed (the scanner may already say 就绪 while the last page is processed).
    assert not any("已封装" in state for _, state in arrivals), arrivals
    assert page.evaluate("window.kioskNotSoReloaded") is True
    page.wait_for_function("[...document.querySelectorAll('#pages img')].every(i => i.complete && i.naturalWidth > 0)")
    sizes = page.evaluate("[...document.querySelectorAll('#pages img')].map(i => i.naturalWidth)")
    assert sizes == [240] * 6
    captions = page.locator("#pages figcaption").all_text_contents()
    assert all("纠偏" in c or "无倾斜" in c for c in captions) and all("裁边" in c for c in captions), captions

    # Synced: the outbox empties, the archive answered and receipted.
    page.wait_for_selector("#outbox-count >> text=0")
    page.wait_for_selector("#central >> text=档案馆在线")
    assert page.text_content("#last-receipt") != "尚无"
    assert page.text_content("#scanner-state") == "就绪"
    screenshot(page, "kiosk-sealed")

    # The batch records who signed in and pressed Scan, and the archive holds its six pages.
    with sqlite3.connect(home / "station.db") as db:
        assert db.execute("SELECT operator, state FROM batches").fetchall() == [(OPERATOR, "sealed")]
    status = json.loads(run_cli("quire-station", "--home", home, "status", "--json").stdout)
    (bundle,) = status["bundles"]
    assert bundle["pages"] == 6 and bundle["state"] == "committed", bundle


def test_before_sealing_an_operator_rescans_removes_inserts_and_confirms_the_count(tmp_path, central, kiosks, tab):
    archive, address = central
    home = station_home(tmp_path, address, archive, source="synthetic:seed=8,sheets=2", dpi=150, sync_interval_s=1.0)
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    kiosk = kiosks(home)
    page = tab
    page.set_default_timeout(WAIT_MS)
    page.goto(kiosk.url)
    page.fill("input[name=name]", OPERATOR)
    page.fill("input[name=pin]", PIN)
    page.click("button.primary")
    page.fill("input[name=dossier]", "D-8")
    page.fill("input[name=item]", "1-1")
    page.fill("input[name=title]", "干部履历表")
    page.fill("input[name=pages]", "9")     # typed from the paper directory; the feeder holds two duplex sheets
    page.click("#queue-add")
    page.wait_for_selector("#notice >> text=已登记 D-8 1-1")
    directory = run_cli("quire-station", "--home", home, "directory", "show", "D-8").stdout
    assert "干部履历表" in directory and "9" in directory, directory
    page.click("#scan")

    # Four pages where the directory lists nine: not sealed, kept for review, every page with its actions.
    page.wait_for_selector("#count-mismatch")
    assert "已存 4 页" in page.text_content("#count-mismatch") and "目录为 9 页" in page.text_content("#count-mismatch")
    assert page.text_content("#batch-state") == "待复核（尚未封装）"
    page.wait_for_selector("#p-4 button.remove")
    before = page.get_attribute("#p-2 img", "src")

    page.click("#p-2 button.rescan")
    page.wait_for_selector("#notice >> text=已重扫第 2 页。")
    page.wait_for_function("src => document.querySelector('#p-2 img').getAttribute('src') !== src", arg=before)
    page.select_option("#p-3 select[name=reason]", "双张进纸")
    page.click("#p-3 button.remove")
    page.wait_for_selector("#notice >> text=已移除第 3 页（双张进纸）。")
    page.wait_for_function("document.querySelectorAll('#pages figure').length === 3")
    page.click("#p-1 button.insert")
    page.wait_for_selector("#notice >> text=已在第 1 页后补插一页。")
    page.wait_for_function("document.querySelectorAll('#pages figure').length === 4")
    page.wait_for_selector("#edits li:nth-child(3)")
    edits = page.locator("#edits li").all_text_contents()
    assert [e.split(" — ")[:2] for e in edits] == [["重扫第 2 页", "复核时重扫"], ["移除第 3 页", "双张进纸"],
                                                 ["补插第 2 页", "补插漏扫的页"]], edits
    assert all(f"— {OPERATOR} ·" in e for e in edits)

    # Sealing a count that differs needs a reason; with one, the batch is sealed and nothing changes after.
    page.click("#seal")
    assert page.evaluate("document.querySelector('input[name=confirm_reason]').validity.valueMissing")
    page.fill("input[name=confirm_reason]", "目录页数有误，实为 4 页")
    page.click("#seal")
    page.wait_for_selector("#batch-state >> text=已封装")
    assert page.locator("#pages button").count() == 0 and page.locator("#seal").count() == 0
    assert "与目录不符，已确认：目录页数有误，实为 4 页" in page.text_content("#batch-count")
    screenshot(page, "kiosk-reviewed")
    with sqlite3.connect(home / "station.db") as db:
        assert db.execute("SELECT COUNT(*) FROM page_edits").fetchone() == (3,)
        manifest = json.loads(db.execute("SELECT manifest FROM bundles").fetchone()[0])
    assert manifest["count_check"]["confirmation"]["reason"] == "目录页数有误，实为 4 页"
    assert manifest["count_check"]["confirmation"]["operator"] == OPERATOR
    page.wait_for_selector("#outbox-count >> text=0")


def test_without_its_scanner_the_kiosk_says_so_and_what_to_do(tmp_path, kiosks):
    home = station_home(tmp_path, None, source="sane:no-such-scanner", dpi=50)
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    client = Client(kiosks(home).url)
    client.sign_in()
    _, _, body = client.request("/")
    assert '<span id="scanner-state">未连接扫描仪</span>' in body
    assert "确认扫描仪已开机、USB 线已接好；工作站每隔几秒自动重新查找。" in body


def test_the_archives_rescan_request_is_on_the_screen(tmp_path, central, kiosks):
    from central import qc, users
    from station import config, outbox
    from station.home import open_station
    from station.scan import scan
    from station.sync import sync

    archive, address = central
    home = station_home(tmp_path, address, archive, source="synthetic:seed=1,sheets=1", dpi=150)
    st = open_station(config.load(home))
    try:
        scan(st, {"archive_no": "D-5"}, {"item": "1-1", "title": "干部履历表"}, operator=OPERATOR)
        sync(st)
        (bundle,) = outbox.bundles(st.store)
        inspector = users.authenticate(archive, users.add(archive, "qc1", "孙质检", ["inspector"], ["unit-a"]))
        batch = qc.start(archive, inspector, bundle["id"])
        for n in batch["sample"]:
            qc.judge(archive, inspector, bundle["id"], n, False, "模糊")
        assert qc.decide(archive, inspector, bundle["id"])["state"] == "returned"
        sync(st)    # the archive's notice comes back with the next sync
    finally:
        st.close()
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    client = Client(kiosks(home).url)
    client.sign_in()
    _, _, body = client.request("/")
    assert "RESCAN 需重扫 D-5 1-1：质检员 qc1 退回该批次（合格率 0%）— 第 1 页（模糊）、第 2 页（模糊）" in body
