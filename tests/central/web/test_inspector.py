"""QC acceptance (数据验收) in the browser: the sample shown large page after page, judged by keyboard with the
profile's reasons, the decision and the rescan notice — and from the outside, another inspector's batch and
another unit's batch refused and logged."""

import pytest

from central import profile, qc, users
from central.web import imaging

from .conftest import Client, assert_watermarked, entries, screenshot, sign_in


@pytest.fixture(scope="module")
def batches(site):
    """The committed batches of D-1 (4-1-2) and D-2 (1-1), and two more inspectors (unit-a, unit-b)."""
    for user_id, unit in (("insp2", "unit-a"), ("insp-b", "unit-b")):
        users.add(site, user_id, f"质检{user_id}", ["inspector"], [unit])
        users.set_password(site, user_id, f"口令-{user_id}-2026!", by="local:tests", must_change=False)
    return {no: site.catalogue.one("SELECT bundle_id FROM materials WHERE archive_no = ? AND item = ?", [no, item])
            ["bundle_id"] for no, item in (("D-1", "4-1-2"), ("D-2", "1-1"))}


def _loaded(page) -> None:
    for _ in range(200):
        if page.locator("#qc-image").evaluate("img => img.complete && img.naturalWidth > 0"):
            return
        page.wait_for_timeout(50)
    raise AssertionError("the sample page never loaded")


def test_an_inspector_judges_the_sample_by_keyboard_and_returns_the_batch_for_rescanning(site, batches, console,
                                                                                      contexts):
    bundle = batches["D-1"]
    insp = sign_in(contexts(), console, "insp")
    assert insp.url == console + "qc"
    insp.locator("#batches a", has_text=bundle[:12]).click()
    insp.get_by_role("button", name="开始抽检").click()
    insp.wait_for_url(f"**/qc/{bundle}/1")
    _loaded(insp)
    assert insp.evaluate("document.getElementById('qc-image').naturalHeight") == imaging.SCREEN_PX
    reasons = profile.load("tests-150dpi", site.config.home).qc_rejection_reasons
    assert "倾斜" in reasons and "模糊" in reasons
    assert insp.locator("#reasons button").all_inner_texts() == [
        f"{i}{r}" if i <= 9 else r for i, r in enumerate(reasons, 1)]
    insp.keyboard.press("g")
    insp.wait_for_url(f"**/qc/{bundle}/2")
    _loaded(insp)
    insp.keyboard.press("b")
    assert insp.locator("#reasons").is_visible()
    screenshot(insp, "inspector-qc")
    insp.keyboard.press(str(reasons.index("模糊") + 1))
    insp.wait_for_url(f"**/qc/{bundle}?summary=1")
    assert "合格" in insp.inner_text("#verdicts tr:has-text('第 1 页')")
    assert "不合格" in insp.inner_text("#verdicts tr:has-text('第 2 页')")
    insp.keyboard.press("d")
    insp.wait_for_selector("#rescan")
    assert "退回重扫" in insp.inner_text("#qc-state") and "50.0%" in insp.inner_text("#qc-state")
    assert "第 2 页（模糊）" in insp.inner_text("#rescan")
    (notice,) = [n for n in qc.notices(site, site.test_station.station_id) if bundle in n["body"]]
    assert notice["kind"] == "rescan" and "模糊" in notice["body"]
    (returned,) = entries(site, "qc.return", bundle_id=bundle)
    assert returned["by"] == "user:insp" and returned["bad_pages"] == [{"n": 2, "reason": "模糊"}]
    assert {v["page"] for v in entries(site, "content.view", by="user:insp", bundle_id=bundle)} == {1, 2}


def test_a_sample_page_carries_the_inspectors_watermark(site, batches, console):
    bundle = batches["D-2"]
    client = Client(console)
    client.sign_in("insp")
    assert client.request(f"qc/{bundle}/start", {"csrf": client.csrf("password")})[0] == 303
    status, headers, body = client.request(f"qc/{bundle}/1.jpg")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    _, blob = qc.sample_page(site, users.enabled(site, "insp")[0], bundle, 1)
    with blob:
        assert_watermarked(body, blob, imaging.SCREEN_PX, "QC sample page")


def test_another_inspectors_batch_and_another_units_batch_are_refused_and_logged(site, batches, console):
    bundle = batches["D-2"]
    qc.start(site, users.enabled(site, "insp")[0], bundle)  # insp draws the sample (or already has)
    other, far, reader = Client(console), Client(console), Client(console)
    other.sign_in("insp2", "口令-insp2-2026!")
    far.sign_in("insp-b", "口令-insp-b-2026!")
    reader.sign_in("wang")
    for client, who, path, form in (
            (other, "insp2", f"qc/{bundle}/1.jpg", None),
            (other, "insp2", f"qc/{bundle}/1/judge", {"good": "1"}),
            (other, "insp2", f"qc/{bundle}/decide", {}),
            (far, "insp-b", f"qc/{batches['D-1']}/start", {}),
            (reader, "wang", "qc", None)):
        before = len(entries(site, "access.denied", by=f"user:{who}"))
        if form is not None:
            form["csrf"] = client.csrf("password")
        status, _, body = client.request(path, form)
        assert status == 403 and "已记入审计日志" in body.decode(), (who, path)
        assert len(entries(site, "access.denied", by=f"user:{who}")) == before + 1, (who, path)
    assert not qc.status(site, bundle)["judged"]
    # Another unit's inspector lists none of unit-a's batches, and typing one's address is refused and logged.
    status, _, body = far.request("qc")
    assert status == 200 and bundle[:12] not in body.decode() and batches["D-1"][:12] not in body.decode()
    before = len(entries(site, "access.denied", by="user:insp-b"))
    for path in (f"qc/{bundle}", f"qc/{bundle}/1"):
        status, _, body = far.request(path)
        assert status == 403 and "已记入审计日志" in body.decode(), path
    assert len(entries(site, "access.denied", by="user:insp-b")) == before + 2
    # An inspector reads the catalogue of their units but is offered no change they could not propose.
    insp = Client(console)
    insp.sign_in("insp")
    status, _, body = insp.request("catalogue/D-1/4-1-2")
    assert status == 200 and "学位证书" in body.decode() and "提出撤出" not in body.decode()
