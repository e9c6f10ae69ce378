"""The administrator in the browser: users (add with a password to change, disable, reset, 回避), a station's
enrolment approved after comparing its pairing code, its revocation under four eyes, the profiles — and from
the outside, everyone else typing the administrator's URLs refused and logged, the administrator kept out
of content (三员分立)."""

import pytest

from central import stations, users
from station.enrol import enroll
from tests.conftest import make_station

from .conftest import Client, entries, password, screenshot, sign_in


@pytest.fixture(scope="module")
def waiting(site, tmp_path_factory):
    """A second station that asked to enrol and waits; yields its pairing code."""
    station = make_station(tmp_path_factory.mktemp("st-two"), site.test_address, station_id="st-two")
    enrolment = enroll(station, site.test_address)
    assert enrolment.state == "pending"
    yield enrolment.pairing_code
    station.close()


def test_an_administrator_manages_users_in_the_browser(site, console, contexts):
    admin = sign_in(contexts(), console, "admin")
    assert admin.url == console + "admin"
    admin.on("dialog", lambda dialog: dialog.accept())
    form = admin.locator("#add-user")
    form.locator("input[name=user_id]").fill("zhao")
    form.locator("input[name=name]").fill("赵六")
    form.locator("input[value=reader]").check()
    form.locator("input[name=units]").fill("unit-a")
    form.locator("input[name=password]").fill("初始口令-zhao-2026")
    form.get_by_role("button", name="添加").click()
    assert "qt1.zhao." in admin.inner_text("#added")
    assert "查阅人" in admin.inner_text("#user-zhao")
    newcomer = sign_in(contexts(), console, "zhao", "初始口令-zhao-2026")
    assert newcomer.url == console + "password"   # set by someone else: changed at first sign-in

    row = admin.locator("#user-wang")
    row.locator("form.relate input[name=archive_no]").fill("D-1")
    row.locator("form.relate input[name=relation]").fill("配偶")
    row.get_by_role("button", name="登记回避").click()
    assert "回避 D-1（配偶）" in admin.inner_text("#user-wang")
    assert "D-1" in users.enabled(site, "wang")[0].relatives
    admin.locator("#user-arch2 form.reset input[name=password]").fill("重置口令-arch2-2026")
    admin.locator("#user-arch2").get_by_role("button", name="重置密码").click()
    assert users.enabled(site, "arch2")[1]["password_must_change"]
    admin.locator("#user-zhao").get_by_role("button", name="停用").click()
    assert "已停用" in admin.inner_text("#user-zhao")
    newcomer.goto(console + "password")
    assert newcomer.url.startswith(console + "login")   # a disabled user's session ends
    screenshot(admin, "admin-users")
    for event, subject in (("user.add", "zhao"), ("user.relation", "wang"), ("user.password", "arch2"),
                           ("user.disable", "zhao")):
        assert entries(site, event, user=subject, by="user:admin"), event


def test_a_station_is_enrolled_by_its_pairing_code_and_revoked_under_four_eyes(site, waiting, console, contexts):
    admin = sign_in(contexts(), console, "admin")
    admin.on("dialog", lambda dialog: dialog.accept())
    admin.goto(console + "admin/stations")
    row = admin.locator("#pending tr", has_text="st-two")
    assert waiting in row.inner_text()
    screenshot(admin, "admin-stations")
    row.locator("input[name=code]").fill("000-000")   # not what the station shows
    row.locator("input[name=unit]").fill("unit-a")
    row.get_by_role("button", name="批准").click()
    assert "no station is waiting with pairing code 000-000" in admin.inner_text("main")
    admin.goto(console + "admin/stations")
    row = admin.locator("#pending tr", has_text="st-two")
    row.locator("input[name=code]").fill(waiting)
    row.locator("input[name=unit]").fill("unit-a")
    row.get_by_role("button", name="批准").click()
    assert "正常" in admin.inner_text("#station-st-two") and not admin.locator("#pending").count()
    assert stations.get(site, "st-two")["unit"] == "unit-a"

    admin.locator("#station-st-two input[name=reason]").fill("设备丢失")
    admin.locator("#station-st-two").get_by_role("button", name="提出吊销").click()
    assert "已暂停" in admin.inner_text("#station-st-two")
    revocation = admin.locator(".revocation", has_text="station:st-two")
    revocation.get_by_role("button", name="批准吊销").click()
    assert "双人复核" in admin.inner_text("main")     # the proposer cannot approve it: refused, logged
    assert entries(site, "access.denied", by="user:admin", action="change.revoke_station")
    second = sign_in(contexts(), console, "admin2")
    second.goto(console + "admin/stations")
    second.locator(".revocation", has_text="station:st-two").get_by_role("button", name="批准吊销").click()
    assert "已吊销" in second.inner_text("#station-st-two")
    assert stations.get(site, "st-two")["revoked_at"]

    admin.goto(console + "admin/profiles")
    text = admin.inner_text("#profiles")
    assert "gbt33870" in text and "第 3 版" in text and "tests-150dpi" in text and "默认" in text and "倾斜" in text


def test_everyone_else_typing_the_administrators_urls_is_refused_and_the_administrator_reads_no_content(
        site, console):
    for who in ("wang", "arch1", "auditor"):
        client = Client(console)
        client.sign_in(who)
        before = len(entries(site, "access.denied", by=f"user:{who}"))
        for path, form in (("admin", None), ("admin/users", {"user_id": "evil", "name": "x", "roles": "admin",
                                                               "units": "*"}),
                           ("admin/users/li/password", {"password": "被人重置的口令-2026"}),
                           ("admin/stations/approve", {"code": "1", "unit": "unit-a"}),
                           ("admin/stations/st-test/revoke", {"reason": "x"})):
            if form is not None:
                form["csrf"] = client.csrf("password")
            status, _, body = client.request(path, form)
            assert status == 403 and "已记入审计日志" in body.decode(), (who, path)
        assert len(entries(site, "access.denied", by=f"user:{who}")) == before + 5, who
    assert not users.enabled(site, "evil") and users.check_password(site, "li", password("li"))
    admin = Client(console)
    admin.sign_in("admin")
    for path in ("catalogue/D-1", "catalogue/D-1/1-1/1.jpg", "reader?q=D"):
        assert admin.request(path)[0] == 403, path
