"""A whole dossier as one feed, on the kiosk in a real browser (Debian's chromium through Playwright): the
operator queues the dossier to be split at its cover sheets, presses Scan, and watches each material
appear as its sheet is read (the sheet a marked separator, not a page), its thumbnails and its count
against the directory; a jam in the middle is resumed from the feed page the screen names; the material
whose count differs from the directory is left for review while the others seal, and is confirmed there
with a reason. The daemon is a real `quire-station daemon` process over a folder of page files fed like
an ADF: cover sheets printed by Quire's PDF and rendered back by pdftoppm, between content pages."""

import json
import shutil
import sqlite3

import pytest

from station import config, directory
from station.home import open_station
from tests.station.test_coversheet_split import A, B, C, _stack
from tests.station.web.conftest import OPERATOR, PIN, add_operator, screenshot, sign_in_on, station_home

WAIT_MS = 120_000
# 1-1: two pages, 4-1-2: one (carrying its own QR code and barcode, which must not split), 9-2-3: two.
LAYOUT = [A, 1, 2, B, 103, C, 4, 5]
# The paper directory: 4-1-2 is listed with three pages where one is in the stack.
DIRECTORY = [("1-1", "干部履历表", 2), ("4-1-2", "学历证明", 3), ("9-2-3", "干部任免审批表", 2)]
# Each page first shown anywhere under #pages from now on is noted with the material group it went into (a
# group shown again, its material sealed, brings no new page).
WATCH = """() => {
  window.kioskNotSoReloaded = true;
  window.arrivals = [];
  const seen = new Set([...document.querySelectorAll('#pages figure.page')].map(f => f.id));
  new MutationObserver(() => {
    for (const f of document.querySelectorAll('#pages figure.page')) {
      if (!seen.has(f.id)) {
        seen.add(f.id);
        window.arrivals.push([f.dataset.group || '', f.dataset.n]);
      }
    }
  }).observe(document.getElementById('pages'), {childList: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The dossier's feed, rendered once for the module (pdftoppm and the scan noise are the slow part)."""
    return _stack(tmp_path_factory.mktemp("dossier") / "feed", LAYOUT)


