"""Reading in the browser (数字化阅档): request, approval in a second browser, the page viewer, export —
and from the outside, every way to a page without a grant refused and logged, every page watermarked."""

import re
from datetime import datetime, timedelta, timezone

from central import access, audit, gate, users
from central.web import imaging

from .conftest import Client, assert_watermarked, screenshot, sign_in


def _entries(archive, event: str, **match) -> list[dict]:
    return [e for e in audit.entries(archive) if e["event"] == event and all(e.get(k) == v for k, v in match.items())]


def _grant(site, reader: str, archive_no: str = "D-1", export: bool = False) -> int:
    """A consultation filed and approved through the use cases (the browser path is tested on its own)."""
    who = users.enabled(site, reader)[0]
    officer = users.enabled(site, "sec-a")[0]
    c = access.file_request(site, who, archive_no, "测试查阅", 3, export)
    access.decide(site, officer, c["id"], True, "同意")
    if export:
        access.decide(site, officer, c["id"], True, "同意导出", what="export")
    return c["id"]


def _wait_loaded(page) -> None:
    """Until the page image has arrived (polled: the CSP forbids the eval wait_for_function needs)."""
    for _ in range(200):
        if page.locator("#page").evaluate("img => img.complete && img.naturalWidth > 0"):
            return
        page.wait_for_timeout(50)
    raise AssertionError("the page image never loaded")


def test_a_reader_requests_an_officer_approves_and_the_reader_pages_through_and_exports(site, console, contexts):
    reader = sign_in(contexts(), console, "wang")
    reader.fill("input[name=q]", "张")
    reader.press("input[name=q]", "Enter")
    row = reader.locator("#found tr", has_text="D-1")
    row.locator("input[name=purpose]").fill("干部考察")
    row.locator("input[name=days]").fill("5")
    row.locator("input[name=export]").check()
    row.get_by_role("button", name="提交申请").click()
    assert "待审批" in reader.locator("#mine tr", has_text="干部考察").inner_text()

    officer = sign_in(contexts(), console, "sec-a")
    assert officer.url == console + "officer"
    request = officer.locator("#waiting tr", has_text="干部考察")
    assert "王五（wang）" in request.inner_text() and "查阅人：通过" in request.inner_text()
    screenshot(officer, "officer-queue")
    request.locator("input[name=reason]").fill("考察需要")
    request.get_by_role("button", name="批准查阅").click()
    request = officer.locator("#waiting tr", has_text="干部考察")  # the export waits for its own decision
    request.get_by_role("button", name="批准导出").click()
    assert "干部考察" in officer.locator("#active").inner_text()

    reader.reload()
    mine = reader.locator("#mine tr", has_text="干部考察")
    assert "已批准" in mine.inner_text()
    cid = int(re.search(r"第 (\d+) 号", mine.inner_text()).group(1))
    mine.get_by_role("link", name="阅档").click()
    assert "第1类 · 履历材料" in reader.inner_text("main") and "第4类" in reader.inner_text("main")
    reader.locator(".thumbs a").first.click()
    assert reader.url.endswith(f"/read/{cid}/D-1/1-1/1")
    _wait_loaded(reader)
    assert reader.evaluate("document.getElementById('page').naturalHeight") == imaging.SCREEN_PX
    reader.keyboard.press("+")
    assert reader.evaluate("document.getElementById('page').dataset.zoom") == "1.25"
    reader.keyboard.press("ArrowRight")
    reader.wait_for_url(f"**/read/{cid}/D-1/1-1/2")
    _wait_loaded(reader)
    screenshot(reader, "reader-viewer")
    reader.keyboard.press("ArrowLeft")
    reader.wait_for_url(f"**/read/{cid}/D-1/1-1/1")
    with reader.expect_download() as download:
        reader.goto(console + "reader")
        reader.locator("#mine tr", has_text="干部考察").get_by_role("link", name="导出 PDF").click()
    pdf = open(download.value.path(), "rb").read()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= 1
    views = _entries(site, "content.view", consultation=cid, by="user:wang")
    assert {(v["item"], v["page"]) for v in views} >= {("1-1", 1), ("1-1", 2)}
    exports = _entries(site, "content.export", consultation=cid)
    assert {(e["item"], e["page"]) for e in exports} == {("1-1", 1), ("1-1", 2), ("4-1-2", 1), ("4-1-2", 2)}


