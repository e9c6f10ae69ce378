"""The archivist in the browser: the catalogue down to watermarked page previews, the quarantine with every
reason and its pages, a replacement and an identity edit under four eyes (old and new side by side), and the
version history — and from the outside, another unit's dossier, page or quarantined page refused and logged."""

import pytest

from central import access, quarantine, users
from central.web import imaging
from station.scan import scan
from station.sync import sync

from .conftest import Client, assert_watermarked, entries, screenshot, sign_in


@pytest.fixture(scope="module")
def rescan(site):
    """D-1's material 1-1 scanned again: held in quarantine as already catalogued; returns its bundle id."""
    scan(site.test_station, {"archive_no": "D-1"}, {"item": "1-1", "title": "干部履历表（重扫）", "rescan": True},
         "synthetic:seed=40,sheets=1")
    (bundle_id, _), = sync(site.test_station).rejected.items()
    users.add(site, "arch-b", "吴档案", ["archivist"], ["unit-b"])
    return bundle_id


def _loaded(page, selector: str) -> int:
    """How many of the images ``selector`` finds have arrived (polled: the CSP forbids eval waits)."""
    for _ in range(200):
        done = page.locator(selector).evaluate_all("imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")
        if done == page.locator(selector).count():
            return done
        page.wait_for_timeout(50)
    raise AssertionError(f"images {selector} never loaded")


def test_an_archivist_browses_the_catalogue_and_the_quarantine_and_a_second_one_approves_a_replacement(
        site, rescan, console, contexts):
    arch1 = sign_in(contexts(), console, "arch1")
    assert arch1.url == console + "catalogue"
    assert {"D-1", "D-2", "D-3"} <= set(arch1.locator("#dossiers tbody td:first-child").all_inner_texts())
    arch1.get_by_role("link", name="D-1", exact=True).click()
    assert "干部履历表" in arch1.inner_text("#materials") and "学位证书" in arch1.inner_text("#materials")
    assert _loaded(arch1, "#materials img") == 4
    arch1.get_by_role("link", name="干部履历表").click()
    assert _loaded(arch1, "#pages img") == 2
    arch1.locator("#pages a").first.click()   # the viewer, as a reader's: keyboard paging through the dossier
    arch1.wait_for_url("**/catalogue/D-1/1-1/1")
    arch1.keyboard.press("ArrowRight")
    arch1.wait_for_url("**/catalogue/D-1/1-1/2")
    assert _loaded(arch1, "#page") == 1
    arch1.go_back()
    arch1.go_back()
    assert "现行" in arch1.inner_text("#history")
    views = entries(site, "content.view", by="user:arch1", archive_no="D-1")
    assert {(v["item"], v["page"]) for v in views} >= {("1-1", 1), ("1-1", 2), ("4-1-2", 1)}

    arch1.goto(console + "quarantine")
    arch1.locator("#held a", has_text=rescan[:12]).click()
    assert "CatalogueConflict" in arch1.inner_text("#reasons-list")
    assert _loaded(arch1, "#held-pages img") == 2
    assert entries(site, "content.view", by="user:arch1", bundle_id=rescan, quarantined=True)
    arch1.get_by_role("link", name="到材料页提出替换").click()
    replace = arch1.locator("form.replace", has_text=rescan[:12])
    replace.locator("input[name=reason]").fill("原件褶皱，重扫")
    replace.get_by_role("button", name="提出替换").click()
    assert arch1.url == console + "changes", arch1.inner_text("body")
    assert "material:D-1:1-1" in arch1.inner_text("main"), arch1.inner_text("body")
    arch1.goto(console + "catalogue/D-2")
    form = arch1.locator("#edit-dossier")
    form.locator("input[name=post]").fill("处长")
    form.locator("input[name=reason]").fill("任职变动")
    form.get_by_role("button", name="提交复核").click()
    assert "dossier:D-2" in arch1.inner_text("main"), arch1.inner_text("body")
    # The proposer cannot approve their own change: refused and logged.
    own = arch1.locator("article.change", has_text="material:D-1:1-1")
    own.get_by_role("button", name="核对无误，批准").click()
    assert "无权进行此操作" in arch1.inner_text("main") and "双人复核" in arch1.inner_text("main")
    assert entries(site, "access.denied", by="user:arch1", action="change.replace_material")

    arch2 = sign_in(contexts(), console, "arch2")
    arch2.goto(console + "changes")
    change = arch2.locator("article.change", has_text="material:D-1:1-1")
    assert "干部履历表" in change.locator(".old").inner_text()
    assert "干部履历表（重扫）" in change.locator(".new").inner_text()
    assert _loaded(arch2, "article.change .old img") == 2 and _loaded(arch2, "article.change .new img") == 2
    edit = arch2.locator("article.change", has_text="dossier:D-2")
    assert "职务：处长" in edit.locator(".new").inner_text()
    screenshot(arch2, "archivist-changes")
    change.locator("input[name=note]").fill("已核对")
    change.get_by_role("button", name="核对无误，批准").click()
    assert "已生效" in arch2.locator("#decided tr", has_text="material:D-1:1-1").inner_text()
    arch2.locator("article.change", has_text="dossier:D-2").get_by_role("button", name="核对无误，批准").click()
    assert site.catalogue.one("SELECT post FROM dossiers WHERE archive_no = 'D-2'")["post"] == "处长"

    arch1.goto(console + "catalogue/D-1/1-1")
    history = arch1.inner_text("#history")
    assert "已被替换" in history and "原件褶皱，重扫" in history and "user:arch1 / user:arch2" in history
    assert "第 2 版" in arch1.inner_text("main") and "干部履历表（重扫）" in arch1.inner_text("h1")
    assert not [q for q in quarantine.listing(site, users.enabled(site, "arch1")[0]) if q["bundle_id"] == rescan]


