"""Signing in to the console: passwords, forced change, lockout, sessions, CSRF, headers — each audited."""

import http.client
import re
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from central import audit, users, web
from central.errors import ConfigError

from .conftest import Client, password, screenshot, sign_in


def _entries(archive, event: str, **match) -> list[dict]:
    return [e for e in audit.entries(archive) if e["event"] == event and all(e.get(k) == v for k, v in match.items())]


def _ago(seconds: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def test_a_reader_signs_in_and_out_in_the_browser_and_both_are_audited(site, console, contexts):
    page = sign_in(contexts(), console, "wang")
    assert page.url == console + "reader"
    assert "王五（wang）· 查阅人" in page.inner_text("header")
    screenshot(page, "reader-home")
    (login,) = _entries(site, "login", user="wang", via="web")
    assert login["address"] == "127.0.0.1" and login["by"] == "user:wang"
    page.click("text=退出登录")
    assert page.url.startswith(console + "login")
    (logout,) = _entries(site, "logout", user="wang", how="signed-out")
    assert logout["via"] == "web"
    page.goto(console + "reader")  # the cookie is dead on the server, not only deleted in the browser
    assert page.url.startswith(console + "login?next=%2Freader")


def test_a_password_set_by_an_administrator_must_be_changed_at_first_sign_in(site, console, contexts):
    users.add(site, "newbie", "新同事", ["reader"], ["unit-a"])
    users.set_password(site, "newbie", "临时口令-123456", by="user:admin")  # forced change by default
    page = sign_in(contexts(), console, "newbie", "临时口令-123456")
    assert page.url == console + "password"
    assert "首次登录须改为只有您本人知道的密码" in page.inner_text("main")
    page.goto(console + "reader")
    assert page.url == console + "password"  # nothing else until it is changed
    page.fill("input[name=old]", "临时口令-123456")
    page.fill("input[name=new]", "我自己的新口令-2026")
    page.fill("input[name=again]", "我自己的新口令-2026")
    page.click("text=保存新密码")
    assert page.url == console + "reader"
    assert users.check_password(site, "newbie", "我自己的新口令-2026") is not None
    assert users.check_password(site, "newbie", "临时口令-123456") is None
    assert [e["must_change"] for e in _entries(site, "user.password", user="newbie")] == [True, False]


def test_without_a_session_every_page_and_image_sends_the_visitor_to_sign_in(site, console):
    outsider = Client(console)
    for path in ("", "reader", "officer", "audit", "read/1/D-1/1-1/1.jpg", "read/1/D-1/export.pdf"):
        status, headers, _ = outsider.request(path)
        assert status == 303, path
        assert headers["Location"].startswith("/login?next=")
    status, _, _ = outsider.request("reader/consult", {"archive_no": "D-1", "purpose": "x", "days": "1"})
    assert status == 303
    assert not site.catalogue.query("SELECT * FROM consultations WHERE purpose = 'x'")


def test_a_state_change_without_the_right_csrf_token_is_refused_and_logged(site, console):
    reader = Client(console)
    assert reader.sign_in("wang")[0] == 303
    form = {"archive_no": "D-1", "purpose": "跨站伪造", "days": "3"}
    for extra in ({}, {"csrf": "forged-token"}):
        status, _, body = reader.request("reader/consult", {**form, **extra})
        assert status == 403
        assert "CSRF 校验未通过" in body.decode()
    assert not site.catalogue.query("SELECT * FROM consultations WHERE purpose = '跨站伪造'")
    refusals = _entries(site, "web.refused", path="/reader/consult")
    assert len(refusals) == 2 and refusals[0]["by"] == "user:wang"
    # With the session's token (the form's field, or htmx's header) it goes through.
    status, _, _ = reader.request("reader/consult", {**form, "csrf": reader.csrf("reader")})
    assert status == 303
    assert site.catalogue.query("SELECT * FROM consultations WHERE purpose = '跨站伪造'")


def test_a_sign_in_form_from_elsewhere_is_refused(site, console):
    stranger = Client(console)
    status, _, body = stranger.request("login", {"login_token": "x", "user": "wang", "password": password("wang")})
    assert status == 403 and "登录表单已失效" in body.decode()
    assert not stranger.jar or "quire_session" not in {c.name for c in stranger.jar}


def test_brute_force_locks_the_account_then_the_address_with_back_off(site, console):
    users.add(site, "victim", "受害人", ["reader"], ["unit-a"])
    users.set_password(site, "victim", password("victim"), by="user:admin", must_change=False)
    attacker = Client(console, forwarded_for="203.0.113.9")  # uvicorn trusts the proxy header from loopback
    for _ in range(4):
        status, _, body = attacker.sign_in("victim", "guess-password")
        assert status == 401 and "账号或密码不正确" in body.decode()
    assert attacker.sign_in("victim", "guess-password")[0] == 401  # the fifth failure locks
    (lock,) = _entries(site, "login.lockout", locked="user:victim")
    assert lock["failures"] == 5 and lock["address"] == "203.0.113.9"
    # Locked: even the right password is refused, from anywhere, without being tried.
    status, _, body = Client(console, forwarded_for="192.0.2.1").sign_in("victim")
    assert status == 429 and "登录已暂时锁定" in body.decode()
    assert _entries(site, "login.refused", user="victim", reason=f"locked until {lock['until']}")
    # Back-off: once the lock has run out, the next failure locks for twice as long.
    with site.catalogue.transaction() as db:   # on either catalogue: SQLite or PostgreSQL
        db.execute("UPDATE signin_failures SET locked_until = :at WHERE key = 'user:victim'", {"at": _ago(1)})
    attacker.sign_in("victim", "guess-password")
    first, second = _entries(site, "login.lockout", locked="user:victim")
    minutes = (datetime.fromisoformat(second["until"]) - datetime.now(timezone.utc)).total_seconds() / 60
    assert 1.9 < minutes <= 2.0
    # The address: 20 failures over any accounts lock it, for every account.
    spray = Client(console, forwarded_for="198.51.100.7")
    for i in range(20):
        assert spray.sign_in(f"nobody-{i}", "123456")[0] == 401
    assert _entries(site, "login.lockout", locked="addr:198.51.100.7")
    assert spray.sign_in("wang")[0] == 429
    assert Client(console, forwarded_for="198.51.100.8").sign_in("wang")[0] == 303
    failures = _entries(site, "login.refused", address="198.51.100.7", reason="wrong password or unknown account")
    assert len(failures) == 20


def test_sessions_end_when_idle_or_too_old_and_the_end_is_audited(site, console):
    for column, seconds, how in (("seen_at", 31 * 60, "idle"), ("created_at", 12 * 3600 + 60, "absolute")):
        reader = Client(console)
        reader.sign_in("wang")
        assert reader.request("reader")[0] == 200
        with site.catalogue.transaction() as db:
            db.execute(f"UPDATE web_sessions SET {column} = :at WHERE ended_at IS NULL AND user_id = 'wang'",
                       {"at": _ago(seconds)})
        status, headers, _ = reader.request("reader")
        assert status == 303 and headers["Location"].startswith("/login")
        assert _entries(site, "logout", user="wang", how=how)


def test_a_password_reset_ends_the_sessions_opened_before_it(site, console):
    users.add(site, "reset-me", "重置", ["reader"], ["unit-a"])
    users.set_password(site, "reset-me", password("reset-me"), by="user:admin", must_change=False)
    reader = Client(console)
    reader.sign_in("reset-me")
    assert reader.request("reader")[0] == 200
    users.set_password(site, "reset-me", "管理员新设-999999", by="user:admin")
    assert reader.request("reader")[0] == 303
    assert _entries(site, "logout", user="reset-me", how="password-reset")


def test_every_response_carries_the_security_headers_and_the_cookie_its_flags(site, console):
    reader = Client(console)
    status, headers, _ = reader.sign_in("wang")
    cookie = headers["Set-Cookie"]
    assert "quire_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP is for loopback only
    for path in ("login", "reader", "reader?q=D", "static/app.js"):
        status, headers, body = reader.request(path)
        assert status == 200, path
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        if not path.startswith("static/"):
            assert headers["Cache-Control"] == "no-store"
            assert b"<script>" not in body and b" on" + b"click=" not in body  # no inline script at all


def test_https_with_the_archives_certificate_sets_secure_cookies(site):
    running = web.start(site, "127.0.0.1:0")
    try:
        assert running.url.startswith("https://127.0.0.1:")
        tls = ssl.create_default_context(cadata=site.tls.cert_pem.decode())
        tls.check_hostname = False  # the archive's certificate names 'quire-central', pinned by its bytes
        with urllib.request.urlopen(running.url + "login", context=tls, timeout=10) as r:
            assert "Secure" in r.headers["Set-Cookie"] and "max-age" in r.headers["Strict-Transport-Security"]
    finally:
        running.stop()


def test_plain_http_is_refused_outside_loopback(site):
    with pytest.raises(ConfigError, match="only a loopback address"):
        web.start(site, "0.0.0.0:0", http=True)


def test_serve_prints_the_console_address_after_the_grpc_one(tmp_path):
    exe = Path(sys.executable).parent / "quire-central"
    proc = subprocess.Popen([str(exe), "--home", str(tmp_path / "c"), "serve", "--listen", "127.0.0.1:0",
                             "--no-advertise", "--web", "127.0.0.1:0", "--web-http"], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert re.fullmatch(r"listening on 127\.0\.0\.1:\d+", lines[0])
        url = re.fullmatch(r"web on (http://127\.0\.0\.1:\d+/)", lines[2]).group(1)
        with urllib.request.urlopen(url + "login", timeout=10) as r:
            assert "登录" in r.read().decode()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0



def test_the_auditor_filters_the_log_and_runs_a_verify_in_the_browser(site, console, contexts):
    page = sign_in(contexts(), console, "auditor")
    assert page.url == console + "audit"
    page.fill("input[name=event]", "login")
    with page.expect_navigation(wait_until="load"):   # the filtered log, not the page before it
        page.get_by_role("button", name="筛选").click()
    rows = page.locator("#log tbody tr")
    assert rows.count() >= 1 and all(t.startswith("login") for t in page.locator("#log tbody td:nth-child(3)").all_inner_texts())
    page.get_by_role("button", name="立即校验日志").click()
    assert "校验通过" in page.inner_text("#verify")
    screenshot(page, "auditor-log")
    # A reader typing the auditor's pages is refused and logged like 'quire-central audit ls'.
    reader = Client(console)
    reader.sign_in("wang")
    assert reader.request("audit")[0] == 403
    assert _entries(site, "access.denied", by="user:wang", action="audit.read")


def test_a_response_arrives_whole_without_waiting_on_the_browsers_acknowledgement(site, console):
    """The console's connections send with TCP_NODELAY: a response's head and body left 40 ms apart before
    (Nagle's algorithm holding the body until the client's delayed ACK of the head), on every request."""
    parts = urllib.parse.urlsplit(console)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    took = []
    for _ in range(12):
        started = time.perf_counter()
        conn.request("GET", "/static/app.css")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        took.append(time.perf_counter() - started)
    conn.close()
    assert sorted(took)[len(took) // 2] < 0.02, f"median {sorted(took)[len(took) // 2] * 1000:.0f} ms per request"