def test_every_served_page_carries_the_readers_watermark_in_its_pixels(site, console):
    cid = _grant(site, "wang")
    reader = Client(console)
    reader.sign_in("wang")
    for item, n in (("1-1", 1), ("1-1", 2), ("4-1-2", 1), ("4-1-2", 2)):
        for query, size in (("", imaging.SCREEN_PX), ("?size=thumb", imaging.THUMB_PX)):
            status, headers, body = reader.request(f"read/{cid}/D-1/{item}/{n}.jpg{query}")
            assert status == 200 and headers["Content-Type"] == "image/jpeg"
            assert headers["Cache-Control"] == "no-store" and "default-src 'none'" in headers["Content-Security-Policy"]
            _, blob = access.page(site, access_actor(site, "wang"), "D-1", item, n, cid)
            with blob:
                assert_watermarked(body, blob, size, f"{item} page {n}{query}")


def access_actor(site, user_id):
    return users.enabled(site, user_id)[0]


def test_pages_without_a_grant_of_ones_own_are_refused_and_logged(site, console):
    cid_li = _grant(site, "li")
    wang = Client(console)
    wang.sign_in("wang")
    before = len(_entries(site, "access.denied", by="user:wang"))
    # another reader's grant, a guessed consultation number, another dossier with one's own grant
    own = _grant(site, "wang")
    for path in (f"read/{cid_li}/D-1/1-1/1.jpg", f"read/{cid_li}/D-1", "read/987654/D-1/1-1/1.jpg",
                 f"read/{own}/D-3/1-1/1.jpg", f"read/{own}/D-2/1-1/1.jpg"):
        status, headers, body = wang.request(path)
        assert status == 403, path
        assert headers["Cache-Control"] == "no-store"
        assert "无权进行此操作" in body.decode() and "已记入审计日志" in body.decode()
    denied = _entries(site, "access.denied", by="user:wang")[before:]
    assert [(d["archive_no"], d["consultation"]) for d in denied] == [
        ("D-1", cid_li), ("D-1", cid_li), ("D-1", None), ("D-3", own), ("D-2", own)]
    # A reader's own and a relative's dossier cannot even be asked for (回避), and the attempt is logged.
    li = Client(console)
    li.sign_in("li")
    status, _, body = li.request("reader?q=D")
    assert b"D-1" in body and b"D-2" not in body and b"D-3" not in body
    for archive_no in ("D-2", "D-3"):
        status, _, body = li.request("reader/consult", {"archive_no": archive_no, "purpose": "看看", "days": "1",
                                                        "csrf": li.csrf("reader")})
        assert status == 403 and ("own" in body.decode() or "relative" in body.decode())
    assert [d["archive_no"] for d in _entries(site, "access.denied", by="user:li")][-2:] == ["D-2", "D-3"]
    # A reader typing the approval endpoint is refused by the same rule as the CLI and gRPC.
    status, _, _ = li.request(f"officer/{cid_li}/decide", {"approve": "1", "csrf": li.csrf("reader")})
    assert status == 403
    assert _entries(site, "access.denied", by="user:li")[-1]["action"] == "consultation.decide"


def test_a_grant_that_expires_while_reading_stops_at_the_next_page(site, console, monkeypatch):
    cid = _grant(site, "wang")
    reader = Client(console)
    reader.sign_in("wang")
    assert reader.request(f"read/{cid}/D-1/1-1/1.jpg")[0] == 200
    later = (datetime.now(timezone.utc) + timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    monkeypatch.setattr(gate, "utcnow", lambda: later)  # the clock permissions are decided by, past 3 days
    status, _, body = reader.request(f"read/{cid}/D-1/1-1/2.jpg")
    assert status == 403 and "expired" in body.decode()
    assert reader.request(f"read/{cid}/D-1/1-1/2")[0] == 403
    assert _entries(site, "access.denied", by="user:wang", consultation=cid)


def test_an_export_needs_its_own_approval(site, console):
    cid = _grant(site, "wang")
    reader = Client(console)
    reader.sign_in("wang")
    status, _, body = reader.request(f"read/{cid}/D-1/export.pdf")
    assert status == 403 and "exporting or copying needs its own approval" in body.decode()
    assert _entries(site, "access.denied", consultation=cid, action="content.export")


def test_the_officer_ends_a_grant_early_and_the_reader_is_stopped(site, console):
    cid = _grant(site, "wang")
    reader, officer = Client(console), Client(console)
    reader.sign_in("wang")
    officer.sign_in("sec-a")
    assert reader.request(f"read/{cid}/D-1/1-1/1.jpg")[0] == 200
    status, _, _ = officer.request(f"officer/{cid}/end", {"reason": "考察结束", "csrf": officer.csrf("officer")})
    assert status == 303
    assert reader.request(f"read/{cid}/D-1/1-1/2.jpg")[0] == 403
    (ended,) = _entries(site, "consultation.end", consultation=cid)
    assert ended["reason"] == "考察结束" and ended["by"] == "user:sec-a"