def test_catalogue_previews_carry_the_archivists_watermark(site, rescan, console):
    arch = Client(console)
    arch.sign_in("arch2")
    who = users.enabled(site, "arch2")[0]
    for query, size in (("", imaging.SCREEN_PX), ("?size=thumb", imaging.THUMB_PX)):
        status, headers, body = arch.request(f"catalogue/D-1/4-1-2/1.jpg{query}")
        assert status == 200 and headers["Cache-Control"] == "no-store"
        _, blob = access.page(site, who, "D-1", "4-1-2", 1)
        with blob:
            assert_watermarked(body, blob, size, f"catalogue preview{query}")


def test_another_units_archivist_and_a_reader_typing_catalogue_urls_are_refused_and_logged(site, rescan, console):
    other = Client(console)
    users.set_password(site, "arch-b", "口令-arch-b-2026!", by="local:tests", must_change=False)
    other.sign_in("arch-b", "口令-arch-b-2026!")
    reader = Client(console)
    reader.sign_in("wang")
    for who, client in (("arch-b", other), ("wang", reader)):
        before = len(entries(site, "access.denied", by=f"user:{who}"))
        for path in ("catalogue/D-1", "catalogue/D-1/4-1-2", "catalogue/D-1/4-1-2/1.jpg",
                     f"quarantine/{rescan}/1.jpg"):
            status, headers, body = client.request(path)
            assert status == 403 and "已记入审计日志" in body.decode(), (who, path)
        status, _, body = client.request("changes/propose", {"change": "withdraw_material", "archive_no": "D-1",
                                                             "item": "4-1-2", "reason": "x",
                                                             "csrf": client.csrf("password")})
        assert status == 403, who
        denied = entries(site, "access.denied", by=f"user:{who}")[before:]
        assert len(denied) == 5 and {d["archive_no"] for d in denied} == {"D-1"}, who
    assert not [c for c in site.catalogue.query("SELECT * FROM changes WHERE kind = 'withdraw_material'")]
    status, _, body = other.request("changes")   # the changes list is scoped to one's units, not refused
    assert status == 200 and "material:D-1" not in body.decode() and "dossier:D-2" not in body.decode()
