"""A dossier's directory (目录) typed on the kiosk in a real browser (Debian's chromium through Playwright):
the operator opens the dossier's directory, adds rows, is told in Chinese which cell is wrong and what to
write there (the rules a directory file meets), corrects a row in its place, removes one, and cannot
remove the row of a material already sealed. The daemon is a real `quire-station daemon` process."""

import json

from tests.conftest import cli_in_process
from tests.station.web.conftest import OPERATOR, PIN, Client, add_operator, screenshot, sign_in_on, station_home

WAIT_MS = 60_000


def _cells(page, row: str) -> list[str]:
    return [page.input_value(f"{row} input[name={name}]") for name in ("item", "title", "date_formed", "pages",
                                                                        "remarks")]


def _type(page, row: str, item: str, title: str, date: str, pages: str, remarks: str = "") -> None:
    for name, value in zip(("item", "title", "date_formed", "pages", "remarks"), (item, title, date, pages, remarks)):
        page.fill(f"{row} input[name={name}]", value)


def _stored(home) -> list[tuple]:
    shown = json.loads(cli_in_process("quire-station", "--home", home, "directory", "show", "D-9", "--json").stdout)
    return [(e["item"], e["title"], e["date_formed"], e["pages"], e["remarks"], e["state"]) for e in shown]


def test_an_operator_types_a_dossiers_directory_and_is_told_what_to_write_in_each_bad_cell(tmp_path, kiosks, tab):
    home = station_home(tmp_path, None, dpi=150)
    # 1-1 is in the directory already and sealed (two pages scanned, as the directory says).
    cli_in_process("quire-station", "--home", home, "directory", "add", "D-9", "1-1", "--title", "干部履历表",
                   "--pages", "2")
    cli_in_process("quire-station", "--home", home, "scan", "--dossier", "D-9", "--material", "1-1",
                   "--source", "synthetic:seed=5,sheets=2,duplex=no")
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    kiosk = kiosks(home)
    page = tab
    page.set_default_timeout(WAIT_MS)
    sign_in_on(page, kiosk.url)

    page.click("#nav-directory")
    page.fill("#directory-dossier", "D-9")
    page.click("#directory-open")
    page.wait_for_selector("#row-1")
    assert _cells(page, "#row-1") == ["1-1", "干部履历表", "", "2", ""]
    assert page.text_content("#row-1 .state") == "已封装（2 页）"

    # A row with four bad cells: each is named, with what to write; what was typed stays to be corrected.
    _type(page, "#row-new", "4-2", "", "1995-13", "0")
    page.click("#row-add")
    page.wait_for_selector("#row-new .cell-errors")
    errors = page.locator("#row-new .cell-errors li").all_text_contents()
    assert len(errors) == 4, errors
    assert "新增行未保存：4 个格子需要改正" in page.text_content("#directory-notice")
    assert errors[0].startswith("新增行「类号」：“4-2”不是类号") and "4-1-2" in errors[0], errors
    assert errors[1].startswith("新增行「形成时间」：“1995-13”不是日期") and "YYYYMMDD" in errors[1], errors
    assert errors[2].startswith("新增行「页数」：0 页：每份材料至少 1 页"), errors
    assert errors[3].startswith("新增行「材料名称」：未填写"), errors
    assert _cells(page, "#row-new") == ["4-2", "", "1995-13", "0", ""]
    invalid = page.locator("#row-new input[aria-invalid=true]").evaluate_all("els => els.map(e => e.name)")
    assert sorted(invalid) == ["date_formed", "item", "pages", "title"]
    assert page.locator("#row-2").count() == 0
    screenshot(page, "kiosk-directory-refused")

    _type(page, "#row-new", "4-1-2", "学历证明", "199503", "3")
    page.click("#row-add")
    page.wait_for_selector("#row-2")
    assert "已保存 4-1-2《学历证明》，3 页" in page.text_content("#directory-notice")
    assert _cells(page, "#row-2") == ["4-1-2", "学历证明", "1995-03", "3", ""]
    assert _cells(page, "#row-new") == ["", "", "", "", ""]
    _type(page, "#row-new", "9-3-1", "入党志愿书", "20010701", "2", "原件")
    page.click("#row-add")
    page.wait_for_selector("#row-3")
    assert page.text_content("#row-3 .state") == "未扫描"

    # The same item twice is refused, naming the row that has it.
    _type(page, "#row-new", "4-1-2", "学历证明（复印件）", "", "1")
    page.click("#row-add")
    page.wait_for_selector("#row-new .cell-errors")
    assert page.text_content("#row-new .cell-errors").startswith("新增行「类号」：类号 4-1-2 已在第 2 行")
    page.fill("#row-new input[name=item]", "")
    page.fill("#row-new input[name=title]", "")
    page.fill("#row-new input[name=pages]", "")

    # A row corrected in its place: a bad page count first, then a new item and count.
    page.fill("#row-2 input[name=pages]", "三")
    page.click("#row-2 button.save")
    page.wait_for_selector("#row-2 .cell-errors")
    assert page.text_content("#row-2 .cell-errors").startswith("第 2 行「页数」：“三”不是整数")
    page.fill("#row-2 input[name=item]", "4-1-3")
    page.fill("#row-2 input[name=pages]", "4")
    page.click("#row-2 button.save")
    page.wait_for_selector("#row-2:not(.invalid)")
    assert _cells(page, "#row-2") == ["4-1-3", "学历证明", "1995-03", "4", ""]

    # A row not scanned is removed; the sealed one is not, and the screen says why.
    page.click("#row-3 button.remove")
    page.wait_for_selector("#row-3", state="detached")
    assert "已从目录删除 9-3-1" in page.text_content("#directory-notice")
    page.click("#row-1 button.remove")
    page.wait_for_selector("#row-1 .cell-errors")
    why = page.text_content("#row-1 .cell-errors")
    assert "第 1 行（类号 1-1）已封装，不能删除" in why and "核对页数" in why, why
    assert _cells(page, "#row-1") == ["1-1", "干部履历表", "", "2", ""]

    # Large touch targets: every field and button of the table is a finger's height.
    heights = page.locator("#directory input:visible, #directory button").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().height)")
    assert heights and min(heights) >= 48, heights
    screenshot(page, "kiosk-directory")

    # Stored through the station's directory, as the CLI shows it; a reload shows the same.
    assert _stored(home) == [("1-1", "干部履历表", None, 2, None, "sealed"),
                             ("4-1-3", "学历证明", "1995-03", 4, None, None)]
    page.reload()
    assert _cells(page, "#row-2") == ["4-1-3", "学历证明", "1995-03", "4", ""]
    assert page.locator("#directory form.dir-row").count() == 3      # two rows and the new one


def test_a_directory_change_without_the_sessions_csrf_token_is_refused(tmp_path, kiosks):
    home = station_home(tmp_path, None, dpi=150)
    assert add_operator(home, OPERATOR, PIN).returncode == 0
    kiosk = kiosks(home)
    outside = Client(kiosk.url)
    outside.sign_in()
    row = {"d": "D-9", "was": "", "action": "add", "item": "1-1", "title": "干部履历表", "pages": "2"}
    status, _, body = outside.request("directory", row)
    assert status == 403 and "CSRF" in body
    status, _, body = outside.request("directory", {**row, "csrf": outside.csrf()})
    assert status == 200 and "已保存 1-1《干部履历表》，2 页" in body
    assert _stored(home) == [("1-1", "干部履历表", None, 2, None, None)]