def test_a_dossier_fed_by_cover_sheets_appears_material_by_material_and_a_count_mismatch_is_confirmed(
        tmp_path, stack, kiosks, tab):
    feed = tmp_path / "feed"
    shutil.copytree(stack.removeprefix("folder:"), feed)
    # The feed jams on page 7: the first page of the third material, just after its cover sheet.
    home = station_home(tmp_path, None, source=f"fault:jam@7:folder:{feed}", dpi=200)
    st = open_station(config.load(home))
    try:
        for item, title, pages in DIRECTORY:
            directory.put_entry(st, "D-0007", item, title, pages)
    finally:
        st.close()
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    kiosk = kiosks(home)
    page = tab
    page.set_default_timeout(WAIT_MS)
    sign_in_on(page, kiosk.url)

    # The whole dossier queued as one feed from the kiosk, then Scan.
    page.fill("#dossier-whole", "D-0007")
    page.click("#queue-dossier")
    page.wait_for_selector("#notice >> text=已登记整卷 D-0007（按分隔页拆分）")
    page.wait_for_selector("#scan >> text=扫描 D-0007 整卷")
    page.evaluate(WATCH)
    page.click("#scan")

    # The jam: two materials done (one sealed, one held for its count), the third's sheet read; the screen
    # says to put the stack back from feed page 7.
    page.wait_for_selector("#scanner-state >> text=卡纸")
    assert "从第 7 页起" in page.text_content("#scanner-todo")
    assert "分隔页也算一页" in page.text_content("#scanner-todo")
    assert page.text_content("#c-1-1 .state") == "已封装"
    assert page.text_content("#c-4-1-2 .state") == "待复核（尚未封装）"
    assert page.locator("#g-9-2-3 figure.page").count() == 0
    # The thumbnails so far arrived into their material's group while the feed ran (the screen never reloaded).
    assert page.evaluate("window.arrivals") == [["1-1", "1"], ["1-1", "2"], ["4-1-2", "1"]]
    assert page.evaluate("window.kioskNotSoReloaded") is True
    screenshot(page, "kiosk-dossier-jam")

    # A screen opened afresh (another operator, a reload) shows the feed as it stands, grouped the same way.
    page.reload()
    page.wait_for_selector("#g-9-2-3")
    assert [page.locator(f"#g-{item} figure.page").count() for item in ("1-1", "4-1-2", "9-2-3")] == [2, 1, 0]
    page.evaluate(WATCH)
    page.click("#scan")    # the operator put back the sheets from feed page 7 and presses Scan
    page.wait_for_selector("#c-9-2-3 .state >> text=已封装")
    page.wait_for_selector("#scanner-state >> text=就绪")

    # Three materials in feed order, each after its cover sheet shown as a separator, not as a page.
    assert page.eval_on_selector_all("#pages section.material", "s => s.map(x => x.dataset.item)") == [
        "1-1", "4-1-2", "9-2-3"]
    assert page.locator("#pages figure.sheet").count() == 3
    for item, pages in (("1-1", 2), ("4-1-2", 1), ("9-2-3", 2)):
        assert page.locator(f"#g-{item} figure.page").count() == pages
        assert page.text_content(f"#c-{item} .found") == str(pages)
        assert page.locator(f"#g-{item} figure.sheet img").count() == 1
    assert "进纸第 1 页" in page.text_content("#s-1-1") and "不计入页数" in page.text_content("#s-1-1")
    assert "进纸第 6 页" in page.text_content("#s-9-2-3")
    assert "与目录相符" in page.text_content("#c-1-1") and "目录 2 页" in page.text_content("#c-9-2-3")
    assert "与目录不符" in page.text_content("#c-4-1-2") and "目录 3 页" in page.text_content("#c-4-1-2")
    page.wait_for_function("[...document.querySelectorAll('#pages img')].every(i => i.complete && i.naturalWidth > 0)")
    # The resumed material's thumbnails arrived into its group, the groups before it kept (no reload).
    arrivals = page.evaluate("window.arrivals")
    assert arrivals == [["9-2-3", "1"], ["9-2-3", "2"]], arrivals
    assert page.evaluate("window.kioskNotSoReloaded") is True
    screenshot(page, "kiosk-dossier-fed")

    # The held material: its count confirmed with a reason, in the browser.
    page.click("#review-4-1-2")
    page.wait_for_selector("#count-mismatch")
    assert "已存 1 页" in page.text_content("#count-mismatch") and "目录为 3 页" in page.text_content("#count-mismatch")
    page.fill("input[name=confirm_reason]", "目录页数有误，实为 1 页")
    page.click("#seal")
    page.wait_for_selector("#batch-state >> text=已封装")
    assert "与目录不符，已确认：目录页数有误，实为 1 页" in page.text_content("#batch-count")

    with sqlite3.connect(home / "station.db") as db:
        rows = db.execute("SELECT b.item, b.state, b.operator, u.manifest FROM batches b JOIN bundles u "
                          "ON u.batch_id = b.id ORDER BY b.rowid").fetchall()
    assert [(item, state, operator) for item, state, operator, _ in rows] == [
        ("1-1", "sealed", OPERATOR), ("4-1-2", "sealed", OPERATOR), ("9-2-3", "sealed", OPERATOR)]
    manifests = {item: json.loads(manifest) for item, _, _, manifest in rows}
    for item, manifest in manifests.items():
        sheet = manifest["material"]["cover_sheet"]
        assert sheet["payload"].startswith(f"QUIRE-COVER/1\nD-0007\n{item}")
        assert sheet["sha256"] not in {p["sha256"] for p in manifest["pages"]}
    assert manifests["4-1-2"]["count_check"]["confirmation"]["reason"] == "目录页数有误，实为 1 页"
    assert manifests["4-1-2"]["count_check"]["confirmation"]["operator"] == OPERATOR
    assert [len(m["pages"]) for m in manifests.values()] == [2, 1, 2]


def test_a_sheet_for_another_dossier_is_a_notice_with_what_to_do(tmp_path, kiosks, tab):
    from tests.station.test_coversheet_split import OTHER

    home = station_home(tmp_path, None, source="folder:" + _stack(tmp_path / "feed", [A, 1, OTHER, 2])
                        .removeprefix("folder:"), dpi=200)
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    kiosk = kiosks(home)
    page = tab
    page.set_default_timeout(WAIT_MS)
    sign_in_on(page, kiosk.url)
    page.fill("#dossier-whole", "D-0007")
    page.click("#queue-dossier")
    page.wait_for_selector("#scan >> text=扫描 D-0007 整卷")
    page.click("#scan")
    page.wait_for_selector("#notice >> text=分隔页有误")
    notice = page.text_content("#notice")
    assert "进纸第 3 页是档案 D-0008 的分隔页，不属于本卷 D-0007" in notice, notice
    assert "取出" in notice and "按“扫描”继续" in notice
    page.wait_for_selector("#scanner-state >> text=分隔页有误")
    assert page.text_content("#c-1-1 .state") == "已封装"
    assert page.locator("#g-1-1 figure.page").count() == 1
